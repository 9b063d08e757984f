"""Ranking within one model version and one kind of vector: exact cosine over memory-mapped
shards, or the version's IVF index (wm/memory/ann.py) when the ranking spans more than
settings.memory.ann_min_rows vectors; the index's short list is re-ranked against the
shards' float32 rows, so scores are exact cosines either way. Shards newer than the index
are always scanned exactly and merged in, so a fresh day is searchable before any index
update.

Ranked by `still` (a picture against the clips' pictures), a clip scores as its nearest
still. Clips committed before stills had vectors of their own are ranked by their `video`
vectors (the mean of the stills) until a night re-embeds them: through the version's
index when none of its days has stills, by exact scan for the days without."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wm.memory import ann
from wm.memory.clips import MAX_STILLS, STILL, ClipRecord, date_key_range
from wm.memory.shards import Shard, clip_keys_of
from wm.memory.store import Store


@dataclass(frozen=True)
class Hit:
    clip: ClipRecord
    score: float


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def exact_search(store: Store, shards: list[Shard], q: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (clip keys, scores) over the live rows of `shards`."""
    keys_out, scores_out = [], []
    for s in shards:
        x, keys = store.load(s)
        # Not x @ q: OpenBLAS wakes its threads for every shard's product, and on a busy
        # machine waiting for them tripled the scan; einsum's single-threaded SIMD loop
        # is as fast as the (memory-bound) scan can go.
        scores = np.einsum("ij,j->i", x, q)
        mask = store.live_mask(s, keys)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        top = topk(scores, k)
        top = top[np.isfinite(scores[top])]
        keys_out.append(clip_keys_of(keys[top], s.kind))
        scores_out.append(scores[top])
    if not keys_out:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    keys, scores = np.concatenate(keys_out), np.concatenate(scores_out)
    top = topk(scores, k)
    return keys[top], scores[top]


def rows_in(shards: list[Shard]) -> int:
    return sum(s.rows for s in shards)


def search(store: Store, version: str, kind: str, q: np.ndarray, k: int,
           lo: str | None = None, hi: str | None = None, ann_min_rows: int = 200_000,
           exclude: frozenset[int] = frozenset()) -> tuple[list[Hit], str]:
    """Top-k clips whose current vectors are `version`'s, by cosine between `q` and their
    `kind` vectors, filed under days lo..hi. Returns (hits, how they were searched)."""
    q = np.asarray(q, np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    shards = store.shards(version, kind, lo, hi)
    if kind == STILL and not shards:      # a version from before stills had vectors
        kind, shards = "video", store.shards(version, "video", lo, hi)
    want = k + len(exclude)
    if kind == STILL:        # a clip may fill MAX_STILLS places of the list before dedup
        want *= MAX_STILLS
        have = {s.date for s in shards}
        shards += [replace(s, indexed=False) for s in store.shards(version, "video", lo, hi)
                   if s.date not in have]
    rec = store.index(version, kind)
    method = "exact"
    keys, scores = [], []
    if (rec is not None and ann.worthwhile(rec)
            and rows_in([s for s in shards if s.indexed]) > ann_min_rows):
        index = ann.open_index(store, rec)
        key_range = date_key_range(lo, hi) if (lo or hi) else None
        # Rows of clips re-embedded since the index was written may still come back:
        # keep a few more and drop them below.
        cand = ann.candidates(index, q, ann.short_list(want + 16), key_range, rec.nprobe)
        ak, asc = ann.rerank(store, [s for s in shards if s.indexed], q, cand, want + 16)
        keys.append(clip_keys_of(ak, kind))
        scores.append(asc)
        shards = [s for s in shards if not s.indexed]
        method = f"ivf(nprobe={rec.nprobe}, {len(cand)} re-ranked)"
    ek, es = exact_search(store, shards, q, want)
    keys.append(ek)
    scores.append(es)
    keys_all = np.concatenate(keys)
    scores_all = np.concatenate(scores).astype(np.float32)
    order = np.argsort(-scores_all, kind="stable")
    order = order[np.unique(keys_all[order], return_index=True)[1]]    # each clip's best
    order = order[np.argsort(-scores_all[order], kind="stable")]
    hits: list[Hit] = []
    # Rows are looked up best first, a k at a time, until k are kept: on a large memory
    # each lookup can be a disk read of a B-tree page, and most candidates are never shown.
    for start in range(0, len(order), max(k, 1)):
        part = order[start:start + max(k, 1)]
        clips = store.clips_by_key(keys_all[part])
        for i in part:
            clip = clips.get(int(keys_all[i]))
            if clip is None or clip.version != version or clip.key in exclude:
                continue
            hits.append(Hit(clip, float(scores_all[i])))
            if len(hits) == k:
                return hits, method
    return hits, method
