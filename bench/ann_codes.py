"""Which codes the IVF index should keep, measured side by side in one run on the same
vectors: IVF with 8-bit scalar codes (SQ8, 256 B a 256-d vector), 4-bit (SQ4, 128 B),
product-quantised codes (PQ32 / PQ64: 32 / 64 B), and IVF-Flat (float32, 1 KiB: the
baseline, exact within a probed cell). Every variant's short list is re-ranked by exact
cosine, as wm.memory.search does; recall@10 is against exact search.

    .venv/bin/python bench/ann_codes.py                    # 1M vectors, 100 queries
    .venv/bin/python bench/ann_codes.py --n 300000 --short-list 100 400

Data as bench/query.py: generated clustered 256-d unit vectors (2,000 centres, members at
cosine ~0.86 from theirs), in RAM (no store: this compares the codes, not the project)."""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import faiss
import numpy as np

DIM = 256


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def members(rng, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    c = centres[rng.integers(len(centres), size=n)]
    return unit(c + spread * rng.normal(size=(n, DIM)).astype(np.float32) / np.sqrt(DIM))


def make(kind: str, nlist: int):
    q = faiss.IndexFlatL2(DIM)
    if kind == "flat":
        return faiss.IndexIVFFlat(q, DIM, nlist, faiss.METRIC_L2)
    if kind.startswith("sq"):
        qt = {"sq8": faiss.ScalarQuantizer.QT_8bit, "sq4": faiss.ScalarQuantizer.QT_4bit}[kind]
        return faiss.IndexIVFScalarQuantizer(q, DIM, nlist, qt, faiss.METRIC_L2)
    return faiss.IndexIVFPQ(q, DIM, nlist, int(kind[2:]), 8)


@dataclass
class Row:
    kind: str
    train_s: float
    add_s: float
    mb: float
    nprobe: int
    short: int
    p50_ms: float
    recall: float


def measure(kind, x, queries, truth, nlist, nprobes, shorts, rng) -> list[Row]:
    index = make(kind, nlist)
    t = time.perf_counter()
    index.train(x[rng.choice(len(x), min(len(x), 48 * nlist), replace=False)])
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    index.add(x)
    add_s = time.perf_counter() - t
    mb = index.invlists.compute_ntotal() * index.code_size / 1e6
    rows = []
    for nprobe in nprobes:
        index.nprobe = nprobe
        for short in shorts:
            times, hits = [], []
            for q, true in zip(queries, truth):
                t = time.perf_counter()
                _, ids = index.search(q[None], short)
                ids = ids[0][ids[0] >= 0]
                top = ids[np.argsort(-(x[ids] @ q))[:10]]   # exact re-ranking
                times.append((time.perf_counter() - t) * 1000)
                hits.append(len(set(top.tolist()) & set(true.tolist())) / 10)
            rows.append(Row(kind, train_s, add_s, mb, nprobe, short,
                            statistics.median(times), float(np.mean(hits))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--nlist", type=int, default=0, help="default sqrt(n), as the project")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--short-list", type=int, nargs="+", default=[100])
    ap.add_argument("--kinds", nargs="+", default=["flat", "sq8", "sq4", "pq32", "pq64"])
    ap.add_argument("--spread", type=float, default=0.6)
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    centres = unit(rng.normal(size=(2000, DIM)).astype(np.float32))
    x, queries = members(rng, centres, a.n, a.spread), members(rng, centres, a.queries, a.spread)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    nlist = a.nlist or int(np.sqrt(a.n))
    print(f"{a.n:,} x {DIM}-d, {nlist} cells, {a.queries} queries, re-ranked exactly")
    print(f"{'codes':<6} {'train s':>8} {'add s':>7} {'codes MB':>9} {'nprobe':>7} {'short':>6}"
          f" {'p50 ms':>7} {'recall@10':>10}")
    for kind in a.kinds:
        for r in measure(kind, x, queries, truth, nlist, a.nprobe, a.short_list, rng):
            print(f"{r.kind:<6} {r.train_s:>8.1f} {r.add_s:>7.1f} {r.mb:>9.0f} {r.nprobe:>7}"
                  f" {r.short:>6} {r.p50_ms:>7.2f} {r.recall:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
