"""The levers that make a short night learn on real footage: causal CPC that keeps the
level and draws negatives from other clips, multi-positive alignment, held-out visits,
the version's own normalisation, and the promotion verdict."""
import math

import numpy as np
import pytest
import torch
from learn_support import tiny_settings

from wm.learn.align import Align
from wm.learn.cpc import Cpc, other_clip_frames
from wm.learn.embeddings import Embedder
from wm.learn.encoders import Encoders, models_from_checkpoint
from wm.learn.holdout import hold_out_blocks, time_blocks
from wm.learn.jepa import variance_covariance
from wm.learn.judge import Retrieval, judge, top_chance, top_hits
from wm.learn.models import ModelConfig, build_models


def test_cpc_context_never_hears_ahead():
    torch.manual_seed(0)
    cpc = Cpc(tiny_settings().learn.cpc, 16000).eval()
    wave = torch.randn(1, 16000) * 0.1
    later = wave.clone()
    later[:, 8000:] = torch.randn(1, 8000)
    _, c1 = cpc.features(wave)
    _, c2 = cpc.features(later)
    hop = 16000 * 20 // 1000
    safe = (8000 - 400) // hop          # frames that end before the change
    assert torch.allclose(c1[:, :safe], c2[:, :safe], atol=1e-6)
    assert not torch.allclose(c1[:, safe + 2:], c2[:, safe + 2:], atol=1e-3)


def test_cpc_keeps_the_level():
    torch.manual_seed(0)
    cpc = Cpc(tiny_settings().learn.cpc, 16000).eval()
    wave = torch.randn(1, 16000) * 0.3
    assert not torch.allclose(cpc.embed(wave), cpc.embed(wave * 0.05), atol=1e-3)


def test_other_clip_negatives_are_outside_the_clip():
    gen = torch.Generator().manual_seed(0)
    idx = other_clip_frames(gen, (4, 5), batch=4, length=10, n=50, device=torch.device("cpu"))
    owner = idx // 10
    assert (owner != torch.arange(4).view(4, 1, 1)).all() and idx.max() < 40
    assert len(torch.unique(owner)) == 4


def test_clip_loss_counts_the_same_visit_as_positive():
    torch.manual_seed(0)
    align = Align(16, 16, tiny_settings().learn.align)
    v = torch.randn(8, 16)
    times = torch.tensor([0.0, 3, 6, 100, 103, 106, 200, 203])
    # Pictures of one visit for every sound of the visit: near-duplicates are no contradiction.
    a = v.clone()
    a[1], a[2] = a[0], a[0]
    with torch.no_grad():
        align.audio.net.load_state_dict(align.video.net.state_dict())
    assert align.loss(v, a, times, 9.0) < align.loss(v, a, torch.arange(8) * 100.0, 9.0)


def test_variance_covariance_penalise_a_collapsed_batch():
    var0, cov0 = variance_covariance(torch.zeros(8, 16))
    var1, _ = variance_covariance(torch.randn(256, 16) * 3)
    assert var0.item() > 0.9 and cov0.item() == 0 and var1.item() < 0.05


def test_time_blocks_follow_visits_and_cap_their_length():
    starts = np.array([0, 3, 6, 100, 103, 500, 503, 506, 509] + [1000 + 3 * i for i in range(30)], float)
    b = time_blocks(starts, 9.0, block_seconds=30.0)
    assert list(b[:9]) == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert len(np.unique(b[9:])) == 3            # 90 s of continuous recording, 30 s blocks
    held = hold_out_blocks(np.random.default_rng(0), b, 5)
    assert len(held) >= 5
    for block in np.unique(b[held]):
        assert set(np.flatnonzero(b == block)) <= set(held.tolist())


def test_a_day_of_one_visit_is_all_trained_on():
    one_visit = time_blocks(np.arange(6) * 3.0, 9.0)
    assert len(hold_out_blocks(np.random.default_rng(0), one_visit, 1)) == 0


def test_the_version_mean_is_applied_and_saved(tmp_path):
    s = tiny_settings()
    models = build_models(ModelConfig.from_settings(s), 0)
    rng = np.random.default_rng(0)
    stills = [[rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)] for _ in range(3)]
    audio = [rng.integers(-3000, 3000, 48000).astype(np.int16) for _ in range(3)]
    raw = Encoders(models, "x", torch.device("cpu")).embed_clips(stills, audio)
    with torch.no_grad():
        models.video_mean.copy_(torch.from_numpy(raw.video.mean(0)))
        models.audio_mean.copy_(torch.from_numpy(raw.audio.mean(0)))
    ckpt = {"config": models.config.to_dict(), "models": models.state_dict()}
    again = Encoders(models_from_checkpoint(ckpt), "x", torch.device("cpu")).embed_clips(stills, audio)
    assert np.allclose(again.video.mean(0), 0, atol=1e-4) and np.allclose(again.audio.mean(0), 0, atol=1e-4)
    old = {k: v for k, v in ckpt["models"].items() if not k.endswith("_mean")}   # before versions kept means
    plain = Encoders(models_from_checkpoint({**ckpt, "models": old}), "x", torch.device("cpu"))
    assert np.allclose(plain.embed_clips(stills, audio).video, raw.video, atol=1e-5)


def test_a_sound_is_embedded_by_its_frames_z_and_an_older_model_keeps_its_context_c():
    s = tiny_settings()
    models = build_models(ModelConfig.from_settings(s), 0).eval()
    assert s.learn.cpc.pool == "z"
    wave = torch.randn(2, 16000) * 0.1
    z, c = models.cpc.features(wave)
    assert torch.allclose(models.cpc.embed(wave), z.mean(1), atol=1e-6)
    # A model file from before the setting (no "pool" in its config) is read as it was made.
    ckpt = {"config": models.config.to_dict(), "models": models.state_dict()}
    del ckpt["config"]["cpc"]["pool"]
    old = models_from_checkpoint(ckpt).eval()
    assert old.config.cpc.pool == "c"
    assert torch.allclose(old.cpc.embed(wave), c.mean(1), atol=1e-6)
    assert not torch.allclose(z.mean(1), c.mean(1), atol=1e-3)
    assert old.config.same_architecture(models.config)    # its weights still start a night


def test_top_hits_count_the_same_visit_among_the_answers():
    blocks = np.array([0, 0, 1, 1])
    q = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], float)
    assert top_hits(q, q, blocks, k=1) == 1.0
    assert top_hits(q, q[::-1].copy(), blocks, k=1) == 0.0
    assert top_hits(q, np.full((4, 2), np.nan), blocks) is None
    # Three visits of two clips; each query's visit-mate is its second answer.
    blocks = np.array([0, 0, 1, 1, 2, 2])
    x = np.array([[1, 0, 0], [0, 1, 0.5], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0.5]], float)
    assert top_hits(x, x, blocks, k=1) < 1.0 and top_hits(x, x, blocks, k=5) == 1.0


def test_top_chance_is_what_random_answers_get():
    blocks = np.arange(18) // 3                     # 6 visits of 3 clips: 2 mates in 17
    assert top_chance(blocks, k=1) == pytest.approx(2 / 17)
    assert top_chance(blocks, k=5) == pytest.approx(1 - math.comb(15, 5) / math.comb(17, 5))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(18, 8))
    draws = [top_hits(x, rng.normal(size=(18, 8)), blocks, k=5) for _ in range(400)]
    assert np.mean(draws) == pytest.approx(top_chance(blocks, k=5), abs=0.03)


class _Named(Embedder):
    def __init__(self, version):
        self.version = version


def test_verdicts_without_judging(monkeypatch):
    cand, cur = _Named("candidate"), _Named("0")
    j = judge(cand, cur, cur, [], 200, ["video"], 0.05)
    assert not j.promoted and not j.judged and "collapse" in j.reason
    j = judge(cand, cur, cur, [], 30, [], 0.05)
    assert j.promoted and not j.judged and "too small" in j.reason


def test_verdict_compares_with_the_version_in_use(monkeypatch):
    import wm.learn.judge as jm
    scores = {"candidate": {"image->image": 0.6, "audio->audio": 0.7, "audio->video": 0.6},
              "v1": {"image->image": 0.8, "audio->audio": 0.8, "audio->video": 0.5},
              "0": {"image->image": 0.9, "audio->audio": 0.9, "audio->video": None}}
    monkeypatch.setattr(jm, "held_out_media", lambda clips: ([], [], np.arange(10) // 2))
    monkeypatch.setattr(jm, "retrieval", lambda e, name, *a: Retrieval(name, scores[name], 0.1, 10))
    j = judge(_Named("candidate"), _Named("v1"), _Named("0"), [], 200, [], 0.05)
    assert j.judged and not j.promoted and j.winner == "v1"
    assert j.margin == pytest.approx((0.6 + 0.7 + 0.6) / 3 - (0.8 + 0.8 + 0.5) / 3)
    assert [r.embedder for r in j.results] == ["candidate", "v1", "0"]
    scores["candidate"]["image->image"] = 0.95
    assert judge(_Named("candidate"), _Named("v1"), _Named("0"), [], 200, [], 0.05).promoted
