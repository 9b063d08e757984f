"""Held-out clips are whole stretches of time, never single clips: a clip's 3-second
neighbours look and sound like it, so a random held-out clip is as good as trained on."""
from __future__ import annotations

import numpy as np

BLOCK_SECONDS = 30.0     # a continuous recording is cut into blocks of at most this long
VISIT_GAP_SECONDS = 9.0  # a pause this long between clips ends a visit
# A day with fewer clips is too small to judge on held-out visits (a visit or two of a
# few places): holding any out would only take a fifth of its clips from training.
JUDGE_MIN_CLIPS = 50


def time_blocks(starts: np.ndarray, gap_seconds: float, block_seconds: float = BLOCK_SECONDS) -> np.ndarray:
    """A block id per clip (starts in any order): a new block begins after a gap of at
    least `gap_seconds` or once a block spans `block_seconds`. Ids follow time."""
    starts = np.asarray(starts, float)
    order = np.argsort(starts, kind="stable")
    ids = np.zeros(len(starts), np.int64)
    block, first, prev = 0, None, None
    for i in order:
        t = starts[i]
        if first is not None and (t - prev >= gap_seconds or t - first >= block_seconds):
            block, first = block + 1, None
        if first is None:
            first = t
        ids[i], prev = block, t
    return ids


def hold_out_blocks(rng: np.random.Generator, blocks: np.ndarray, n: int, most: int | None = None,
                    min_blocks: int = 2) -> np.ndarray:
    """Indices of at least n clips (when there are enough) from at least `min_blocks`
    blocks (a single visit says nothing about telling visits apart), taken as whole blocks
    in a random order; a block that would take the total past `most` is passed over, and
    so is one that would leave nothing to train on (a day of one visit trains on it all)."""
    chosen: list[int] = []
    taken = 0
    for b in rng.permutation(np.unique(blocks)):
        if len(chosen) >= n and taken >= min_blocks:
            break
        members = np.flatnonzero(blocks == b).tolist()
        if chosen and most is not None and len(chosen) + len(members) > most:
            continue
        if len(chosen) + len(members) >= len(blocks):
            continue
        chosen += members
        taken += 1
    return np.sort(np.asarray(chosen, np.int64))
