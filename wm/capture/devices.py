"""`wm devices`: the cameras and microphones wm can see, and which ones it would use."""
from __future__ import annotations

import glob
import sys

from wm.base.errors import WmError
from wm.base.redact import redact

MAX_PROBED_INDEX = 4  # where cameras cannot be listed, indices 0..4 are tried


def list_cameras() -> list[str]:
    """Cameras as `index: description`. On Linux the V4L2 nodes are listed (and opened to
    see their size); elsewhere the first few indices are tried."""
    from wm.capture.camera import cv2  # quiet FFmpeg/OpenCV logging comes with it

    if sys.platform.startswith("linux"):
        nodes = sorted(glob.glob("/dev/video*"), key=lambda p: int(p[10:]) if p[10:].isdigit() else 99)
        indices = [int(p[10:]) for p in nodes if p[10:].isdigit()]
    else:
        indices = list(range(MAX_PROBED_INDEX + 1))
    found = []
    for i in indices:
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            found.append(f"{i}: {cap.getBackendName()} {w}x{h}")
        elif sys.platform.startswith("linux"):
            found.append(f"{i}: /dev/video{i} (busy or not a capture device)")
        cap.release()
    return found


def list_microphones() -> list[str]:
    """Input devices as `index: name (channels, rate)`; the default one marked with *."""
    from wm.capture.microphone import input_devices, sounddevice

    sd = sounddevice()
    default = sd.default.device[0]
    return [f"{d['index']}: {d['name']} ({d['max_input_channels']} ch, "
            f"{int(d['default_samplerate'])} Hz){' *' if d['index'] == default else ''}"
            for d in input_devices()]


def found_summary() -> str:
    """One line of what is there, for start-up errors."""
    cams = list_cameras()
    try:
        mics = ", ".join(list_microphones()) or "none"
    except WmError as e:
        mics = str(e)
    return f"cameras found: {', '.join(cams) or 'none'}; microphones found: {mics}"


def show_devices(settings) -> int:
    c = settings.capture
    print("cameras:")
    for line in list_cameras() or ["(none found; a file or an rtsp:// or http:// URL also works)"]:
        print(f"  {line}")
    print("microphones:")
    try:
        mics = list_microphones() or ["(none found)"]
    except WmError as e:  # PortAudio missing: the cameras above are still worth knowing
        mics = [str(e)]
    for line in mics:
        print(f"  {line}")
    print(f"configured: camera {redact(c.camera)!r}, microphone {c.microphone!r} "
          "(change with capture.camera / capture.microphone, or --camera / --mic)")
    return 0
