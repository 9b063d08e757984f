"""I-JEPA multi-block masks, as pure arithmetic on a patch grid.

Each image gets `n_targets` rectangular target blocks (the predictor's job) and one
large context block minus every target (what the student encoder sees). Block sizes are
drawn once per batch so every image has the same number of target tokens, and contexts
are cut to the batch's smallest by random subsampling: fixed shapes keep the whole batch
in one tensor (one large matmul per layer instead of a loop over images)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskSpec:
    grid: tuple[int, int]                        # patch rows, patch columns
    n_targets: int
    target_scale: tuple[float, float]            # share of the grid one target block covers
    aspect: tuple[float, float] = (0.75, 1.5)    # height / width of a target block
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_context: int = 4


@dataclass(frozen=True)
class BatchMasks:
    context: np.ndarray   # (B, Nc) int64: patch indices the student sees, ascending
    targets: np.ndarray   # (B, M, Nt) int64: patch indices of each target block, row-major


def spec_for(image_size: int, patch_size: int, mask_ratio: float, target_blocks: int) -> MaskSpec:
    """Target blocks sized so their expected total is about `mask_ratio` of the image
    (I-JEPA's 4 blocks of 15-20% for a ratio of 0.6); overlaps and the context block's
    border make up the rest of the removed share. Blocks never add up to more than 90% of
    the grid, so some context always remains."""
    n = image_size // patch_size
    per = min(mask_ratio, 0.675) / target_blocks
    return MaskSpec(grid=(n, n), n_targets=target_blocks, target_scale=(per, per * 4 / 3),
                    min_context=max(1, n * n // 16))


def block_shape(rng: np.random.Generator, grid: tuple[int, int], scale: tuple[float, float],
                aspect: tuple[float, float]) -> tuple[int, int]:
    """(height, width) in patches of a block covering a `scale` share with an aspect in range."""
    rows, cols = grid
    area = rng.uniform(*scale) * rows * cols
    ar = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
    h = min(rows, max(1, round(math.sqrt(area * ar))))
    w = min(cols, max(1, round(math.sqrt(area / ar))))
    return h, w


def _block(rng: np.random.Generator, grid: tuple[int, int], h: int, w: int) -> np.ndarray:
    rows, cols = grid
    r0 = int(rng.integers(0, rows - h + 1))
    c0 = int(rng.integers(0, cols - w + 1))
    return ((r0 + np.arange(h))[:, None] * cols + (c0 + np.arange(w))[None, :]).ravel()


def sample_masks(rng: np.random.Generator, spec: MaskSpec, batch: int) -> BatchMasks:
    n = spec.grid[0] * spec.grid[1]
    th, tw = block_shape(rng, spec.grid, spec.target_scale, spec.aspect)
    ch, cw = block_shape(rng, spec.grid, spec.context_scale, (1.0, 1.0))
    targets, contexts = [], []
    for _ in range(batch):
        # Re-draw target positions until enough context is left (I-JEPA does the same).
        for _attempt in range(20):
            blocks = [_block(rng, spec.grid, th, tw) for _ in range(spec.n_targets)]
            keep = np.zeros(n, bool)
            keep[_block(rng, spec.grid, ch, cw)] = True
            keep[np.concatenate(blocks)] = False
            if keep.sum() >= spec.min_context:
                break
        else:  # tiny grids: fall back to everything the targets leave
            keep = np.ones(n, bool)
            keep[np.concatenate(blocks)] = False
        targets.append(np.stack(blocks))
        contexts.append(np.flatnonzero(keep))
    size = min(len(c) for c in contexts)
    context = np.stack([np.sort(rng.choice(c, size, replace=False)) for c in contexts])
    return BatchMasks(context=context.astype(np.int64), targets=np.stack(targets).astype(np.int64))
