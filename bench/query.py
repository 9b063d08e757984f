"""Query latency, recall and RAM of the memory's search against exact search (NumPy brute
force and faiss flat in RAM up to 2M vectors, the project's exact scan of the shards above),
all measured in the same run on the same vectors; index build time and RAM; and commit
throughput.

    .venv/bin/python bench/query.py                        # 100k and 1M vectors
    .venv/bin/python bench/query.py --sizes 100000         # quicker
    .venv/bin/python bench/query.py --sizes 10000000 --commit-clips 0 --workdir /var/tmp/wmq
        # 10 GB of shards + 2.6 GB index on disk; with --workdir the memory is kept and
        # reused by the next run (building it is most of the time), the index rebuilt
    # commit throughput only:
    .venv/bin/python bench/query.py --sizes --commit-clips 64
    .venv/bin/python bench/query.py --sizes 300000 --centres 100000 --spread 1.0   # hard data

Memories are built through the project's store (28,800 clips a day, like a real day's
clips) from generated clustered 256-d unit vectors (not real embeddings): by default 2,000
cluster centres, members at cosine ~0.86 from theirs; queries are fresh members. "project"
is wm.memory.search.search (exact below memory.ann_min_rows, the version's IVF-SQ8 index
with exact re-ranking above, including the SQLite lookup of the clips it returns), run in
a process of its own (spawned, as `wm query` would be) that reports its RAM: peak and
current resident set, split into anonymous memory (the process's own) and file pages
(memory-mapped index and shard pages: page cache the kernel can drop). The index is built
in a process of its own too, reporting its peak anonymous memory (sampled every 0.2 s).
"numpy" is one float32 matrix-vector product over the vectors held in RAM plus
argpartition; "faiss flat" is IndexFlatIP over the same vectors. Recall@10 is against
exact search (above 2M: one batched exact pass over the shards for all queries). Commit
throughput runs commit_queued on synthetic clips with the real encoders at the default
model size (random weights: speed does not depend on them)."""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wm.base import config  # noqa: E402
from wm.base.paths import Paths  # noqa: E402
from wm.learn.embeddings import ClipEmbeddings  # noqa: E402 (no torch: children stay small)
from wm.memory import ann  # noqa: E402
from wm.memory.clips import Clip  # noqa: E402
from wm.memory.search import search  # noqa: E402
from wm.memory.store import Store  # noqa: E402

DIM = 256
PER_DAY = 28_800
CENTRES = 2_000
SPREAD = 0.6   # member = centre + SPREAD * N(0, I/d): cosine to the centre ~0.86
KEEP_IN_RAM = 2_000_000   # above this the in-RAM baselines are skipped


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def day_of_clips(day_i: int, m: int) -> tuple[str, list[Clip]]:
    """The day `day_i` days after 2024-01-01 and m clip records 3 s apart from its start
    (no media: the benches add only their vectors)."""
    day = (date(2024, 1, 1) + timedelta(days=day_i)).isoformat()
    base = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    clips = []
    for i in range(m):
        t = base + timedelta(seconds=3 * i)
        cid = t.strftime("%Y%m%dT%H%M%SZ")
        clips.append(Clip(cid, day, t.isoformat(), 3.0, f"clips/{day}/{cid}.json", None, None, ()))
    return day, clips


def members(rng, centres, n) -> np.ndarray:
    c = centres[rng.integers(len(centres), size=n)]
    return unit(c + SPREAD * rng.normal(size=(n, DIM)).astype(np.float32) / np.sqrt(DIM))


def set_data(spread: float, centres: int) -> None:
    global SPREAD, CENTRES
    SPREAD, CENTRES = spread, centres


def build(paths: Paths, n: int, rng, centres) -> tuple[np.ndarray | None, float]:
    """A memory of n clips under version 'bench' (vectors of kind 'video'); returns the
    vectors in RAM (None above KEEP_IN_RAM, to spare memory) and seconds per 1k clips."""
    keep = n <= KEEP_IN_RAM
    held = []
    t0 = time.perf_counter()
    with Store(paths) as store:
        for day_i, start in enumerate(range(0, n, PER_DAY)):
            m = min(PER_DAY, n - start)
            day, clips = day_of_clips(day_i, m)
            x = members(rng, centres, m)
            nan = np.full((m, 1), np.nan, np.float32)
            store.add("bench", clips, ClipEmbeddings(x, nan, nan, nan, shared=nan))
            if keep:
                held.append(x)
            print(f"\r  building: {start + m:,} / {n:,} clips", end="", flush=True)
    print()
    seconds = time.perf_counter() - t0
    return (np.concatenate(held) if keep else None), seconds / n * 1000


def timed(fn, queries) -> tuple[list[float], list]:
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append((time.perf_counter() - t) * 1000)
    return times, out


def p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99))


# -- RAM of a process, from /proc (Linux) -----------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakAnon:
    """Peak anonymous resident memory, sampled: the kernel tracks only the peak of the
    whole resident set (VmHWM), which counts memory-mapped file pages too."""

    def __init__(self, every: float = 0.2):
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._t.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kb("RssAnon"))
            self._stop.wait(every)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return max(self.peak, _status_kb("RssAnon"))


@dataclass
class Ram:
    peak_anon_mb: float     # the process's own memory at its peak
    peak_rss_mb: float      # VmHWM: peak resident set including mapped file pages
    anon_mb: float          # at the end
    file_mb: float          # mapped file pages resident at the end (page cache)

    def __str__(self) -> str:
        return (f"peak anonymous {self.peak_anon_mb:,.0f} MB, peak RSS {self.peak_rss_mb:,.0f} MB"
                f" (at the end: anonymous {self.anon_mb:,.0f} MB + mapped file pages"
                f" {self.file_mb:,.0f} MB)")


def ram(peak_anon_kb: int) -> Ram:
    return Ram(peak_anon_kb / 1024, _status_kb("VmHWM") / 1024,
               _status_kb("RssAnon") / 1024, _status_kb("RssFile") / 1024)


# -- the phases that run in processes of their own ----------------------------------------
@dataclass
class Built:
    seconds: float
    rec: object
    ram: Ram
    file_mb: float


def build_index(root: str, min_rows: int, nprobe: int) -> Built:
    """Build the index from scratch, as the night does, in this (fresh) process."""
    sampler = PeakAnon()
    paths = Paths(Path(root))
    with Store(paths) as store:
        old = store.index("bench", "video")
        if old is not None:   # a kept memory: forget its index so it is built afresh
            with store.transaction() as c:
                c.execute("DELETE FROM memory_indexes")
                c.execute("UPDATE memory_shards SET indexed = 0")
            (paths.embeddings / old.file).unlink(missing_ok=True)
        t = time.perf_counter()
        with store.writer():
            rec = ann.sync_index(store, "bench", "video", min_rows, nprobe)
        seconds = time.perf_counter() - t
        size = (paths.embeddings / rec.file).stat().st_size / 1e6 if rec else 0.0
    return Built(seconds, rec, ram(sampler.stop()), size)


@dataclass
class Answered:
    first_ms: float
    times: list[float]       # first pass over the queries: pages as the machine had them
    cpu: list[float]         # CPU time of each query of the first pass (ms)
    warm: list[float]        # the same queries again: the pages they touch are cached
    keys: list[list[int]]
    method: str
    ram: Ram


def answer(root: str, queries: np.ndarray, min_rows: int, k: int) -> Answered:
    """Search every query through the project, in this (fresh) process."""
    sampler = PeakAnon()
    with Store(Paths(Path(root))) as store:
        methods = []

        def project(q):
            hits, how = search(store, "bench", "video", q, k, ann_min_rows=min_rows)
            methods.append(how)
            return [h.clip.key for h in hits]

        cpu = []

        def project_cpu(q):
            c = time.process_time()
            out = project(q)
            cpu.append((time.process_time() - c) * 1000)
            return out

        t = time.perf_counter()
        project(queries[0])   # opens the index and maps it: a cold query
        first = (time.perf_counter() - t) * 1000
        times, keys = timed(project_cpu, queries)
        warm, _ = timed(project, queries)
    return Answered(first, times, cpu, warm, keys, methods[-1], ram(sampler.stop()))


def in_child(fn, *args):
    """fn(*args) in a freshly spawned Python process (its RAM is its own)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


# -- one size ---------------------------------------------------------------------------
def memory_at(n: int, workdir: Path, rng, centres) -> tuple[Paths, np.ndarray | None]:
    """The memory of n clips under workdir, built unless a complete one is there (vectors
    in RAM only when just built, and only up to KEEP_IN_RAM)."""
    paths = Paths(workdir / f"mem-{n}-{CENTRES}-{SPREAD}")
    done = paths.root / "bench-complete"
    if done.exists():
        print(f"  reusing the memory in {paths.root}")
        return paths, None
    x, ms_per_k = build(paths, n, rng, centres)
    print(f"  store.add: {1000 / ms_per_k:,.0f} clips/s (arrays + rows, no embedding)")
    done.touch()
    return paths, x


def bench_size(n: int, n_queries: int, settings, workdir: Path) -> None:
    import faiss

    rng = np.random.default_rng(n)
    centres = unit(rng.normal(size=(CENTRES, DIM)).astype(np.float32))
    queries = members(np.random.default_rng(n + 1), centres, n_queries)
    print(f"== {n:,} vectors x {DIM}-d float32 ({n * DIM * 4 / 1e9:.2f} GB)")
    paths, x = memory_at(n, workdir, rng, centres)
    mem, k = settings.memory, 10
    b = in_child(build_index, str(paths.root), mem.ann_min_rows, mem.ann_nprobe)
    rec = b.rec
    if rec:
        print(f"  index build: {b.seconds:.1f} s, {ann.n_cells(rec.trained_rows)} cells,"
              f" nprobe {rec.nprobe} (calibrated recall@10 {rec.recall:.3f}), file"
              f" {b.file_mb:,.0f} MB; build process RAM: {b.ram}"
              + ("" if ann.worthwhile(rec) else ": too many cells to probe, searches stay exact"))
    store = Store(paths)

    def project_exact(q):
        hits, _ = search(store, "bench", "video", q, k, ann_min_rows=1 << 62)
        return [h.clip.key for h in hits]

    rows = []
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

        t_np, truth_keys = timed(numpy_bf, queries)
        rows.append(("numpy brute force", t_np, truth_keys))
        rows.append(("faiss flat", *timed(faiss_flat, queries)))
        del flat
        rows.append(("project exact (mmap)", *timed(project_exact, queries)))
    else:
        t = time.perf_counter()
        truth, _ = ann.exact_topk_many(store, store.shards("bench", "video"), queries, k)
        truth_keys = truth.tolist()
        print(f"  ground truth: one batched exact pass over the shards,"
              f" {time.perf_counter() - t:.1f} s for {n_queries} queries")
        few = queries[:10]   # a single-query exact scan of n vectors takes seconds
        rows.append(("project exact (mmap), 10 q", *timed(project_exact, few)))
    store.close()
    a = in_child(answer, str(paths.root), queries, mem.ann_min_rows, k)
    rows.append((f"project search: {a.method.split('(')[0]}", a.times, a.keys))
    base = statistics.median(rows[0][1])
    print(f"  {'method':<28} {'median ms':>10} {'p99 ms':>8} {'vs first':>9} {'recall@10':>10}")
    for name, times, got in rows:
        recall = np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth_keys)])
        med = statistics.median(times)
        print(f"  {name:<28} {med:>10.2f} {p99(times):>8.2f} {base / med:>8.1f}x {recall:>10.3f}")
    print(f"  project search: {a.method}; first (cold) query {a.first_ms:.0f} ms; CPU time"
          f" per query median {statistics.median(a.cpu):.2f} ms; the same queries again"
          f" (cached pages) median {statistics.median(a.warm):.2f} ms, p99 {p99(a.warm):.2f}")
    print(f"  query process RAM: {a.ram}")


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
    ap.add_argument("--workdir", type=Path,
                    help="keep the memories here and reuse them (default: a temporary folder)")
    a = ap.parse_args()
    set_data(a.spread, a.centres)
    settings = config.load(None)
    print(f"memory.ann_min_rows={settings.memory.ann_min_rows:,}"
          f" memory.ann_nprobe={settings.memory.ann_nprobe} (floor; calibrated per index);"
          f" {CENTRES:,} clusters, spread {SPREAD}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            bench_size(n, a.queries, settings, a.workdir or Path(tmp))
        if a.commit_clips:
            bench_commit(a.commit_clips, Path(tmp))


if __name__ == "__main__":
    main()
