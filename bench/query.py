"""Query latency and recall of the memory's search against NumPy brute force and faiss flat,
all measured in the same run on the same vectors; and commit throughput.

    .venv/bin/python bench/query.py                        # 100k and 1M vectors
    .venv/bin/python bench/query.py --sizes 100000         # quicker
    .venv/bin/python bench/query.py --sizes 10000000       # needs ~12 GB free RAM, 25 GB disk
    # commit throughput only:
    .venv/bin/python bench/query.py --sizes --commit-clips 64
    .venv/bin/python bench/query.py --sizes 300000 --centres 100000 --spread 1.0   # hard data

Memories are built through the project's store (28,800 clips a day, like a real day's
clips) from clustered 256-d unit vectors: by default 2,000 cluster centres, members at
cosine ~0.86 from theirs; queries are fresh members. "project" is
wm.memory.search.search (exact below memory.ann_min_rows, the version's IVF index above,
including the SQLite lookup of the clips it returns); "numpy" is one float32 matrix-vector product over the vectors held in
RAM plus argpartition; "faiss flat" is IndexFlatIP over the same vectors. Recall@10 is
against exact. Commit throughput runs commit_queued on synthetic clips with the real
encoders at the default model size (random weights: speed does not depend on them)."""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wm.base import config  # noqa: E402
from wm.base.paths import Paths  # noqa: E402
from wm.memory import ann  # noqa: E402
from wm.memory.search import search  # noqa: E402
from wm.learn.encoders import ClipEmbeddings  # noqa: E402
from wm.memory.clips import Clip  # noqa: E402
from wm.memory.store import Store  # noqa: E402

DIM = 256
PER_DAY = 28_800
CENTRES = 2_000
SPREAD = 0.6   # member = centre + SPREAD * N(0, I/d): cosine to the centre ~0.86


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def members(rng, centres, n) -> np.ndarray:
    c = centres[rng.integers(len(centres), size=n)]
    return unit(c + SPREAD * rng.normal(size=(n, DIM)).astype(np.float32) / np.sqrt(DIM))


def set_data(spread: float, centres: int) -> None:
    global SPREAD, CENTRES
    SPREAD, CENTRES = spread, centres


def build(paths: Paths, n: int, rng, centres) -> tuple[Store, np.ndarray | None, float]:
    """A memory of n clips under version 'bench' (vectors of kind 'video'); returns the
    store, the vectors in RAM (None above 2M, to spare memory) and seconds per 1k clips."""
    store = Store(paths)
    keep = n <= 2_000_000
    held = []
    t0 = time.perf_counter()
    first = date(2024, 1, 1)
    for day_i, start in enumerate(range(0, n, PER_DAY)):
        m = min(PER_DAY, n - start)
        day = (first + timedelta(days=day_i)).isoformat()
        base = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
        clips = []
        for i in range(m):
            t = base + timedelta(seconds=3 * i)
            cid = t.strftime("%Y%m%dT%H%M%SZ")
            clips.append(Clip(cid, day, t.isoformat(), 3.0, f"clips/{day}/{cid}.json",
                              None, None, ()))
        x = members(rng, centres, m)
        nan = np.full((m, 1), np.nan, np.float32)
        store.add("bench", clips, ClipEmbeddings(x, nan, nan, nan, shared=nan))
        if keep:
            held.append(x)
        print(f"\r  building: {start + m:,} / {n:,} clips", end="", flush=True)
    print()
    seconds = time.perf_counter() - t0
    return store, (np.concatenate(held) if keep else None), seconds / n * 1000


def timed(fn, queries) -> tuple[list[float], list]:
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append((time.perf_counter() - t) * 1000)
    return times, out


def p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99))


def bench_size(n: int, n_queries: int, settings, workdir: Path) -> None:
    import faiss

    rng = np.random.default_rng(n)
    centres = unit(rng.normal(size=(CENTRES, DIM)).astype(np.float32))
    paths = Paths(workdir / f"mem-{n}")
    print(f"== {n:,} vectors x {DIM}-d float32 ({n * DIM * 4 / 1e9:.2f} GB)")
    store, x, ms_per_k = build(paths, n, rng, centres)
    print(f"  store.add: {1000 / ms_per_k:,.0f} clips/s (arrays + rows, no embedding)")
    mem = settings.memory
    t = time.perf_counter()
    with store.writer():
        rec = ann.sync_index(store, "bench", "video", mem.ann_min_rows, mem.ann_nprobe)
    if rec:
        print(f"  IVF index: {time.perf_counter() - t:.1f} s to build, {ann.n_cells(n)} cells,"
              f" nprobe {rec.nprobe} (calibrated recall@10 {rec.recall:.3f})"
              + ("" if ann.worthwhile(rec) else ": too many cells to probe, searches stay exact"))
    queries = members(rng, centres, n_queries)
    k = 10

    def project(q):
        hits, _ = search(store, "bench", "video", q, k, ann_min_rows=mem.ann_min_rows)
        return [h.clip.key for h in hits]

    def project_exact(q):
        hits, _ = search(store, "bench", "video", q, k, ann_min_rows=1 << 62)
        return [h.clip.key for h in hits]

    rows = []
    truth_keys = None
    if x is not None:
        keys = np.concatenate([np.asarray(store.load(s)[1]) for s in store.shards("bench", "video")])
        # shards are per day and sorted by key, as build() appended them: keys line up with x

        def numpy_bf(q):
            s = x @ q
            top = np.argpartition(-s, k)[:k]
            return keys[top[np.argsort(-s[top])]].tolist()

        flat = faiss.IndexFlatIP(DIM)
        flat.add(x)

        def faiss_flat(q):
            _, i = flat.search(q[None], k)
            return keys[i[0]].tolist()

        project(queries[0])  # warm the page cache and the index mapping
        t_np, truth = timed(numpy_bf, queries)
        truth_keys = truth
        rows.append(("numpy brute force", t_np, truth))
        rows.append(("faiss flat", *timed(faiss_flat, queries)))
        del flat
    rows.append(("project exact (mmap)", *timed(project_exact, queries)))
    if truth_keys is None:
        truth_keys = rows[-1][2]
    ivf = rec is not None and ann.worthwhile(rec) and n > mem.ann_min_rows
    rows.append((f"project search ({'ivf' if ivf else 'exact'})",
                 *timed(project, queries)))
    base = statistics.median(rows[0][1])
    print(f"  {'method':<24} {'median ms':>10} {'p99 ms':>8} {'vs first':>9} {'recall@10':>10}")
    for name, times, got in rows:
        recall = np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth_keys)])
        med = statistics.median(times)
        print(f"  {name:<24} {med:>10.2f} {p99(times):>8.2f} {base / med:>8.1f}x {recall:>10.3f}")
    store.close()


def bench_commit(n_clips: int, workdir: Path) -> None:
    from wm.base.queue import Queue
    from wm.demo.synth import make_day
    from wm.learn.encoders import Encoders
    from wm.learn.models import ModelConfig, build_models
    from wm.learn.train import pick_device
    from wm.memory.commit import commit_queued

    settings = config.load(None)
    paths = Paths(workdir / "commit")
    print(f"== commit throughput: {n_clips} synthetic clips, real encoders at the default size")
    clips = make_day(settings, paths, "2025-01-15", n_clips=n_clips, n_scenes=4, seed=0)
    q = Queue(paths.memory_db)
    for c in clips:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(paths.data)))
    q.close()
    device = pick_device(settings.learn.device)
    enc = Encoders(build_models(ModelConfig.from_settings(settings), 0), "bench", device)
    t = time.perf_counter()
    r = commit_queued(settings, paths, enc, lambda: False)
    s = time.perf_counter() - t
    print(f"  committed {r.committed} clips in {s:.1f} s: {r.committed / s:.1f} clips/s on {device}"
          f" (a day of {PER_DAY:,} clips: {PER_DAY / (r.committed / s) / 3600:.1f} h)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--commit-clips", type=int, default=64, help="0 to skip")
    ap.add_argument("--spread", type=float, default=SPREAD,
                    help="cluster spread (1.0: cosine ~0.7 to the centre, harder for IVF)")
    ap.add_argument("--centres", type=int, default=CENTRES,
                    help="cluster centres (many more than IVF cells: harder)")
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    a = ap.parse_args()
    set_data(a.spread, a.centres)
    settings = config.load(None)
    print(f"memory.ann_min_rows={settings.memory.ann_min_rows:,}"
          f" memory.ann_nprobe={settings.memory.ann_nprobe} (floor; calibrated per index);"
          f" {CENTRES:,} clusters, spread {SPREAD}")
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        for n in a.sizes:
            bench_size(n, a.queries, settings, Path(tmp))
        if a.commit_clips:
            bench_commit(a.commit_clips, Path(tmp))


if __name__ == "__main__":
    main()
