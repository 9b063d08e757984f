"""A picture finds the clip that holds it first: each still keeps a vector of its own
(kind `still`), and a clip with a near-copy of the picture among its stills scores as that
still, where the clip's `video` vector (the mean of its stills, which ranks every other
clip) is pulled away by a fade or a scene cut. Real embedder (version 0's colour
statistics), real shards, real SQLite; the stills are generated."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from wm.base.clipids import clip_id
from wm.base.paths import Paths
from wm.learn.fixed import VERSION_0, FixedEncoders
from wm.memory import ann
from wm.memory.clips import MAX_STILLS, Clip, clip_key, date_key_range
from wm.memory.forget import forget
from wm.memory.maintenance import compact
from wm.memory.search import NEAR_COPY, near_copies_first, ranked, search
from wm.memory.shards import clip_keys_of, still_keys, still_places
from wm.memory.store import Store

DAY = "2025-01-15"


def test_a_still_key_files_by_day_and_names_its_clip():
    clips = np.array([clip_key("2025-01-14", 7), clip_key(DAY, 1), clip_key(DAY, 2)])
    keys = still_keys(np.repeat(clips, 3), np.tile([0, 1, 2], 3))
    assert len(set(keys.tolist())) == 9 and (np.diff(keys) > 0).all()   # unique, in clip order
    assert (clip_keys_of(keys, "still") == np.repeat(clips, 3)).all()
    assert (clip_keys_of(clips, "video") == clips).all()
    lo, hi = date_key_range(DAY, DAY)
    assert [lo <= k < hi for k in keys[::3]] == [False, True, True]
    with pytest.raises(ValueError):
        still_keys(clips[:1], np.array([MAX_STILLS]))


@pytest.mark.parametrize("count,picked", [(0, []), (3, [0, 1, 2]), (8, list(range(8))),
                                          (30, [0, 4, 8, 12, 17, 21, 25, 29])])
def test_a_clip_keeps_at_most_max_stills_spread_evenly(count, picked):
    assert still_places(count).tolist() == picked


def flat(bgr: tuple[int, int, int], noise: int = 0, seed: int = 0) -> np.ndarray:
    img = np.zeros((120, 160, 3), np.int16) + np.array(bgr, np.int16)
    if noise:
        img += np.random.default_rng(seed).integers(-noise, noise + 1, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


BLACK, DUSK, GRASS, SKY = (0, 0, 0), (25, 25, 30), (40, 160, 60), (200, 150, 90)


@pytest.fixture()
def memory(tmp_path):
    """A day of clips: 'fade' opens on black and cuts to grass; 'dusk' is dark throughout
    (its mean is nearer black than fade's); the rest are grass or sky."""
    stills = {"fade": [flat(BLACK), flat(GRASS, 8, 1), flat(GRASS, 8, 2)],
              "dusk": [flat(DUSK, 6, 3), flat(DUSK, 6, 4), flat(DUSK, 6, 5)]}
    for i in range(10):
        stills[f"grass{i}"] = [flat(GRASS, 10, 10 + 3 * i + j) for j in range(3)]
        stills[f"sky{i}"] = [flat(SKY, 10, 50 + 3 * i + j) for j in range(3)]
    names = list(stills)
    clips = day_of(DAY, len(names))
    enc = FixedEncoders(16000)
    emb = enc.embed_clips([stills[n] for n in names], [None] * len(names))
    store = Store(Paths(tmp_path / "home"))
    store.add(VERSION_0, clips, emb)
    yield store, enc, dict(zip(names, clips)), stills
    store.close()


def first(store, enc, picture, kind="still", **kw):
    q = enc.embed_image(picture).video[0]
    hits, method = search(store, VERSION_0, kind, q, 5, **kw)
    return [h.clip.clip_id for h in hits], method


def test_every_still_finds_its_clip_first_where_the_clips_mean_does_not(memory):
    store, enc, clips, stills = memory
    assert [s.rows for s in store.shards(VERSION_0, "still")] == [3 * len(clips)]
    by_mean, _ = first(store, enc, stills["fade"][0], kind="video")
    assert by_mean[0] == clips["dusk"].clip_id           # what the mean alone gives
    for name in ("fade", "dusk", "grass3", "sky7"):
        for still in stills[name]:
            found, _ = first(store, enc, still)
            assert found[0] == clips[name].clip_id, name
            assert len(found) == len(set(found)) == 5      # each clip once


def test_a_forgotten_clips_stills_are_gone_from_answers_and_from_the_shards(memory):
    store, enc, clips, stills = memory
    fade = store.clips_by_key(np.array([_key(store, clips["fade"])]))
    forget(store, list(fade.values()))
    found, _ = first(store, enc, stills["fade"][0])
    assert clips["fade"].clip_id not in found and found[0] == clips["dusk"].clip_id
    with store.writer():
        compact(store)
    assert [s.rows for s in store.shards(VERSION_0, "still")] == [3 * (len(clips) - 1)]
    assert first(store, enc, stills["grass2"][1])[0][0] == clips["grass2"].clip_id


def test_stills_go_through_the_ann_index_like_any_kind(tmp_path):
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (600, 3))
    stills = [[flat(tuple(c + rng.integers(-30, 31, 3)), 6, 3 * i + j) for j in range(3)]
              for i, c in enumerate(colours)]
    clips = day_of(DAY, len(stills))
    enc = FixedEncoders(16000)
    store = Store(Paths(tmp_path / "home"))
    store.add(VERSION_0, clips, enc.embed_clips(stills, [None] * len(stills)))
    with store.writer():
        for kind, rows in (("still", 1800), ("video", 600)):
            rec = ann.sync_index(store, VERSION_0, kind, min_rows=500, nprobe_floor=2)
            assert rec is not None and rec.rows == rows
    keys = {c.clip_id: _key(store, c) for c in clips}
    for i in rng.choice(len(stills), 20, replace=False):
        q = enc.embed_image(stills[i][int(rng.integers(3))]).video[0]
        top, scores, method = ranked(store, VERSION_0, "still", q / np.linalg.norm(q), 24,
                                     None, None, ann_min_rows=500)
        assert method.startswith("ivf") and top[0] == keys[clips[i].clip_id]
        assert scores[0] > 0.9999
        found, method = first(store, enc, stills[i][0], ann_min_rows=500)
        assert method.startswith("ivf") and found[0] == clips[i].clip_id
        assert len(found) == len(set(found)) == 5
    store.close()


def test_near_copies_come_first_and_every_other_clip_by_its_mean():
    stills = (np.array([7, 7, 3, 5]), np.array([1.0, 0.995, NEAR_COPY - 0.001, 0.5]))
    means = (np.array([1, 2, 3, 7]), np.array([0.97, 0.96, 0.95, 0.4]))
    keys, scores = near_copies_first(stills, means)
    assert keys.tolist() == [7, 1, 2, 3] and scores.tolist() == [1.0, 0.97, 0.96, 0.95]


def day_of(day: str, n: int) -> list[Clip]:
    t0 = datetime.fromisoformat(day).replace(hour=9, tzinfo=timezone.utc)
    return [Clip(clip_id(t0 + timedelta(seconds=3 * i)), day,
                 (t0 + timedelta(seconds=3 * i)).isoformat(), 3.0, f"m/{i}.json", None, None, ())
            for i in range(n)]


def test_a_day_committed_before_stills_had_vectors_is_ranked_by_its_clips_mean(tmp_path):
    """Such a day has `video` shards only (an older wm wrote no `still` shards), alone in
    its version or beside days that have stills."""
    enc = FixedEncoders(16000)
    pics = [flat(GRASS, 10, 1), flat(SKY, 10, 2)]
    clips = day_of("2025-01-14", 2)
    emb = enc.embed_clips([[p] for p in pics], [None, None])
    emb.stills = None
    store = Store(Paths(tmp_path / "home"))
    store.add(VERSION_0, clips, emb)
    assert not store.shards(VERSION_0, "still")
    found, _ = first(store, enc, pics[1])
    assert found == [clips[1].clip_id, clips[0].clip_id]
    # The next day is committed with stills: each day is ranked by what it has.
    later = day_of(DAY, 2)
    store.add(VERSION_0, later, enc.embed_clips([[flat(SKY, 10, 3)], [flat(BLACK)]], [None] * 2))
    found, _ = first(store, enc, pics[1])
    assert found[:2] == [clips[1].clip_id, later[0].clip_id] and len(found) == 4
    assert first(store, enc, flat(BLACK))[0][0] == later[1].clip_id
    store.close()


def _key(store: Store, clip: Clip) -> int:
    return store.conn.execute("SELECT key FROM memory_clips WHERE clip_id = ?",
                              (clip.clip_id,)).fetchone()[0]
