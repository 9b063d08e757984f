"""Reading a clip's media for embedding, and telling "gone" from "cannot be read now".

A file is *missing* only when the system says so (FileNotFoundError) while the data
folder itself can be listed: a network drive that went away makes every file look
missing, and that must not read as "deleted". Any other failure (an I/O error, a busy
drive, a directory or FIFO where a file should be, a JPEG or WAV that does not decode) is
*unreadable now*: the clip is tried again at a later cycle, up to
settings.memory.read_attempts times (wm.memory.retry), and never taken for deleted."""
from __future__ import annotations

import io
import os
import stat
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wm.base.manifest import Manifest
from wm.base.paths import Paths
from wm.memory.clips import Clip

OK, MISSING, UNREADABLE = "ok", "missing", "unreadable"
# What decoding damaged media raises (wave.Error is not an OSError; a cut WAV, EOFError;
# an empty JPEG, cv2.error); a JPEG that does not decode otherwise comes back as None.
_DAMAGED = (wave.Error, EOFError, ValueError, cv2.error)


@dataclass
class Loaded:
    clip: Clip
    stills: list[np.ndarray]
    audio: np.ndarray | None


@dataclass(frozen=True)
class MediaRead:
    clip: Clip
    loaded: Loaded | None   # what could be read; None when nothing could
    verdict: str            # OK, MISSING or UNREADABLE
    problem: str = ""       # the first failure, for the log


@dataclass
class _Tally:
    read: int = 0        # stills and sound decoded
    present: int = 0     # files that exist but are not read here (the video)
    missing: int = 0     # FileNotFoundError
    failed: int = 0      # any other error, or a decode failure
    problem: str = ""

    def fail(self, path: Path, why: str) -> None:
        self.failed += 1
        self.problem = self.problem or f"{path.name}: {why}"


def verdict(read: int, present: int, missing: int, failed: int, root_listable: bool) -> str:
    """What a read of one clip means. Something failed: unreadable now. Nothing failed and
    something was read: fine (a missing part is just missing). Nothing read: missing only
    if every file is confirmed gone; a file that exists but gives nothing to embed, or a
    data folder that cannot be listed, is unreadable now."""
    if failed:
        return UNREADABLE
    if read:
        return OK
    if present or (missing and not root_listable):
        return UNREADABLE
    return MISSING


def read_file(path: Path) -> bytes:
    """The bytes of a regular file. A FIFO or device is refused before opening: reading one
    would block the commit for good."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"not a regular file: {path}")
    return path.read_bytes()


def decode_wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _read(path: Path, tally: _Tally, decode, damaged: str):
    """decode(bytes) of one file, or None with the failure counted in `tally`."""
    try:
        out = decode(read_file(path))
    except FileNotFoundError:
        tally.missing += 1
        return None
    except OSError as e:
        tally.fail(path, e.strerror or str(e))
        return None
    except _DAMAGED as e:
        out, damaged = None, f"{damaged} ({e})"
    if out is None:
        tally.fail(path, damaged)
        return None
    tally.read += 1
    return out


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _look(path: Path, tally: _Tally) -> None:
    """A file that is not read here: only whether it is there counts."""
    try:
        os.stat(path)
        tally.present += 1
    except FileNotFoundError:
        tally.missing += 1
    except OSError as e:
        tally.fail(path, e.strerror or str(e))


def root_listable(paths: Paths) -> bool:
    """The data folder can be listed: its files' absence is real, not a drive gone."""
    try:
        with os.scandir(paths.data):
            return True
    except OSError:
        return False


def read_media(paths: Paths, clip: Clip) -> MediaRead:
    """A clip's stills and samples, and what the attempt to read them means."""
    tally = _Tally()
    stills = [im for im in (_read(paths.data / f, tally, _decode_jpeg, "not a decodable JPEG")
                            for f in clip.frames) if im is not None]
    audio = (_read(paths.data / clip.audio, tally, decode_wav, "not a decodable WAV")
             if clip.audio else None)
    if clip.video:
        _look(paths.data / clip.video, tally)
    if not clip.frames and not clip.audio:
        return MediaRead(clip, None, MISSING, "the clip holds neither stills nor sound")
    v = verdict(tally.read, tally.present, tally.missing, tally.failed,
                root_listable(paths) if tally.missing else True)
    loaded = Loaded(clip, stills, audio) if (stills or audio is not None) else None
    if v == OK:
        return MediaRead(clip, loaded, v)
    why = ("its files are gone" if v == MISSING else "no still or sound left to embed"
           if tally.present else "its data folder cannot be listed")
    return MediaRead(clip, loaded, v, tally.problem or why)


def read_manifest(paths: Paths, rel: str) -> tuple[Clip | None, str, str]:
    """(clip, verdict, problem) for a queued clip's manifest."""
    path = paths.data / rel
    try:
        m = Manifest.from_json(read_file(path).decode("utf-8"))
    except FileNotFoundError:
        v = MISSING if root_listable(paths) else UNREADABLE
        return None, v, f"{path.name}: no such file"
    except OSError as e:
        return None, UNREADABLE, f"{path.name}: {e.strerror or e}"
    except (ValueError, TypeError, KeyError) as e:
        return None, UNREADABLE, f"{path.name}: not a manifest ({e})"
    return Clip.from_manifest(m, rel), OK, ""
