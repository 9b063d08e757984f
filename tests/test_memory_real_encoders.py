"""The memory with the learn component's real encoders: a small random-initialised model
saved as a promoted version's checkpoint, loaded by load_encoders for both commit and
query (nothing injected). Checks the seams: dimensions, versions, every query form runs."""
import json

from memory_support import SMALL_MODELS, check_consistent, make_memory_day, settings_for_tests

from wm.base.paths import Paths
from wm.learn.encoders import load_encoders
from wm.learn.models import ModelConfig, build_models
from wm.learn.train import atomic_save
from wm.learn.versions import record_version
from wm.memory.commit import commit_queued
from wm.memory.labels import run_label
from wm.memory.query import QueryRequest, run_query
from wm.memory.store import Store

DATE = "2025-01-15"


def test_commit_and_query_with_load_encoders(tmp_path, capsys):
    settings, paths = settings_for_tests(**SMALL_MODELS), Paths(tmp_path / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=12, seed=4)
    models = build_models(ModelConfig.from_settings(settings), seed=0)
    ckpt = paths.daily_checkpoint_dir(DATE) / "model-test.pt"
    atomic_save({"config": models.config.to_dict(), "models": models.state_dict()}, ckpt)
    record_version(paths, f"{DATE}.1", DATE, str(ckpt.relative_to(paths.root)), True)

    result = commit_queued(settings, paths, load_encoders(settings, paths), lambda: False)
    assert (result.committed, result.remaining) == (12, 0)
    assert check_consistent(paths)["clips"] == 12
    with Store(paths) as store:
        dims = {s.kind: s.dim for s in store.all_shards()}
    assert dims == {"video": 32, "audio": 32, "shared_video": 16, "shared_audio": 16, "shared": 16,
                    "still": 32}

    frame = paths.data / clips[3].manifest.frames[1]
    wav = paths.data / clips[3].manifest.audio
    run_label(settings, paths, clips[0].manifest.id, "desk")
    for req in (QueryRequest(image=frame), QueryRequest(image=frame, modality="audio"),
                QueryRequest(audio=wav), QueryRequest(clip=clips[5].manifest.id),
                QueryRequest(text="desk", modality="video")):
        capsys.readouterr()
        assert run_query(settings, paths, QueryRequest(**{**req.__dict__, "topk": 4,
                                                          "as_json": True})) == 0
        (group,) = json.loads(capsys.readouterr().out)["groups"]
        assert group["version"] == f"{DATE}.1" and len(group["results"]) == 4
        if req.image is not None and req.modality is None:    # one of its own stills
            assert group["results"][0]["clip_id"] == clips[3].manifest.id
            assert len({r["clip_id"] for r in group["results"]}) == 4
