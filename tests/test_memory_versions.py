"""A new model version: new clips go in with it, older clips are re-embedded newest first,
and until they are, they stay findable through their own version. Two versions never
share a ranking, and every result says which version found it."""
import json

import cv2
import numpy as np
import pytest
from memory_support import (
    check_consistent,
    day_encoders,
    make_memory_day,
    settings_for_tests,
)

from wm.base.paths import Paths
from wm.demo.synth import scene_still
from wm.memory.commit import commit_queued
from wm.memory.query import QueryRequest, answer, run_query
from wm.memory.store import Store

OLD, NEW = "2025-01-14", "2025-01-15"


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    root = tmp_path_factory.mktemp("memv")
    settings, paths = settings_for_tests(), Paths(root / "home")
    old = make_memory_day(paths, settings, OLD, n_clips=36, seed=11)
    v1 = day_encoders(paths, "v1", seed=1)
    commit_queued(settings, paths, v1, lambda: False)
    new = make_memory_day(paths, settings, NEW, n_clips=24, seed=12)
    v2 = day_encoders(paths, "v2", seed=2)
    # Stop after the new day's batch and one re-embedding batch (32 of the 36 old clips).
    result = commit_queued(settings, paths, v2, lambda: v2.calls >= 2)
    scene = {c.manifest.id: c.scene for c in old + new}
    encoders = {"v1": v1, "v2": v2}
    return settings, paths, old, new, scene, result, (lambda s, p, version: encoders[version]), root


def test_partial_reembedding_goes_newest_first(memory):
    settings, paths, old, new, scene, result, *_ = memory
    assert (result.committed, result.reembedded, result.stale) == (24, 32, 4)
    with Store(paths) as store:
        assert store.versions() == ["v1", "v2"]
        still_v1 = {c.clip_id for c in store.media_present() if c.version == "v1"}
    assert still_v1 == {c.manifest.id for c in old[:4]}   # the four oldest wait
    check_consistent(paths)


def test_each_clip_is_ranked_once_within_its_own_version(memory, capsys):
    settings, paths, old, new, scene, result, load, root = memory
    s = old[0].scene
    img = root / "q.jpg"
    cv2.imwrite(str(img), scene_still(s, np.random.default_rng(7), (240, 320)))
    capsys.readouterr()
    assert run_query(settings, paths, QueryRequest(image=img, topk=10, as_json=True), load) == 0
    out = json.loads(capsys.readouterr().out)
    assert [g["version"] for g in out["groups"]] == ["v2", "v1"]    # newest version first
    v2, v1 = out["groups"]
    assert (v2["searched"], v1["searched"]) == (56, 4)
    ids_v1 = [r["clip_id"] for r in v1["results"]]
    assert set(ids_v1) == {c.manifest.id for c in old[:4]}  # only clips still held by v1
    assert not set(ids_v1) & {r["clip_id"] for r in v2["results"]}
    assert all(r["version"] == g["version"] for g in out["groups"] for r in g["results"])
    # Each version's ranking used its own encoder for the picture: both find the scene.
    assert scene[v1["results"][0]["clip_id"]] == s and scene[v2["results"][0]["clip_id"]] == s

    assert run_query(settings, paths, QueryRequest(image=img, topk=3), load) == 0
    table = capsys.readouterr().out
    assert "model version v2: 3 best of 56 clips" in table
    assert "model version v1: 3 best of 4 clips" in table


def test_old_clip_still_finds_moments_in_both_versions(memory):
    settings, paths, old, new, scene, result, load, _ = memory
    anchor = old[1]   # held by v1 only; for v2 its media is embedded on the fly
    ans = answer(settings, paths, QueryRequest(clip=anchor.manifest.id, topk=3), load)
    assert [g.version for g in ans.groups] == ["v2", "v1"]
    for g in ans.groups:
        assert anchor.manifest.id not in [h.clip.clip_id for h in g.hits]
        assert scene[g.hits[0].clip.clip_id] == anchor.scene


def test_finishing_the_reembedding_leaves_one_version_and_no_stale_rows(memory):
    settings, paths, old, new, scene, result, load, _ = memory
    v2 = load(settings, paths, version="v2")
    done = commit_queued(settings, paths, v2, lambda: False)
    assert (done.committed, done.reembedded, done.stale) == (0, 4, 0)
    with Store(paths) as store:
        assert {s.version for s in store.all_shards() if s.rows} == {"v2"}
        assert not any(s.stale for s in store.all_shards())
    state = check_consistent(paths)
    assert state["clips"] == 60 and state["orphans"] == 0
    ans = answer(settings, paths, QueryRequest(clip=old[0].manifest.id, topk=5), load)
    assert [g.version for g in ans.groups] == ["v2"]
