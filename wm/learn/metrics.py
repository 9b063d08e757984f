"""Numbers that say whether a model learned, not just whether its loss fell (a JEPA loss
falls happily while the embeddings collapse)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rankme(x: np.ndarray) -> float:
    """Effective rank (Garrido et al.): exp of the entropy of the normalised singular
    values of the centred embeddings (n, D). Centred, because pooled transformer features
    share a large mean direction that says nothing about how the inputs differ."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float("nan")
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / (s.sum() + 1e-12) + 1e-12
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_std(x: np.ndarray) -> float:
    """Mean over dimensions of the per-dimension std of the L2-normalised embeddings:
    about 1/sqrt(D) when they spread over the sphere, 0 when they all coincide."""
    x = np.asarray(x, np.float64)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    return float(x.std(0).mean())


def recall_at_k(queries: np.ndarray, keys: np.ndarray, k: int) -> float:
    """Share of rows i whose own key i ranks in the top k by cosine similarity."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    sim = q @ c.T
    own = np.diag(sim)
    rank = (sim > own[:, None]).sum(1)
    return float((rank < k).mean())


@dataclass(frozen=True)
class Spread:
    rankme: float
    std: float
    n: int

    def collapsed(self, min_rank: float, min_std: float) -> bool:
        return not (self.rankme >= min_rank and self.std >= min_std)


def spread(x: np.ndarray) -> Spread:
    x = x[~np.isnan(x).any(1)]
    return Spread(rankme(x), mean_std(x) if len(x) else float("nan"), len(x))
