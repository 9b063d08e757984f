"""Model files on disk: loading a checkpoint (verified against the sha256 its version row
recorded), falling back past a version whose file is missing or corrupt, and the check
`wm check` runs over every recorded version.

A file that fails for good (gone, wrong checksum, not a checkpoint) marks its version
broken; an I/O error that may pass (a permission, a busy disk) only skips it for now."""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from wm.base import log
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.learn.versions import ModelVersion, all_versions, mark_broken, usable_promoted

MISSING, CHECKSUM, UNREADABLE = "missing", "checksum mismatch", "unreadable"
_SAYS = {MISSING: "is missing", CHECKSUM: "fails its checksum", UNREADABLE: "cannot be read"}
_CHUNK = 1 << 20

_log = log.get("wm.learn")


class ModelFileError(WmError):
    """A model file that cannot be used. `lasting`: it will not get better by itself."""

    def __init__(self, path: Path, problem: str, detail: str, lasting: bool):
        super().__init__(f"{path}: model checkpoint {_SAYS[problem]}" + (f" ({detail})" if detail else ""))
        self.path, self.problem, self.detail, self.lasting = path, problem, detail, lasting


@dataclass(frozen=True)
class ModelFileProblem:
    """One recorded version whose file cannot be used, as `wm check` lists it."""
    version: str
    checkpoint: str          # relative to the data root
    problem: str             # MISSING, CHECKSUM or UNREADABLE
    detail: str
    promoted: bool
    marked_broken: bool      # already kept out of use (versions.mark_broken)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, sha256: str | None) -> None:
    """ModelFileError unless the file is there (and, when a checksum was recorded, has it)."""
    try:
        actual = file_sha256(path) if sha256 else None
        path.stat()
    except FileNotFoundError:
        raise ModelFileError(path, MISSING, "", lasting=True) from None
    except OSError as e:
        raise ModelFileError(path, UNREADABLE, f"{type(e).__name__}: {e}", lasting=False) from None
    if sha256 and actual != sha256:
        raise ModelFileError(path, CHECKSUM, f"sha256 {actual[:12]}..., recorded {sha256[:12]}...",
                             lasting=True)


def load_checkpoint(path, device: torch.device, sha256: str | None = None,
                    mmap: bool = False) -> dict:
    """A checkpoint's contents; with `sha256`, only if the file still has that checksum
    (a flipped bit in a tensor would otherwise load silently). mmap=True: the tensors are
    the file's pages mapped copy-on-write, read as they are used, not copied out of the
    whole file first (a query uses half the tensors; 0.1-0.2 s less per load)."""
    path = Path(path)
    verify_file(path, sha256)
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise ModelFileError(path, MISSING, "", lasting=True) from None
    except OSError as e:
        raise ModelFileError(path, UNREADABLE, str(e), lasting=False) from None
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        first_line = (str(e).splitlines() or [""])[0]
        raise ModelFileError(path, UNREADABLE, first_line, lasting=True) from None


def load_version(paths: Paths, v: ModelVersion, device: torch.device,
                 mmap: bool = False) -> dict:
    """A version's checkpoint (mmap: as load_checkpoint); a file that failed for good marks
    the version broken."""
    try:
        return load_checkpoint(paths.root / v.checkpoint, device, v.sha256, mmap)
    except ModelFileError as e:
        _log.warning("model_file_failed", version=v.version, file=v.checkpoint, problem=e.problem,
                     detail=e.detail, marked_broken=e.lasting)
        if e.lasting:
            mark_broken(paths, v.version, f"{e.problem}" + (f": {e.detail}" if e.detail else ""))
        raise


def newest_usable(paths: Paths, device: torch.device) -> tuple[ModelVersion, dict] | None:
    """The newest promoted version whose file loads, and its checkpoint; each newer one that
    fails is logged (and marked broken if it fails for good). None: fall back to version 0."""
    failed: list[str] = []
    for v in usable_promoted(paths):
        try:
            ckpt = load_version(paths, v, device)
        except ModelFileError:
            failed.append(v.version)
            continue
        if failed:
            _log.warning("model_fallback", failed=failed, using=v.version)
        return v, ckpt
    if failed:
        _log.warning("model_fallback", failed=failed, using="version 0")
    return None


def check_model_files(paths: Paths, checksums: bool = True) -> list[ModelFileProblem]:
    """Every recorded version whose file is missing or fails its checksum (reading each
    file whole; `checksums=False` checks presence only, for a quick look). Changes nothing:
    `versions.mark_broken` is the repair."""
    out = []
    for v in all_versions(paths):
        try:
            verify_file(paths.root / v.checkpoint, v.sha256 if checksums else None)
        except ModelFileError as e:
            out.append(ModelFileProblem(v.version, v.checkpoint, e.problem, e.detail, v.promoted,
                                        v.broken is not None))
    return out
