"""Vector shards and index files on disk, under paths.embeddings.

A shard is one immutable pair of .npy files, `{version}/{date}/{kind}-{token}.npy`
(float32, L2-normalised rows, sorted by key) and `....keys.npy` (int64 clip keys; still
keys for the `still` kind), for one model version, one local day and one kind of vector.
Date and modality filters therefore choose files, and queries memory-map them."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wm.base.atomic import fsync_dir, write_atomically
from wm.memory.clips import MAX_STILLS, STILL, STILL_BITS

# The vectors kept per clip, a shard file each: the kinds of wm.learn.encoders.ClipEmbeddings
# (each encoder's own space, the two aligned views in the shared space, and `shared`, a clip
# as seen and heard). Spelled out again rather than imported: importing the encoders loads
# torch (seconds), which `wm label`, retention and most queries never need.
KINDS = ("video", "audio", "shared_video", "shared_audio", "shared")
# And STILL, kept per still rather than per clip: each still's vector in the vision
# encoder's space, so a picture finds the clip that holds it first even where the clip's
# `video` vector (the mean of its stills) has moved away from it (a fade, a scene cut).
# Its rows are keyed by still_keys.
SHARD_KINDS = KINDS + (STILL,)
_LOW = (1 << 32) - 1


@dataclass(frozen=True)
class Shard:
    id: int
    version: str
    date: str
    kind: str
    file: str          # relative to paths.embeddings, without .npy
    rows: int
    dim: int
    stale: bool        # holds rows of clips since re-embedded
    indexed: bool      # its rows are in the version's ANN index


SHARD_COLS = "id, version, date, kind, file, rows, dim, stale, indexed"


@dataclass(frozen=True)
class IndexRecord:
    version: str
    kind: str
    file: str          # relative to paths.embeddings
    rows: int
    trained_rows: int
    nprobe: int
    recall: float      # recall@10 against exact search, measured at build


def version_folder(version: str) -> str:
    """A version as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in version) or "_"


def shard_files(root: Path, rel: str) -> tuple[Path, Path]:
    """(vectors, keys) of the shard `rel` under root."""
    base = root / rel
    return base.with_name(base.name + ".npy"), base.with_name(base.name + ".keys.npy")


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def save_array(path: Path, arr: np.ndarray) -> None:
    """A reader sees the whole array or nothing."""
    write_atomically(path, lambda f: np.save(f, arr))


def write_shard(root: Path, version: str, date: str, kind: str, keys: np.ndarray,
                vecs: np.ndarray) -> tuple[str, int, int]:
    """Write a new shard's files (durably, named by no row yet); returns (file, rows, dim)."""
    order = np.argsort(keys, kind="stable")
    token = f"{time.time_ns():x}{os.getpid():x}"
    rel = f"{version_folder(version)}/{date}/{kind}-{token}"
    vec_path, key_path = shard_files(root, rel)
    save_array(vec_path, np.ascontiguousarray(vecs[order], np.float32))
    save_array(key_path, np.ascontiguousarray(keys[order], np.int64))
    fsync_dir(vec_path.parent)
    return rel, len(keys), vecs.shape[1]


def still_keys(clip_keys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Keys of stills `index` (0 .. MAX_STILLS-1) of the clips with `clip_keys`."""
    clip_keys, index = np.asarray(clip_keys, np.int64), np.asarray(index, np.int64)
    if ((clip_keys & _LOW) >> (32 - STILL_BITS)).any() or (index >= MAX_STILLS).any():
        raise ValueError("a clip row number or still index is too large for a still key")
    return (clip_keys & ~_LOW) | ((clip_keys & _LOW) << STILL_BITS) | index


def still_places(count: int) -> np.ndarray:
    """Which of a clip's `count` stills get a still vector: all, or MAX_STILLS spread
    evenly from the first to the last."""
    if count <= MAX_STILLS:
        return np.arange(count)
    return np.linspace(0, count - 1, MAX_STILLS).round().astype(np.int64)


def clip_keys_of(keys: np.ndarray, kind: str) -> np.ndarray:
    """The clip keys of a shard's row keys: its own for every kind but STILL."""
    keys = np.asarray(keys, np.int64)
    if kind != STILL:
        return keys
    return (keys & ~_LOW) | ((keys & _LOW) >> STILL_BITS)
