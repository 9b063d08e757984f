"""Real capture devices on loopback, for tests and benchmarks (no webcam or sound card here).

- `MjpegServer`: an HTTP server on 127.0.0.1 that serves `multipart/x-mixed-replace`
  JPEG frames at a fixed rate, the way IP cameras do; OpenCV opens its URL as a camera.
  It can be stopped (clients see the connection die) and started again on the same port.
- `PulseServer`: a private PulseAudio server with a null sink `vsink` whose monitor is the
  default source. Anything played into it with `play()` (paplay) is heard, in real time,
  by whoever records from the ALSA `pulse` device (sounddevice device "pulse", i.e.
  `wm record --mic pulse`; child processes inherit the environment it sets). `crash()`
  kills it the way a lost device goes, `start()` brings it back on the same socket.
  Start it before the first `import sounddevice` where you can: PortAudio lists devices
  once (wm's microphone re-reads the list when its device is missing, so wm copes).
- `tone_wav()` / `tone_onset()`: a WAV to play, and where a recording gets loud.
- `pattern_frame()` / `video_frames()`: frames to serve (a test pattern, or real footage).
- `require_tools()`: skip when the system packages are missing, fail instead under CI=true.

Use from tests (tests/ is on sys.path under pytest): `from loopback import MjpegServer`.
Run a camera in its own process (the benchmark does, so the frames' cost is not counted
against the recorder): `python tests/loopback.py mjpeg --port 8765 --fps 30`.
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

BOUNDARY = "wmframe"


def require_tools(*commands: str, portaudio: bool = True) -> None:
    """Skip the calling test when a command or PortAudio is missing, but fail under CI=true:
    CI installs them (.ci/run), so a missing one there is a broken setup, not a reason."""
    import pytest

    missing = [c for c in commands if shutil.which(c) is None]
    if portaudio:
        try:
            import sounddevice  # noqa: F401
        except OSError:
            missing.append("libportaudio2")
    if missing:
        reason = f"needs {', '.join(missing)} (apt-get install libportaudio2 pulseaudio pulseaudio-utils)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: required under CI")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pattern_frame(i: int, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> np.ndarray:
    """Frame `i` of a moving-bar pattern (BGR): distinct frames, cheap to make."""
    w, h = size
    img = np.full((h, w, 3), 40, np.uint8)
    x = int(i * 8) % w
    img[:, x:x + 24] = (0, 120, 200)
    cv2.putText(img, f"{i / fps:8.2f}", (20, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.5,
                (255, 255, 255), 3)
    return img


def encode(bgr: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


class MjpegServer:
    """An IP camera on 127.0.0.1: `url` streams JPEG frames at `fps` to every client.

    Frames come from a cycle of pre-encoded JPEGs (so serving costs little CPU); `show()`
    swaps the cycle at once (e.g. to a white picture at a known instant). `stop()` closes
    every open stream, like a camera losing power; `start()` serves again on the same port.
    With `auth=(user, password)` it asks for HTTP Basic authentication like an IP camera
    (401 without the right credentials; `refused` counts those requests).
    Use as a context manager so it never outlives the test."""

    def __init__(self, fps: float = 10.0, size: tuple[int, int] = (640, 480),
                 port: int | None = None, cycle: int = 30, frames: list[np.ndarray] | None = None,
                 auth: tuple[str, str] | None = None):
        self.fps = fps
        self.auth = auth
        self.refused = 0
        self.size = size
        self.port = port or free_port()
        self.frames_sent = 0
        frames = frames or [pattern_frame(i, size, fps) for i in range(cycle)]
        self._jpegs = [encode(f) for f in frames]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[threading.Thread] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream"

    def show(self, frames: list[np.ndarray]) -> float:
        """Serve these BGR frames (cycled) from now on; returns time.monotonic() of the swap."""
        jpegs = [encode(f) for f in frames]
        with self._lock:
            self._jpegs = jpegs
            return time.monotonic()

    def start(self) -> "MjpegServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if not owner._authorized(self.headers.get("Authorization")):
                    owner.refused += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                owner._clients.add(threading.current_thread())
                try:
                    owner._stream(self)
                finally:
                    owner._clients.discard(threading.current_thread())

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._stopping.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="mjpeg-server", daemon=True)
        self._thread.start()
        return self

    def _authorized(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        want = base64.b64encode(":".join(self.auth).encode()).decode()
        return header == f"Basic {want}"

    def _stream(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        start, i = time.monotonic(), 0
        while not self._stopping.is_set():
            with self._lock:
                jpeg = self._jpegs[i % len(self._jpegs)]
            part = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
            try:
                h.wfile.write(part)
                h.wfile.flush()
            except OSError:  # the client went away
                return
            self.frames_sent += 1
            i += 1
            # a fixed schedule, not sleep(1/fps): the rate does not drift with write time
            delay = start + i / self.fps - time.monotonic()
            if delay > 0:
                self._stopping.wait(delay)
        try:  # a camera that loses power: the stream just ends
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for t in list(self._clients):
            t.join(timeout=2)
        self._thread.join(timeout=2)
        self._server = self._thread = None

    def __enter__(self) -> "MjpegServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PulseServer:
    """A private PulseAudio server (run as any user, no D-Bus) with a null sink `vsink`.

    `env` holds what a client needs to reach it (PULSE_SERVER, and the sink's monitor as
    the default source); `start()` also puts it into os.environ, so the ALSA `pulse`
    device opened by sounddevice in this process records what `play()` plays. Everything
    lives under `workdir`; `stop()` ends the server and restores os.environ."""

    SINK = "vsink"

    def __init__(self, workdir: Path, rate: int = 48000):
        self.dir = Path(workdir)
        self.rate = rate
        self.socket = self.dir / "native"
        self.proc: subprocess.Popen | None = None
        self._saved_env: dict[str, str | None] = {}
        # clients keep their cookie and runtime files here, not in $HOME or /tmp, and never
        # autospawn a server of their own (which would outlive the test) when this one is down
        self.env = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_SOURCE": f"{self.SINK}.monitor",
            "PULSE_SINK": self.SINK,
            "PULSE_COOKIE": str(self.dir / "cookie"),
            "PULSE_CLIENTCONFIG": str(self.dir / "client.conf"),
            "PULSE_RUNTIME_PATH": str(self.dir / "runtime"),
        }

    def start(self, timeout: float = 10.0) -> "PulseServer":
        """Start the server (again, after `crash()`: same socket, same sink)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "client.conf").write_text("autospawn = no\n")
        server_env = dict(os.environ, HOME=str(self.dir), XDG_RUNTIME_DIR=str(self.dir),
                          XDG_CONFIG_HOME=str(self.dir / "config"))
        for key in self.env:
            server_env.pop(key, None)
        self.log = open(self.dir / "pulseaudio.log", "ab")
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
             "--log-target=stderr",
             "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "-L", f"module-null-sink sink_name={self.SINK} rate={self.rate} channels=1"],
            env=server_env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            ok = subprocess.run(["pactl", "set-default-source", f"{self.SINK}.monitor"],
                                env=self._client_env(), capture_output=True).returncode == 0
            if ok:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.dir / "pulseaudio.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pulseaudio did not start: {log}")
            time.sleep(0.1)
        for key, value in self.env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        return self

    def _client_env(self) -> dict[str, str]:
        return dict(os.environ, **self.env)

    def play(self, wav: Path) -> tuple[subprocess.Popen, float]:
        """Start playing `wav` into the sink; returns the process and time.monotonic() just
        before it was started (sound reaches the monitor some 0.1-0.5 s later)."""
        t = time.monotonic()
        p = subprocess.Popen(["paplay", "-d", self.SINK, str(wav)], env=self._client_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p, t

    def crash(self) -> None:
        """End the server the way a crash or a lost device would, leaving clients pointed
        at it; `start()` brings it back."""
        self._end()

    def stop(self) -> None:
        """End the server and restore os.environ."""
        self._end()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def _end(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> "PulseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def tone_wav(path: Path, seconds: float = 0.5, hz: float = 1000.0, rate: int = 48000,
             amplitude: float = 0.5, lead_silence: float = 0.0) -> Path:
    """A mono PCM16 WAV: `lead_silence` seconds of silence, then a sine tone."""
    n_lead, n = int(lead_silence * rate), int(seconds * rate)
    t = np.arange(n) / rate
    tone = (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    samples = np.concatenate([np.zeros(n_lead, "<i2"), tone])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def tone_onset(samples: np.ndarray, threshold: int = 3000) -> int | None:
    """Index of the first sample louder than `threshold`, or None for a quiet recording."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return int(loud[0]) if len(loud) else None


def video_frames(path: Path, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """Up to `count` frames of a video file, scaled to `size`: real footage to serve
    (costlier to encode than the test pattern, like a real camera)."""
    import av

    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            out.append(cv2.resize(frame.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_AREA))
            if len(out) >= count:
                break
    return out


def _main() -> None:
    ap = argparse.ArgumentParser(description="loopback devices for manual runs and benchmarks")
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mjpeg", help="serve an MJPEG camera until SIGTERM/SIGINT")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--fps", type=float, default=30.0)
    m.add_argument("--width", type=int, default=640)
    m.add_argument("--height", type=int, default=480)
    m.add_argument("--video", type=Path, help="serve frames of this video instead of a test pattern")
    a = ap.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    size = (a.width, a.height)
    frames = video_frames(a.video, size, int(a.fps * 10)) if a.video else None
    with MjpegServer(a.fps, size, a.port, frames=frames) as server:
        print(f"serving {server.url} at {a.fps} fps", flush=True)
        done.wait()
        print(f"frames_sent={server.frames_sent}", flush=True)


if __name__ == "__main__":
    _main()
