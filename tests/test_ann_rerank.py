"""The IVF index's 8-bit codes only choose a short list: what a search returns is ranked and
scored by exact cosine against the stored float32 rows. And the index follows the shards:
left alone when nothing changed, rebuilt when it is of an older format or the memory has
grown RETRAIN_GROWTH times."""
from datetime import datetime, timedelta, timezone

import faiss
import numpy as np
import pytest

from wm.base.clipids import clip_id
from wm.base.paths import Paths
from wm.learn.embeddings import ClipEmbeddings
from wm.memory import ann
from wm.memory.clips import Clip
from wm.memory.search import search
from wm.memory.store import Store

DIM = 32
DAYS = ["2025-02-03", "2025-02-04", "2025-02-05", "2025-02-06"]


def clustered(rng, n, centres, spread=0.45):
    c = centres[rng.integers(len(centres), size=n)]
    x = c + rng.normal(0, spread / np.sqrt(DIM), (n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def add_day(store: Store, day: str, vecs: np.ndarray) -> None:
    t0 = datetime.fromisoformat(day).replace(hour=8, tzinfo=timezone.utc)
    starts = [t0 + timedelta(seconds=3 * i) for i in range(len(vecs))]
    clips = [Clip(clip_id(t), day, t.isoformat(), 3.0, f"clips/{clip_id(t)}.json", None, None, ())
             for t in starts]
    nan = np.full((len(vecs), DIM), np.nan, np.float32)
    store.add("v1", clips, ClipEmbeddings(nan, nan, nan, nan, shared=vecs))


def sync(store: Store):
    with store.writer():
        return ann.sync_index(store, "v1", "shared", min_rows=3000, nprobe_floor=4)


@pytest.fixture()
def memory(tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    store = Store(Paths(tmp_path / "home"))
    data = {}
    for d in DAYS[:2]:
        data[d] = clustered(rng, 2500, centres)
        add_day(store, d, data[d])
    yield store, data, centres, rng
    store.close()


def stored(store: Store, clip) -> np.ndarray:
    return store.vector(clip, "v1", "shared")


def test_top_10_and_scores_are_exact(memory):
    store, data, centres, rng = memory
    rec = sync(store)
    assert rec is not None and rec.file.endswith(".ivfsq8")
    recall = []
    for q in clustered(rng, 30, centres):
        exact, m1 = search(store, "v1", "shared", q, 10, ann_min_rows=10**9)
        approx, m2 = search(store, "v1", "shared", q, 10, ann_min_rows=3000)
        assert m1 == "exact" and m2.startswith("ivf") and "re-ranked" in m2
        recall.append(len({h.clip.key for h in exact} & {h.clip.key for h in approx}) / 10)
        qn = q / np.linalg.norm(q)
        for h in approx:
            # The 8-bit codes' distances are off by ~1e-3: only a re-ranked score is this close.
            assert h.score == pytest.approx(float(stored(store, h.clip) @ qn), abs=1e-6)
        assert [h.score for h in approx] == sorted((h.score for h in approx), reverse=True)
    assert np.mean(recall) >= 0.95


def test_the_codes_alone_would_not_give_exact_scores(memory):
    """The premise of the test above: the index's own distances are not the cosines."""
    store, data, centres, rng = memory
    rec = sync(store)
    index = ann.open_index(store, rec)
    q = clustered(rng, 1, centres)
    d, ids = index.search(q, 10, params=faiss.SearchParametersIVF(nprobe=rec.nprobe))
    gaps = []
    for dist, key in zip(d[0], ids[0]):
        clip = store.clips_by_key([key])[int(key)]
        gaps.append(abs((1 - dist / 2) - float(stored(store, clip) @ q[0])))
    assert max(gaps) > 1e-5


def test_index_left_alone_when_nothing_changed_and_appended_for_a_new_day(memory):
    store, data, centres, rng = memory
    rec = sync(store)
    assert sync(store) == rec                      # nothing new: the same file
    add_day(store, DAYS[2], clustered(rng, 400, centres))
    grown = sync(store)
    assert grown.file != rec.file and grown.rows == rec.rows + 400
    assert grown.trained_rows == rec.trained_rows  # appended, not retrained
    assert not (store.paths.embeddings / rec.file).exists()   # the old file was reaped


def test_index_retrained_when_the_memory_grew_4x(memory):
    store, data, centres, rng = memory
    rec = sync(store)
    for d in DAYS[2:]:
        add_day(store, d, clustered(rng, 8000, centres))
    new = sync(store)
    assert new.trained_rows == new.rows == rec.rows + 16000


def test_an_older_ivf_flat_index_is_searched_exactly_then_rebuilt(memory):
    """A memory indexed before the 8-bit index (IVF-Flat, `.ivf`): searches still return
    exact scores, and the next sync replaces it with the current format."""
    store, data, centres, rng = memory
    rec = sync(store)
    x = np.concatenate([data[d] for d in DAYS[:2]])
    keys = np.concatenate([np.asarray(store.load(s)[1]) for s in store.shards("v1", "shared")])
    flat = faiss.IndexIVFFlat(faiss.IndexFlatL2(DIM), DIM, 16, faiss.METRIC_L2)
    flat.train(x)
    flat.add_with_ids(x, keys)
    old = rec.file.replace(".ivfsq8", ".ivf")
    faiss.write_index(flat, str(store.paths.embeddings / old))
    with store.transaction() as c:
        c.execute("UPDATE memory_indexes SET file = ?, nprobe = 4", (old,))
    q = data[DAYS[1]][42]
    hits, how = search(store, "v1", "shared", q, 5, ann_min_rows=3000)
    assert how.startswith("ivf") and hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert hits[0].clip.key == keys[2500 + 42]
    new = sync(store)
    assert new.file.endswith(".ivfsq8") and new.rows == len(x)
    assert not (store.paths.embeddings / old).exists()
