"""The approximate index: one faiss IVF-Flat per (model version, kind of vector), used
when a ranking spans more than settings.memory.ann_min_rows vectors.

Why IVF-Flat: on 2 cores it trains in seconds to a minute per million vectors (graph
indexes take many minutes and would be rebuilt for every model version), new days are
appended without retraining, and it stores exact vectors, so a probed cell is scored
exactly. Vectors are unit length, so L2 distance ranks like cosine (and k-means under L2
partitions them better than under inner product). Ids are clip keys, which order by local
day: a date filter is one IDSelectorRange.

How many cells to probe is measured, not guessed: at every build the index is searched
with stored vectors as queries and nprobe doubles (from memory.ann_nprobe) until
recall@10 against exact search reaches TARGET_RECALL. If that takes more than a quarter
of the cells, the data has no structure IVF can use and searches stay exact."""
from __future__ import annotations

import time
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

_log = log.get("wm.memory.ann")


def _faiss():
    import faiss
    return faiss


def n_cells(rows: int) -> int:
    """About 2·sqrt(rows) cells: a probe scans ~sqrt(rows)/2 vectors per cell."""
    return int(max(16, min(65536, 2 * np.sqrt(rows))))


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


def ann_search(index, q: np.ndarray, k: int, key_range: tuple[int, int] | None,
               nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys and cosine scores of the approximate top-k (fewer where the range is thin)."""
    faiss = _faiss()
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    if key_range is not None:
        sel = faiss.IDSelectorRange(int(key_range[0]), int(key_range[1]))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    d, ids = index.search(np.ascontiguousarray(q.reshape(1, -1), np.float32), k, params=params)
    ok = ids[0] >= 0
    return ids[0][ok], 1.0 - d[0][ok] / 2.0


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
        _, got = index.search(queries, 11, params=params)
        # The query is itself stored: leave its own hit out of both lists.
        recall = float(np.mean([len((set(g) - {t[0]}) & set(t[1:])) / 10
                                for g, t in zip(got, truth)]))
        if recall >= TARGET_RECALL or nprobe >= index.nlist:
            return nprobe, recall
        nprobe = min(nprobe * 2, index.nlist)


def _save(index, folder: Path, kind: str) -> Path:
    faiss = _faiss()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{kind}-{time.time_ns():x}.ivf"
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


def sync_index(store: Store, version: str, kind: str, min_rows: int, nprobe_floor: int,
               seed: int = 0) -> IndexRecord | None:
    """Bring (version, kind)'s index up to date with its shards: build it once the kind
    holds more than `min_rows` vectors, retrain it when it has grown RETRAIN_GROWTH times,
    otherwise append new shards and drop rows of re-embedded clips. Call under
    store.writer()."""
    faiss = _faiss()
    shards = store.shards(version, kind)
    rows = sum(s.rows for s in shards)
    rec = store.index(version, kind)
    if rows <= min_rows and rec is None:
        return None
    if rec is not None and rows <= RETRAIN_GROWTH * rec.trained_rows and all(
            s.indexed and not s.stale for s in shards):
        return rec
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    if rec is None or rows > RETRAIN_GROWTH * rec.trained_rows:
        dim = shards[0].dim
        nlist = n_cells(rows)
        sample = []
        for x, _ in _live_rows(store, shards):
            take = min(len(x), max(1, int(round(POINTS_PER_CELL * nlist * len(x) / rows))))
            sample.append(x[rng.choice(len(x), take, replace=False)])
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist, faiss.METRIC_L2)
        index.cp.niter = 20
        index.train(np.concatenate(sample))
        fresh, trained = shards, rows
    else:
        index = open_index(store, rec, mmap=False)
        stale = [s for s in shards if s.indexed and s.stale]
        for s in stale:
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
