"""The learning parts one by one: schedules, negatives, the CLIP loss's near-in-time
exclusion, metrics, model versions, reports, embedding shapes."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
from learn_support import tiny_settings

from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.learn.align import Align
from wm.learn.cpc import Cpc, sample_negatives
from wm.learn.data import ClipRef, StillCache, frame_pairs, pick, random_box
from wm.learn.encoders import Encoders, load_encoders
from wm.learn.evaluate import Evaluation
from wm.learn.metrics import Spread, mean_std, rankme, recall_at_k, spread
from wm.learn.models import ModelConfig, Models, build_models
from wm.learn.report import NightReport, write_report
from wm.learn import train
from wm.learn.train import (
    Loop,
    Stage,
    StageRecord,
    autocast,
    fit_steps,
    lr_at,
    momentum_at,
    param_groups,
    pick_device,
    run_stage,
)
from wm.learn.versions import (
    all_versions,
    latest_version,
    next_version_name,
    record_version,
)


def test_lr_warms_up_then_follows_a_cosine_to_zero():
    lrs = [lr_at(s, 1000, 100, 1e-3) for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:100], lrs[1:100]))
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))
    assert lrs[550] == pytest.approx(0.5e-3, rel=0.01) and lrs[-1] < 1e-7
    # A short run keeps its warm-up to a quarter of the steps.
    assert lr_at(24, 100, 200, 1.0) == pytest.approx(1.0)


def test_a_stage_plans_as_many_steps_as_fit_in_the_time_left():
    assert fit_steps(step=4, max_steps=1000, seconds_left=10.0, per_step=0.5) == 24
    assert fit_steps(step=4, max_steps=10, seconds_left=10.0, per_step=0.5) == 10
    assert fit_steps(step=4, max_steps=1000, seconds_left=-1.0, per_step=0.5) == 4   # no more
    assert fit_steps(step=10, max_steps=10, seconds_left=99.0, per_step=0.5) == 10


class _Sleeper(Stage):
    """A stage whose steps take `slow` seconds while the machine is busy (the first
    `busy` steps), then `fast` seconds."""
    name, unit, batch, lr = "sleeper", "clips", 1, 0.1

    def __init__(self, busy: int, slow: float, fast: float):
        self.module = torch.nn.Linear(1, 1)
        self.busy, self.slow, self.fast, self.n = busy, slow, fast, 0

    def step(self, step, total, should_stop):
        import time
        time.sleep(self.slow if self.n < self.busy else self.fast)
        self.n += 1
        return {"loss": 1.0}


def test_a_stage_planned_at_a_busy_moment_replans_when_the_machine_is_free(monkeypatch):
    """The plan is first made after 4 steps: here they take 0.1 s each, which would fit
    ~20 steps in the 2 s left; the machine then runs steps 20x faster and the stage must
    use that time instead of ending after a quarter of it."""
    import time
    monkeypatch.setattr(train, "REPLAN_SECONDS", 0.1)
    stage = _Sleeper(busy=4, slow=0.1, fast=0.005)
    rec = StageRecord("sleeper", max_steps=400)
    opt = torch.optim.SGD(stage.module.parameters(), lr=0.1)   # its first use imports for seconds
    deadline = time.monotonic() + 2.0
    loop = Loop(should_stop=lambda: False, save=lambda: None, checkpoint_seconds=1e9,
                deadline=deadline, warmup=0, log_every=1000)
    assert run_stage(stage, rec, opt, loop)
    assert rec.step >= 60, f"stopped at {rec.step} steps"
    assert time.monotonic() < deadline + 1.0


def test_ema_momentum_rises_to_its_end():
    assert momentum_at(0, 100, 0.996, 1.0) == 0.996
    assert momentum_at(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert momentum_at(100, 100, 0.996, 1.0) == 1.0 == momentum_at(150, 100, 0.996, 1.0)


def test_no_weight_decay_on_biases_norms_and_temperature():
    align = Align(8, 8, tiny_settings().learn.align)
    decay, plain = param_groups(align.named_parameters(), 0.05)
    assert decay["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any(p is align.logit_scale for p in plain["params"])
    assert len(decay["params"]) + len(plain["params"]) == len(list(align.parameters()))


def test_negatives_stay_away_from_the_positive():
    gen = torch.Generator().manual_seed(0)
    pos = torch.arange(100)
    neg = sample_negatives(gen, (100,), pos, length=100, exclusion=10, n=500)
    assert neg.shape == (100, 500) and neg.min() >= 0 and neg.max() < 100
    assert ((neg - pos[:, None]).abs() > 10).all()
    middle = neg[50]
    assert (middle < 40).any() and (middle > 60).any()   # both sides are drawn
    with pytest.raises(ValueError):
        sample_negatives(gen, (3,), torch.tensor([1, 2, 3]), length=5, exclusion=10, n=4)


def test_untrained_cpc_is_at_chance():
    s = tiny_settings().learn.cpc
    torch.manual_seed(0)
    cpc = Cpc(s, 16000)
    wave = torch.randn(8, 16000) * 0.1
    loss, acc = cpc.loss(wave, torch.Generator().manual_seed(0))
    chance = 1 / (1 + s.negatives)
    assert acc.shape == (s.prediction_steps,)
    assert loss.item() == pytest.approx(math.log(1 + s.negatives), rel=0.2)
    assert acc.mean().item() < 3 * chance


def test_clip_loss_starts_near_log_batch_and_ignores_near_duplicates():
    s = tiny_settings().learn.align
    torch.manual_seed(0)
    align = Align(16, 16, s)
    v, a = torch.randn(8, 16), torch.randn(8, 16)
    far = torch.arange(8) * 100.0
    assert align.loss(v, a, far, 9.0).item() == pytest.approx(math.log(8), rel=0.25)
    # Clips 0 and 1 are the same moment twice: as each other's negatives they would be a
    # contradiction; 3 s apart they are excluded, and the loss no longer pays for them.
    v[1], a[1] = v[0], a[0]
    near = far.clone()
    near[1] = near[0] + 3
    assert align.loss(v, a, near, 9.0) < align.loss(v, a, far, 9.0)
    with torch.no_grad():
        align.logit_scale.fill_(10.0)
    align.clamp_()
    assert align.logit_scale.item() == pytest.approx(math.log(s.max_logit_scale))


def test_metrics_on_known_matrices():
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(2000, 16))
    assert 14 < rankme(iso) <= 16
    line = rng.normal(size=(100, 1)) * np.ones((1, 16)) + 5
    assert rankme(line) < 1.1
    assert mean_std(np.ones((50, 8))) == pytest.approx(0)
    assert mean_std(iso) == pytest.approx(1 / 4, rel=0.1)
    keys = rng.normal(size=(30, 8))
    assert recall_at_k(keys, keys, 1) == 1.0
    assert recall_at_k(keys, rng.normal(size=(30, 8)), 5) < 0.5
    assert spread(np.ones((10, 4))).collapsed(4.0, 0.01)
    assert not spread(iso).collapsed(4.0, 0.01)
    nan_rows = np.vstack([iso[:10], np.full((3, 16), np.nan)])
    assert spread(nan_rows).n == 10


def test_versions_promoted_latest_and_names(tmp_path):
    paths = Paths(tmp_path)
    assert latest_version(paths) is None and all_versions(paths) == []
    assert next_version_name(paths, "2025-01-15") == "2025-01-15.1"
    record_version(paths, "2025-01-15.1", "2025-01-15", "checkpoints/a.pt", promoted=True)
    record_version(paths, "2025-01-16.1", "2025-01-16", "checkpoints/b.pt", promoted=False)
    assert next_version_name(paths, "2025-01-15") == "2025-01-15.2"
    assert latest_version(paths).version == "2025-01-15.1"        # the collapsed one is not used
    assert [v.version for v in all_versions(paths)] == ["2025-01-15.1", "2025-01-16.1"]
    assert [v.promoted for v in all_versions(paths)] == [True, False]


def test_load_encoders_without_a_model_gives_version_0(tmp_path):
    assert load_encoders(tiny_settings(), Paths(tmp_path)).version == "v0"
    with pytest.raises(WmError, match="not known"):
        load_encoders(tiny_settings(), Paths(tmp_path), version="2025-01-01.1")


def test_embed_clips_marks_missing_modalities_with_nan():
    settings = tiny_settings()
    enc = Encoders(build_models(ModelConfig.from_settings(settings), 0), "x", torch.device("cpu"))
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    sound = np.random.default_rng(1).normal(0, 2000, 48000).astype(np.int16)
    e = enc.embed_clips([[img, img], [], [img]], [sound, sound, None])
    assert e.video.shape == (3, 64) and e.audio.shape == (3, 64)
    assert e.shared_video.shape == (3, 32)
    assert np.isnan(e.video[1]).all() and np.isfinite(e.video[[0, 2]]).all()
    assert np.isnan(e.audio[2]).all() and np.isnan(e.shared_audio[2]).all()
    np.testing.assert_allclose(e.video[0], e.video[2], rtol=1e-4, atol=1e-5)  # a clip = mean of its frames
    np.testing.assert_allclose(np.linalg.norm(e.shared_audio[:2], axis=1), 1, atol=1e-5)


def test_checkpointed_models_come_back_identical(tmp_path):
    settings = tiny_settings()
    config = ModelConfig.from_settings(settings)
    a = build_models(config, 0)
    torch.save({"config": config.to_dict(), "models": a.state_dict()}, tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    b = Models(ModelConfig.from_dict(ckpt["config"]))
    b.load_state_dict(ckpt["models"])
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    assert ModelConfig.from_dict(ckpt["config"]).same_architecture(config)
    wider = tiny_settings(jepa={"width": 96})
    assert not ModelConfig.from_settings(wider).same_architecture(config)


def test_device_choice_and_no_bf16_on_cpu():
    assert pick_device("cpu").type == "cpu"
    auto = pick_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else
                         "mps" if torch.backends.mps.is_available() else "cpu")
    with autocast(torch.device("cpu")):
        y = torch.ones(4, 4) @ torch.ones(4, 4)
    assert y.dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(WmError, match="cuda"):
            pick_device("cuda")


def test_batches_mix_in_earlier_days(tmp_path):
    rng = np.random.default_rng(0)
    today = [ClipRef(f"t{i}", "2025-01-02", i, (), None) for i in range(10)]
    old = [ClipRef(f"o{i}", "2025-01-01", i, (), None) for i in range(10)]
    batch = pick(rng, today, old, 16, 0.25)
    assert sum(c.id.startswith("o") for c in batch) == 4
    assert all(c.id.startswith("t") for c in pick(rng, today, [], 16, 0.25))


def test_frame_pairs_share_a_crop_and_differ_in_time(tmp_path):
    # Two stills of one clip: an image and its negative.
    base = np.zeros((60, 80, 3), np.uint8)
    base[:, :40] = 255
    paths = []
    for k, img in enumerate((base, 255 - base)):
        p = tmp_path / f"s{k}.jpg"
        cv2.imwrite(str(p), img)
        paths.append(p)
    clip = ClipRef("c", "2025-01-01", 0.0, tuple(paths), None)
    rng = np.random.default_rng(0)
    now, later = frame_pairs(rng, [clip] * 8, 16, cross_frame=True, cache=StillCache(16))
    # Same crop on both frames: the second still is the first inverted, pixel for pixel.
    assert np.abs(now.astype(int) + later.astype(int) - 255).max() < 40
    same_now, same_later = frame_pairs(rng, [clip] * 4, 16, cross_frame=False, cache=StillCache(16))
    assert np.array_equal(same_now, same_later)
    box = random_box(rng)
    assert 0 <= box.top <= 1 - box.height and 0 <= box.left <= 1 - box.width


def test_report_files(tmp_path):
    paths = Paths(tmp_path)
    rec = StageRecord("jepa", 100, step=100, done=True, seconds=10, samples=1600,
                      losses=list(np.linspace(1, 0.1, 100)))
    cpc = StageRecord("cpc", 50, step=50, done=True, seconds=5, samples=800, losses=[2.0] * 50,
                      curves={"accuracy": list(np.linspace(0.05, 0.5, 50))})
    nan = Spread(float("nan"), float("nan"), 0)
    ev = Evaluation(nan, nan, nan, nan, None, [], 1 / 17, None, None, None, 0)
    from wm.learn.report import summarise
    report = NightReport("2025-01-15", "2025-01-15.1", True, "cpu", "now", 12.0, 10, 2, 0,
                         ["2025-01-15"],
                         {"jepa": summarise(rec, "images"), "cpc": summarise(cpc, "clips")}, ev)
    j, p = write_report(paths, report, {"jepa": rec, "cpc": cpc})
    d = json.loads(j.read_text())
    assert d["stages"]["jepa"]["per_second"] == 160 and d["evaluation"]["video"]["rankme"] is None
    assert d["stages"]["jepa"]["loss_first"] > d["stages"]["jepa"]["loss_last"]
    img = cv2.imread(str(p))
    assert img is not None and img.shape[1] > img.shape[0]    # the figure's layout is report.py's
