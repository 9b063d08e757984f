"""A query done without the service loads only the half of a trained version it needs; its
vectors are exactly those of the whole models (a small random-initialised model saved as a
promoted version, loaded from its real checkpoint file)."""
import numpy as np
import pytest
import torch
from memory_support import make_memory_day, settings_for_tests

from wm.base.errors import WmError
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.learn.encoders import load_encoders
from wm.learn.models import ModelConfig, build_models
from wm.learn.query_encoders import load_query_encoders
from wm.learn.train import atomic_save
from wm.learn.versions import record_version

DATE = "2025-01-15"
SMALL = {"learn": {"device": "cpu",
                   "jepa": {"image_size": 64, "patch_size": 16, "depth": 2, "heads": 2,
                            "width": 32, "predictor_depth": 1, "predictor_width": 16},
                   "cpc": {"hidden": 32, "n_mels": 32}, "align": {"dim": 16}}}


def test_half_the_models_give_the_same_vectors_as_all_of_them(tmp_path):
    import cv2

    torch.set_num_threads(1)
    settings, paths = settings_for_tests(**SMALL), Paths(tmp_path / "home")
    clip = make_memory_day(paths, settings, DATE, n_clips=1, seed=2)[0].manifest
    models = build_models(ModelConfig.from_settings(settings), seed=0)
    models.video_mean += 0.1       # a version's centring is part of it
    ckpt = paths.daily_checkpoint_dir(DATE) / "model.pt"
    sha = atomic_save({"config": models.config.to_dict(), "models": models.state_dict()}, ckpt)
    record_version(paths, f"{DATE}.1", DATE, str(ckpt.relative_to(paths.root)), True, sha)

    whole = load_encoders(settings, paths, version=f"{DATE}.1")
    sight = load_query_encoders(settings, paths, f"{DATE}.1", "video")
    hearing = load_query_encoders(settings, paths, f"{DATE}.1", "audio")
    picture = cv2.imread(str(paths.data / clip.frames[1]))
    sound = read_wav(paths.data / clip.audio)[0]
    for kind in ("video", "shared_video"):
        np.testing.assert_array_equal(sight.embed_image(picture).of(kind),
                                      whole.embed_image(picture).of(kind))
    for kind in ("audio", "shared_audio"):
        np.testing.assert_array_equal(hearing.embed_sound(sound).of(kind),
                                      whole.embed_sound(sound).of(kind))
    assert not np.isnan(sight.embed_image(picture).of("shared_video")).any()
    with pytest.raises(WmError, match="model version 2025-01-20.1 is not known"):
        load_query_encoders(settings, paths, "2025-01-20.1", "video")


def test_skip_init_leaves_the_initialisers_of_training_as_they_were():
    """Models built for training after a query's encoders were loaded start from the same
    random weights as before (skip_init puts torch.nn.init back, even on an error)."""
    from wm.learn.query_encoders import skip_init
    from wm.learn.models import Models

    config = ModelConfig.from_settings(settings_for_tests(**SMALL))
    before = build_models(config, seed=0).state_dict()
    with pytest.raises(RuntimeError, match="mid-build"):
        with skip_init():
            Models(config)
            raise RuntimeError("mid-build")
    after = build_models(config, seed=0).state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_the_command_prints_what_the_whole_models_find(tmp_path):
    """`wm query --image` / `--audio` run from the shell with no service (half the models,
    built without random init, the checkpoint mapped, one thread) print exactly what the
    same query prints in-process with the whole models loaded the original way."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import cv2

    from wm.memory.commit import commit_queued
    from wm.memory.query import run_query
    from wm.memory.request import QueryRequest

    settings, paths = settings_for_tests(**SMALL), Paths(tmp_path / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=6, seed=5)
    models = build_models(ModelConfig.from_settings(settings), seed=1)
    models.audio_mean -= 0.05
    ckpt = paths.daily_checkpoint_dir(DATE) / "model.pt"
    sha = atomic_save({"config": models.config.to_dict(), "models": models.state_dict()}, ckpt)
    record_version(paths, f"{DATE}.1", DATE, str(ckpt.relative_to(paths.root)), True, sha)
    commit_queued(settings, paths, load_encoders(settings, paths), lambda: False)
    picture, sound = tmp_path / "ask.jpg", tmp_path / "ask.wav"
    cv2.imwrite(str(picture), cv2.imread(str(paths.data / clips[2].manifest.frames[0])))
    sound.write_bytes((paths.data / clips[4].manifest.audio).read_bytes())
    cfg = tmp_path / "config.yaml"
    cfg.write_text("capture: {video_width: 320, video_height: 240}\n")
    env = {**os.environ, "WM_HOME": str(paths.root), "WM_CONFIG": str(cfg),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for flag, f in (("--image", picture), ("--audio", sound)):
        shell = subprocess.run([sys.executable, "-m", "wm", "query", flag, str(f)], env=env,
                               capture_output=True, text=True, timeout=300)
        assert shell.returncode == 0, shell.stderr
        req = QueryRequest(**{flag[2:]: f})
        reference = tmp_path / f"reference{flag}.txt"
        with open(reference, "w") as out:
            saved, sys.stdout = sys.stdout, out
            try:
                assert run_query(settings, paths, req, load_encoders=load_encoders) == 0
            finally:
                sys.stdout = saved
        assert shell.stdout == reference.read_text()
        assert "1 " in shell.stdout and f"{DATE}.1" in shell.stdout
