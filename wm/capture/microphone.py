"""The microphone: a sounddevice input stream, 16 kHz mono int16.

PortAudio calls `_callback` at real-time priority: it only copies the block into a queue
(with the time it arrived) and returns. A worker thread takes the blocks from there,
resamples them when the device refused 16 kHz, counts and logs overflows, and hands
them on. A stream that dies, or sends nothing for stall_seconds, is closed and opened
again with back-off (PortAudio has no hot-plug events: the device list is re-read first).
sounddevice is imported only when a microphone is used; without PortAudio the error
says what to install."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np

from wm.base import log
from wm.base.errors import WmError
from wm.capture.camera import OFF, OK, REOPENING, DeviceReader, backoff

BLOCK_SECONDS = 0.1   # 10 callbacks a second: little overhead, a block well inside a clip
# A new stream may take this long to deliver its first block (PulseAudio: ~1.2 s) before
# it counts as stalled, whatever stall_seconds says.
FIRST_BLOCK_SECONDS = 3.0
OVERFLOW_LOG_SECONDS = 10.0


def sounddevice():
    """The sounddevice module, or a WmError that says how to get PortAudio."""
    try:
        import sounddevice as sd
    except OSError as e:
        raise WmError(f"microphone: PortAudio is missing ({e}); install libportaudio2 "
                      "(apt-get install libportaudio2)") from None
    return sd


def input_devices() -> list[dict]:
    """PortAudio's input devices: dicts with index, name, max_input_channels, default_samplerate."""
    sd = sounddevice()
    return [dict(d) for d in sd.query_devices() if d["max_input_channels"] > 0]


def refresh() -> None:
    """Re-read the device list (PortAudio only looks at start-up). Only safe while this
    process has no stream open."""
    sd = sounddevice()
    sd._terminate()
    sd._initialize()


def find_device(spec: str) -> int:
    """The input device `spec` names: "default", an index, or (part of) a name, exact
    names first. WmError otherwise."""
    sd = sounddevice()
    devices = input_devices()
    if spec.strip().lower() == "default":
        index = sd.default.device[0]
        if index is not None and index >= 0:
            return int(index)
        devices = [d for d in devices if d["name"] == "default"] or devices
        if devices:
            return int(devices[0]["index"])
    elif spec.strip().isdigit():
        if any(d["index"] == int(spec) for d in devices):
            return int(spec)
    else:
        want = spec.strip().lower()
        for match in (lambda n: n == want, lambda n: want in n):
            hits = [d for d in devices if match(d["name"].lower())]
            if hits:
                return int(hits[0]["index"])
    raise WmError(f"microphone '{spec}': not found")


class StreamResampler:
    """Resamples a stream block by block with the same result as resampling it whole:
    each step sees PAD input samples of context on both sides (so PAD/rate of latency)."""

    def __init__(self, orig: int, new: int):
        import math

        import torch
        import torchaudio.functional as F

        self.torch, self.F = torch, F
        g = math.gcd(orig, new)
        self.orig, self.new = orig, new
        self.step_in, self.step_out = orig // g, new // g
        self.pad = self.step_in * max(1, -(-64 // self.step_in))
        self.buf = np.zeros(self.pad, np.float32)  # left context: silence before the start

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """float32 samples in, int16 out (fewer or more, as the rates say)."""
        self.buf = np.concatenate([self.buf, block.astype(np.float32)])
        usable = (len(self.buf) - 2 * self.pad) // self.step_in * self.step_in
        if usable <= 0:
            return np.zeros(0, np.int16)
        x = self.torch.from_numpy(self.buf[:2 * self.pad + usable])
        y = self.F.resample(x, self.orig, self.new).numpy()
        first = self.pad // self.step_in * self.step_out
        out = y[first:first + usable // self.step_in * self.step_out]
        self.buf = self.buf[usable:]
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    @property
    def lag(self) -> float:
        """Seconds of input held back: the output ends this long before the input does."""
        return (len(self.buf) - self.pad) / self.orig


class Microphone(DeviceReader):
    """`on_audio(block, t_end, new_stream, overflow)` gets int16 blocks (t_end:
    time.monotonic() when the block arrived, i.e. of its last sample); `on_state(t, reason)`
    gets "device_lost"/"stall" when the stream goes away."""
    kind = "microphone"

    def __init__(self, spec: str, *, rate: int, stall_seconds: float, reopen_max_seconds: float,
                 on_audio: Callable[[np.ndarray, float, bool, bool], None],
                 on_state: Callable[[float, str], None]):
        self.spec = spec
        self.rate = rate
        self.stall_seconds = stall_seconds
        self.reopen_max = reopen_max_seconds
        self.on_audio, self.on_state = on_audio, on_state
        self.state = OFF
        self.description = spec
        self.overflows = 0
        self.log = log.get("wm.capture.microphone").bind(microphone=spec)
        self._blocks: queue.SimpleQueue = queue.SimpleQueue()
        self._stream = None
        self._resample: StreamResampler | None = None
        self._channels = 1
        self._dead = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # PortAudio's thread: copy and go, nothing else
    def _callback(self, indata, frames, time_info, status) -> None:
        self._blocks.put((indata.copy(), time.monotonic(), bool(status.input_overflow)))

    def _open(self):
        sd = sounddevice()
        try:
            device = find_device(self.spec)
        except WmError:
            refresh()  # it may have been plugged in since PortAudio started
            device = find_device(self.spec)
        info = sd.query_devices(device)
        native = int(info["default_samplerate"])
        errors = []
        for rate, channels in ((self.rate, 1), (native, 1), (native, min(2, info["max_input_channels"]))):
            try:
                sd.check_input_settings(device=device, samplerate=rate, channels=channels, dtype="int16")
                break
            except Exception as e:
                errors.append(str(e))
        else:
            raise WmError(f"microphone '{self.spec}': cannot be opened ({errors[0]})")
        self._dead.clear()
        stream = sd.InputStream(device=device, samplerate=rate, channels=channels, dtype="int16",
                                blocksize=int(rate * BLOCK_SECONDS), callback=self._callback,
                                finished_callback=self._dead.set)
        stream.start()
        self._channels = channels
        self._resample = StreamResampler(rate, self.rate) if rate != self.rate else None
        self.description = f"{info['name']} {rate} Hz" + (
            f" resampled to {self.rate} Hz" if self._resample else "")
        return stream

    def open(self) -> None:
        """Open now; WmError saying why not (Recorder.start reports it)."""
        try:
            self._stream = self._open()
            self._set(OK, time.monotonic())
        except WmError:
            raise
        except Exception as e:  # PortAudioError and friends: the device is there but refuses
            raise WmError(f"microphone '{self.spec}': cannot be opened: {e}") from None

    def _close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception as e:
                self.log.debug("microphone_close_failed", error=repr(e))
            self._stream = None

    def _run(self, stop: threading.Event) -> None:
        attempt, last, new_stream = 0, time.monotonic(), True
        overflow_logged, overflow_reported = 0.0, 0
        try:
            while not stop.is_set():
                if self._stream is None:
                    try:
                        self._stream = self._open()
                        new_stream, last = True, time.monotonic()
                        self._set(OK, last)
                    except Exception as e:
                        self._set(REOPENING, last, "device_lost")
                        self.log.debug("microphone_reopen_failed", attempt=attempt, error=str(e))
                        try:  # a server or device that comes back shows up only after this
                            refresh()
                        except Exception as e2:
                            self.log.debug("portaudio_refresh_failed", error=repr(e2))
                        stop.wait(backoff(attempt, self.reopen_max))
                        attempt += 1
                        continue
                try:
                    block, t, overflow = self._blocks.get(timeout=0.1)
                except queue.Empty:
                    now = time.monotonic()
                    limit = max(self.stall_seconds, FIRST_BLOCK_SECONDS) if new_stream else self.stall_seconds
                    if self._dead.is_set() or now - last > limit:
                        self._set(REOPENING, last, "device_lost" if self._dead.is_set() else "stall")
                        self._close()
                        self._drain(deliver=False)
                    continue
                last = t
                self._deliver(block, t, new_stream, overflow)
                new_stream, attempt = False, 0
                self._set(OK, t)
                if overflow:
                    self.overflows += 1
                    if t - overflow_logged >= OVERFLOW_LOG_SECONDS:
                        self.log.warning("audio_overflow", overflows=self.overflows,
                                         since_last_line=self.overflows - overflow_reported)
                        overflow_logged, overflow_reported = t, self.overflows
        finally:
            self._close()
            self._drain(deliver=True, new_stream=new_stream)

    def _drain(self, deliver: bool, new_stream: bool = False) -> None:
        """Empty the queue: hand the blocks on (stopping), or drop them (a dead stream)."""
        while True:
            try:
                block, t, overflow = self._blocks.get_nowait()
            except queue.Empty:
                return
            if deliver:
                self._deliver(block, t, new_stream, overflow)
                new_stream = False

    def _deliver(self, block: np.ndarray, t: float, new_stream: bool, overflow: bool) -> None:
        mono = block[:, 0] if self._channels == 1 else block.mean(axis=1)
        if self._resample is not None:
            mono = self._resample(mono)
            t -= self._resample.lag
        else:
            mono = mono.astype(np.int16, copy=False)
        self.on_audio(mono, t, new_stream, overflow)
