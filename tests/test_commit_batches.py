"""The commit's speed-ups do not change what goes into the memory: every queued clip is
committed, and its vectors are the same whatever the batch size, the number of torch
threads (work items on several threads, wm.learn.encoders.in_workers), and whether the
stills were shrunk on the reading thread or inside the model's pass. Real files, real
SQLite, real (small, random-weight) encoders."""
import shutil

import cv2
import numpy as np
import pytest
import torch
from memory_support import (
    SMALL_MODELS,
    check_consistent,
    enqueue,
    make_memory_day,
    settings_for_tests,
)

from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.base.queue import QUEUED, Queue
from wm.learn.encoders import Encoders
from wm.learn.models import ModelConfig, build_models
from wm.memory.clips import MAX_STILLS, STILL
from wm.memory.commit import commit_queued
from wm.memory.shards import clip_keys_of
from wm.memory.store import Store

DATE = "2025-01-15"
KINDS = ("video", "audio", "shared_video", "shared_audio", "shared")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def committed(paths: Paths) -> dict[tuple[str, str, int], np.ndarray]:
    """(kind, clip id, place of the still or 0) -> the stored (normalised) vector."""
    out = {}
    with Store(paths) as store:
        ids = dict(store.conn.execute("SELECT key, clip_id FROM memory_clips"))
        for s in store.all_shards():
            vec, keys = store.load(s)
            for v, k, c in zip(vec, keys, clip_keys_of(keys, s.kind)):
                place = int(k) % MAX_STILLS if s.kind == STILL else 0
                out[(s.kind, ids[int(c)], place)] = np.array(v)
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_same_vectors_whatever_the_batch_size_and_threads(tmp_path, threads):
    settings, paths = settings_for_tests(**SMALL_MODELS), Paths(tmp_path / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=11, seed=2)
    enc = Encoders(build_models(ModelConfig.from_settings(settings), 0), "v1",
                   torch.device("cpu"))

    threads(1)
    r = commit_queued(settings, paths, enc, lambda: False, batch=3)
    assert (r.committed, r.remaining) == (11, 0)
    assert check_consistent(paths)["clips"] == 11
    q = Queue(paths.memory_db)
    assert q.count(QUEUED) == 0
    q.close()
    small_batches = committed(paths)
    assert len(small_batches) == 11 * len(KINDS) + sum(len(c.manifest.frames) for c in clips)

    # The same day again from an empty memory: one batch, two worker threads.
    shutil.rmtree(paths.root / "memory")
    enqueue(paths, clips)
    threads(2)
    r = commit_queued(settings, paths, enc, lambda: False, batch=32)
    assert (r.committed, r.remaining) == (11, 0)
    one_batch = committed(paths)
    assert one_batch.keys() == small_batches.keys()
    for key, v in small_batches.items():
        np.testing.assert_allclose(one_batch[key], v, atol=1e-5, err_msg=str(key))

    # ... and the same as the encoders give for full-size stills in one pass: shrinking
    # the stills on the reading thread changes nothing.
    threads(1)
    stills = [[cv2.imread(str(paths.data / f)) for f in c.manifest.frames] for c in clips]
    assert stills[0][0].shape[:2] != (64, 64)
    audio = [read_wav(paths.data / c.manifest.audio)[0] for c in clips]
    direct = enc.embed_clips(stills, audio)
    for kind in KINDS:
        got = np.stack([one_batch[(kind, c.manifest.id, 0)] for c in clips])
        np.testing.assert_allclose(got, unit(direct.of(kind)), atol=1e-5, err_msg=kind)
    got = np.stack([one_batch[(STILL, c.manifest.id, i)] for c in clips
                    for i in range(len(c.manifest.frames))])
    np.testing.assert_allclose(got, unit(direct.stills.vectors), atol=1e-5, err_msg=STILL)


def test_prepared_stills_embed_as_the_originals():
    settings = settings_for_tests(**SMALL_MODELS)
    enc = Encoders(build_models(ModelConfig.from_settings(settings), 0), "v1",
                   torch.device("cpu"))
    rng = np.random.default_rng(0)
    stills = [cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), np.uint8), (15, 15), 5)
              for _ in range(5)]
    prepared = enc.prepare_stills(stills)
    assert [p.shape for p in prepared] == [(64, 64, 3)] * 5
    np.testing.assert_array_equal(enc._video(prepared), enc._video(stills))
