"""The approximate index: one faiss IVF with 8-bit codes (IVF-SQ8) per (model version,
kind of vector), used when a ranking spans more than settings.memory.ann_min_rows vectors.
It only proposes a short list; the short list is re-ranked by exact cosine against the
float32 rows of the memory-mapped day shards, so every score a search returns is exact.

Why IVF-SQ8: a quarter of the float32 vectors' size (10M x 256-d: 2.6 GB instead of 10 GB,
so a year's index is built, appended to and rewritten within a few GB of RAM), scored by
faiss's SIMD loops, and trained in seconds (k-means on a sample plus per-dimension ranges).
Measured at 1M beside it (bench/ann_codes.py, BENCHMARKS.md): PQ with 32 bytes a vector
lost a fifth of the true top-10 from a 100-long short list on clustered data, PQ64 trained
3.5x longer for recall 0.978; 4-bit codes matched SQ8 there but are untried at 10M; graph
indexes take many minutes per million on 2 cores and would be rebuilt per model version. Vectors are unit length, so L2 distance ranks like cosine (and
k-means under L2 partitions them better than under inner product). Ids are clip keys, which
order by local day: a date filter is one IDSelectorRange, and a key names its day's shards.

How many cells to probe is measured, not guessed: at every build the index is searched
with stored vectors as queries (short list re-ranked, as a search does) and nprobe doubles
(from memory.ann_nprobe) until recall@10 against exact search reaches TARGET_RECALL. If
that takes more than a quarter of the cells, the data has no structure IVF can use and
searches stay exact."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import date as Date
from pathlib import Path

import numpy as np

from wm.base import log
from wm.base.atomic import commit_file, partial_name
from wm.memory.retired import reap_retired, retire
from wm.memory.shards import IndexRecord, Shard, version_folder
from wm.memory.store import Store

# Above the 0.95 recall@10 searches are held to: it is measured with stored vectors as
# queries, which fresh queries need not resemble.
TARGET_RECALL = 0.97
RETRAIN_GROWTH = 4       # retrain the coarse cells when the index has grown this much
CALIBRATION_QUERIES = 64
POINTS_PER_CELL = 48     # k-means training sample per cell (faiss warns below 39)
MAX_TRAIN = 256_000      # k-means sample cap: its cost grows with sample x cells
SHORT_LIST = 100         # candidates re-ranked exactly per query (at least 4x the k asked)
FORMAT = "ivfsq8"        # index file suffix: an index of another format (IVF-Flat) is rebuilt

_log = log.get("wm.memory.ann")


def _faiss():
    import faiss
    return faiss


def n_cells(rows: int) -> int:
    """About sqrt(rows) cells of ~sqrt(rows) codes: an 8-bit cell is cheap to scan, and
    fewer cells make k-means and assigning every vector (most of a build) cheaper."""
    return int(max(16, min(65536, np.sqrt(rows))))


def short_list(k: int) -> int:
    """How many candidates the index proposes for an exact top-k."""
    return max(SHORT_LIST, 4 * k)


def worthwhile(rec: IndexRecord) -> bool:
    """An IVF that must probe more than a quarter of its cells to reach its recall (data
    without cluster structure) is slower than the exact scan it approximates."""
    return rec.nprobe * 4 <= n_cells(rec.trained_rows)


def _live_rows(store: Store, shards: list[Shard]):
    """(vectors, keys) of each shard's live rows, one shard at a time."""
    for s in shards:
        x, k = store.load(s)
        m = store.live_mask(s, k)
        yield (np.asarray(x), np.asarray(k)) if m is None else (np.asarray(x)[m], np.asarray(k)[m])


def exact_topk_many(store: Store, shards: list[Shard], queries: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k keys and scores for a batch of queries over the live rows of shards."""
    nq = len(queries)
    best_s = np.full((nq, 0), -np.inf, np.float32)
    best_k = np.zeros((nq, 0), np.int64)
    for x, keys in _live_rows(store, shards):
        if not len(keys):
            continue
        s = queries @ x.T
        s = np.concatenate([best_s, s], 1)
        kk = np.concatenate([best_k, np.broadcast_to(keys, (nq, len(keys)))], 1)
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.take_along_axis(s, top, 1)
        best_k = np.take_along_axis(kk, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_k, order, 1), np.take_along_axis(best_s, order, 1)


def open_index(store: Store, rec: IndexRecord, mmap: bool = True):
    """The index, its inverted lists memory-mapped (kept open on the Store) or read whole
    (to be modified)."""
    faiss = _faiss()
    path = str(store.paths.embeddings / rec.file)
    if not mmap:
        return faiss.read_index(path)
    if rec.file not in store.indexes:
        store.indexes[rec.file] = faiss.read_index(path, faiss.IO_FLAG_MMAP)
    return store.indexes[rec.file]


def candidates(index, q: np.ndarray, n: int, key_range: tuple[int, int] | None,
               nprobe: int) -> np.ndarray:
    """Keys of the index's n nearest by its 8-bit codes (fewer where the range is thin)."""
    faiss = _faiss()
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    if key_range is not None:
        sel = faiss.IDSelectorRange(int(key_range[0]), int(key_range[1]))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    _, ids = index.search(np.ascontiguousarray(q.reshape(1, -1), np.float32), n, params=params)
    return ids[0][ids[0] >= 0]


def vectors_of(store: Store, shards: list[Shard], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored float32 rows of `keys` and which were found. A key names its day, so only
    that day's shards are searched (binary search in their sorted keys); a key in two
    shards of the day (a clip re-embedded back to this version) takes the newer row."""
    keys = np.asarray(keys, np.int64)
    dim = shards[0].dim if shards else 0
    out, found = np.zeros((len(keys), dim), np.float32), np.zeros(len(keys), bool)
    by_day: dict[str, list[Shard]] = defaultdict(list)
    for s in sorted(shards, key=lambda s: s.id):
        by_day[s.date].append(s)
    days = keys >> 32
    for day in np.unique(days):
        sel = np.flatnonzero(days == day)
        for s in by_day.get(Date.fromordinal(int(day)).isoformat(), ()):
            x, kk = store.load(s)
            if not len(kk):
                continue
            at = np.minimum(np.searchsorted(kk, keys[sel]), len(kk) - 1)
            hit = np.asarray(kk[at]) == keys[sel]
            # Fancy indexing a memory map reads only these rows: the short list's pages.
            out[sel[hit]] = x[at[hit]]
            found[sel[hit]] = True
    return out, found


def rerank(store: Store, shards: list[Shard], q: np.ndarray, cand: np.ndarray,
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (keys, cosine scores) of the candidates, scored against their rows in
    `shards` (the index's codes only chose them)."""
    cand = np.unique(cand[cand >= 0])
    vecs, found = vectors_of(store, shards, cand)
    cand, vecs = cand[found], vecs[found]
    scores = np.einsum("ij,j->i", vecs, np.asarray(q, np.float32))
    top = np.argsort(-scores, kind="stable")[:k]
    return cand[top], scores[top]


def _calibrate(index, store: Store, shards: list[Shard], floor: int,
               rng: np.random.Generator) -> tuple[int, float]:
    """Smallest nprobe (doubling from `floor`) whose recall@10 reaches TARGET_RECALL."""
    faiss = _faiss()
    sizes = np.array([s.rows for s in shards], float)
    picks = rng.choice(len(shards), CALIBRATION_QUERIES, p=sizes / sizes.sum())
    qs = []
    for i in picks:
        x, _ = store.load(shards[i])
        qs.append(np.asarray(x[rng.integers(len(x))]))
    queries = np.stack(qs).astype(np.float32)
    truth, _ = exact_topk_many(store, shards, queries, 11)
    nprobe, recall = min(floor, index.nlist), 0.0
    while True:
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        _, cand = index.search(queries, short_list(11), params=params)
        got = [rerank(store, shards, q, c, 11)[0] for q, c in zip(queries, cand)]
        # The query is itself stored: leave its own hit out of both lists.
        recall = float(np.mean([len((set(g) - {t[0]}) & set(t[1:])) / 10
                                for g, t in zip(got, truth)]))
        if recall >= TARGET_RECALL or nprobe >= index.nlist:
            return nprobe, recall
        nprobe = min(nprobe * 2, index.nlist)


def _fill(index, store: Store, shards: list[Shard]) -> None:
    """Add the live rows of `shards` to a freshly trained, empty index with each cell's list
    allocated once at its final size. (add_with_ids appends, and each list's buffer grows
    by doubling: at 10M rows the build held 4.2 GB for 2.6 GB of codes.) Every row is
    assigned to its cell first (4 bytes a row), then encoded and written in place."""
    faiss = _faiss()
    cells = []
    for x, _ in _live_rows(store, shards):
        cells.append(index.quantizer.assign(np.ascontiguousarray(x), 1)[:, 0].astype(np.int32)
                     if len(x) else np.zeros(0, np.int32))
    counts = np.bincount(np.concatenate(cells), minlength=index.nlist) if cells else []
    lists = faiss.downcast_InvertedLists(index.invlists)
    for c in np.flatnonzero(counts):
        lists.resize(int(c), int(counts[c]))   # from empty: capacity is exactly this
    filled = np.zeros(index.nlist, np.int64)
    for (x, keys), cell in zip(_live_rows(store, shards), cells):
        if not len(x):
            continue
        x, cell64 = np.ascontiguousarray(x, np.float32), cell.astype(np.int64)
        codes = np.empty((len(x), index.code_size), np.uint8)
        index.encode_vectors(len(x), faiss.swig_ptr(x), faiss.swig_ptr(cell64),
                             faiss.swig_ptr(codes))
        order = np.argsort(cell, kind="stable")
        keys = np.ascontiguousarray(np.asarray(keys)[order], np.int64)
        codes, cell = codes[order], cell[order]
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(cell)]):
            c = int(cell[a])
            lists.update_entries(c, int(filled[c]), int(b - a), faiss.swig_ptr(keys[a:b]),
                                 faiss.swig_ptr(codes[a:b]))
            filled[c] += b - a
    index.ntotal = int(filled.sum())


def _save(index, folder: Path, kind: str) -> Path:
    faiss = _faiss()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{kind}-{time.time_ns():x}.{FORMAT}"
    tmp = partial_name(final)
    faiss.write_index(index, str(tmp))
    commit_file(tmp, final)
    return final


def _record(store: Store, rec: IndexRecord, shard_ids: list[int], replaces: str | None) -> None:
    """The new index's row, and the file it replaces retired, in one transaction."""
    with store.transaction() as c:
        if replaces is not None and replaces != rec.file:
            retire(c, [replaces])
        c.execute("INSERT OR REPLACE INTO memory_indexes VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (rec.version, rec.kind, rec.file, rec.rows, rec.trained_rows, rec.nprobe,
                   rec.recall))
        c.executemany("UPDATE memory_shards SET indexed = 1 WHERE id = ?",
                      [(i,) for i in shard_ids])


def _trained(store: Store, shards: list[Shard], rows: int, rng: np.random.Generator):
    """A new index: k-means cells and 8-bit ranges trained on a sample, then every live row."""
    faiss = _faiss()
    dim, nlist = shards[0].dim, n_cells(rows)
    want = min(POINTS_PER_CELL * nlist, MAX_TRAIN)
    sample = []
    for x, _ in _live_rows(store, shards):
        take = min(len(x), max(1, int(round(want * len(x) / rows))))
        sample.append(x[np.sort(rng.choice(len(x), take, replace=False))])
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(dim), dim, nlist,
                                          faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
    index.cp.niter = 20
    index.train(np.concatenate(sample))
    _fill(index, store, shards)
    return index


def sync_index(store: Store, version: str, kind: str, min_rows: int, nprobe_floor: int,
               seed: int = 0) -> IndexRecord | None:
    """Bring (version, kind)'s index up to date with its shards: build it once the kind
    holds more than `min_rows` vectors, retrain it when it has grown RETRAIN_GROWTH times
    or is of an older format, otherwise append new shards and drop rows of re-embedded
    clips. Call under store.writer()."""
    faiss = _faiss()
    shards = store.shards(version, kind)
    rows = sum(s.rows for s in shards)
    rec = store.index(version, kind)
    if rows <= min_rows and rec is None:
        return None
    retrain = (rec is None or rows > RETRAIN_GROWTH * rec.trained_rows
               or not rec.file.endswith("." + FORMAT))
    if not retrain and all(s.indexed and not s.stale for s in shards):
        return rec
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    if retrain:
        index, fresh, trained = _trained(store, shards, rows, rng), shards, rows
    else:
        # Appending grows the touched cells' buffers (see _fill); a night adds one day.
        index = open_index(store, rec, mmap=False)
        for s in shards:
            if s.indexed and s.stale:
                x, k = store.load(s)
                gone = np.asarray(k)[~store.live_mask(s, k)]
                if len(gone):
                    index.remove_ids(faiss.IDSelectorBatch(gone))
        fresh, trained = [s for s in shards if not s.indexed], rec.trained_rows
        for x, keys in _live_rows(store, fresh):
            if len(keys):
                index.add_with_ids(np.ascontiguousarray(x), np.ascontiguousarray(keys))
    nprobe, recall = _calibrate(index, store, shards, nprobe_floor, rng)
    path = _save(index, store.paths.embeddings / version_folder(version) / "index", kind)
    new = IndexRecord(version, kind, str(path.relative_to(store.paths.embeddings)),
                      int(index.ntotal), trained, nprobe, recall)
    # The old file is retired, not deleted: a query may be about to open it.
    _record(store, new, [s.id for s in fresh], replaces=rec.file if rec else None)
    reap_retired(store)
    _log.info("ann_index", version=version, kind=kind, rows=new.rows, cells=index.nlist,
              nprobe=nprobe, recall=round(recall, 3), seconds=round(time.monotonic() - t0, 1))
    return new
