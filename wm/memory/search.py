"""Ranking within one model version and one kind of vector: exact cosine over memory-mapped
shards, or the version's IVF index (wm/memory/ann.py) when the ranking spans more than
settings.memory.ann_min_rows vectors; the index's short list is re-ranked against the
shards' float32 rows, so scores are exact cosines either way. Shards newer than the index
are always scanned exactly and merged in, so a fresh day is searchable before any index
update.

Ranked by `still` (a picture against the clips' pictures), a clip scores as the mean of
its stills (its `video` vector), which generalises to new views of a place better than
its nearest still does (the demo: 90 against 86 of 100 new pictures in the top 5), unless
one of its stills is a near-copy of the picture: then as that still, so a still of a clip
finds that clip first even where the clip's mean has moved away from it (a fade, a scene
cut). Clips committed before stills had vectors of their own have only the mean."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wm.memory import ann
from wm.memory.clips import MAX_STILLS, STILL, ClipRecord, date_key_range
from wm.memory.shards import Shard, clip_keys_of
from wm.memory.store import Store

# Cosine in the vision space at and above which a still counts as a near-copy of the
# picture asked with. A still asked for scores 1.0 against itself. On the demo's memory
# new pictures came no nearer than 0.92 to any still; on the 4-minute night of
# real footage a still's nearest still in another clip had a median cosine of 0.993, and 4
# of 43 were at 0.999 or more (frames of a static shot): a barely trained model crowds its
# vectors.
NEAR_COPY = 0.999


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


def ranked(store: Store, version: str, kind: str, q: np.ndarray, want: int, lo: str | None,
           hi: str | None, ann_min_rows: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The best `want` rows of one kind, as (clip keys, scores, how) best first; a clip
    may appear more than once (its stills)."""
    shards = store.shards(version, kind, lo, hi)
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
    keys_all = np.concatenate(keys + [ek])
    scores_all = np.concatenate(scores + [es]).astype(np.float32)
    order = np.argsort(-scores_all, kind="stable")
    return keys_all[order], scores_all[order], method


def near_copies_first(stills: tuple[np.ndarray, np.ndarray],
                      means: tuple[np.ndarray, np.ndarray],
                      near: float = NEAR_COPY) -> tuple[np.ndarray, np.ndarray]:
    """A clip's score by picture: its mean still's cosine, or its nearest still's where
    that still is a near-copy of the picture (cosine >= `near`), whichever is higher.
    (keys, scores) in, each clip once, best first, out."""
    keys = np.concatenate([stills[0][stills[1] >= near], means[0]])
    scores = np.concatenate([stills[1][stills[1] >= near], means[1]])
    return best_per_clip(keys, scores)


def best_per_clip(keys: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each key once, with its best score, best first."""
    order = np.argsort(-scores, kind="stable")
    first = np.sort(np.unique(keys[order], return_index=True)[1])
    return keys[order][first], scores[order][first]


def search(store: Store, version: str, kind: str, q: np.ndarray, k: int,
           lo: str | None = None, hi: str | None = None, ann_min_rows: int = 200_000,
           exclude: frozenset[int] = frozenset()) -> tuple[list[Hit], str]:
    """Top-k clips whose current vectors are `version`'s, by cosine between `q` and their
    `kind` vectors (STILL: see near_copies_first), filed under days lo..hi. Returns (hits,
    how they were searched)."""
    q = np.asarray(q, np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    want = k + len(exclude)
    if kind == STILL:    # a clip may fill MAX_STILLS places of the list
        stills = ranked(store, version, STILL, q, want * MAX_STILLS, lo, hi, ann_min_rows)
        keys, scores, method = ranked(store, version, "video", q, want, lo, hi, ann_min_rows)
        keys, scores = near_copies_first(stills[:2], (keys, scores))
    else:
        keys, scores, method = ranked(store, version, kind, q, want, lo, hi, ann_min_rows)
    hits: list[Hit] = []
    # Rows are looked up best first, a k at a time, until k are kept: on a large memory
    # each lookup can be a disk read of a B-tree page, and most candidates are never shown.
    for start in range(0, len(keys), max(k, 1)):
        part = keys[start:start + max(k, 1)]
        clips = store.clips_by_key(part)
        for key, score in zip(part, scores[start:start + max(k, 1)]):
            clip = clips.get(int(key))
            if clip is None or clip.version != version or clip.key in exclude:
                continue
            hits.append(Hit(clip, float(score)))
            if len(hits) == k:
                return hits, method
    return hits, method
