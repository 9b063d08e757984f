"""WAV files: the one PCM16 mono format every layer reads (training, commit, sheets) and
capture writes (atomically)."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from wm.base.atomic import commit_file, partial_name


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    tmp = partial_name(path)
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
    commit_file(tmp, path)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """int16 mono samples and their rate."""
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data, w.getframerate()
