"""Which H.264 encoder writes the live clips: a hardware one where the machine has one that
works (probed once at start with a real encode, because a codec compiled into FFmpeg says
nothing about the device being there), else libx264 with the preset and CRF of the
settings. The fall-back is one log line, never an error: a recorder must record."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from fractions import Fraction

# What `capture.encoder` names, in the order `auto` tries them on each platform. VAAPI is
# not here: FFmpeg's h264_vaapi takes only frames already uploaded to the GPU (a hardware
# frames context PyAV cannot create for an encoder), and PyAV's Linux wheel leaves it out.
HARDWARE = {"videotoolbox": "h264_videotoolbox", "qsv": "h264_qsv", "nvenc": "h264_nvenc"}
AUTO_ORDER = {"darwin": ["videotoolbox"], "linux": ["qsv", "nvenc"],
              "win32": ["qsv", "nvenc"]}
# Hardware encoders take a bit rate, not a CRF: 1 Mbit/s (~450 MB per recorded hour) is
# below what the x264 default spends on busy footage (~1.5 Mbit/s, BENCHMARKS.md "Capture
# benchmark") and above what it spends on a quiet room. Not measured on a hardware encoder
# (the development machine has none).
HW_BIT_RATE = 1_000_000
PROBE_SIZE = (640, 480)


@dataclass(frozen=True)
class VideoCodec:
    """How to encode: an FFmpeg encoder, its private options, and its input pixel format."""
    name: str                                   # e.g. "libx264", "h264_qsv"
    options: dict[str, str] = field(default_factory=dict)
    pix_fmt: str = "yuv420p"
    bit_rate: int | None = None                 # hardware encoders only

    @property
    def label(self) -> str:
        """What the log says was chosen."""
        extra = " ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name} {extra}".strip()


def x264(preset: str, crf: int) -> VideoCodec:
    return VideoCodec("libx264", {"preset": preset, "crf": str(crf)})


def hardware(kind: str) -> VideoCodec:
    # nv12 is what every one of them takes natively (no conversion inside the driver)
    return VideoCodec(HARDWARE[kind], {}, pix_fmt="nv12", bit_rate=HW_BIT_RATE)


def probe(codec: VideoCodec, size: tuple[int, int] = PROBE_SIZE) -> str | None:
    """Encode two frames in memory; None if that works, else why not (one line)."""
    import av

    try:
        cc = av.CodecContext.create(codec.name, "w")
        cc.width, cc.height, cc.pix_fmt = size[0], size[1], codec.pix_fmt
        cc.time_base, cc.framerate = Fraction(1, 10), 10
        if codec.bit_rate:
            cc.bit_rate = codec.bit_rate
        cc.options = dict(codec.options)
        cc.open()
        packets = 0
        for i in range(2):
            frame = av.VideoFrame(size[0], size[1], codec.pix_fmt)
            frame.pts = i
            packets += len(cc.encode(frame))
        packets += len(cc.encode(None))
    except Exception as e:  # noqa: BLE001 (any failure means "not here"; the reason is logged)
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]
    return None if packets else "encoded nothing"


def choose(setting: str, preset: str, crf: int, log, platform: str = sys.platform,
           size: tuple[int, int] = PROBE_SIZE) -> VideoCodec:
    """The encoder `capture.encoder` asks for, if it works here; else libx264, said once
    in the log with each encoder tried and why it failed."""
    fallback = x264(preset, crf)
    if setting == "x264":
        return fallback
    kinds = AUTO_ORDER.get(platform, []) if setting == "auto" else [setting]
    failed = {}
    for kind in kinds:
        codec = hardware(kind)
        why = probe(codec, size)
        if why is None:
            log.info("video_encoder", encoder=codec.name, asked=setting)
            return codec
        failed[codec.name] = why
    level = log.info if setting == "auto" else log.warning
    level("video_encoder_fallback", encoder=fallback.label, asked=setting,
          tried=failed or "no hardware encoder known on this platform")
    return fallback
