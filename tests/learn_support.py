"""Shared by the learning tests: tiny model settings that train in seconds on a CPU, and
a queued synthetic day."""
from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
import torch

from wm.base import config
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.demo.synth import make_day

# Tiny models: 48 px images (6 x 6 patches), 20 ms audio frames, narrow everything.
TINY = {"learn": {
    "device": "cpu", "threads": 1, "batch_size": 16, "micro_batch": 16, "warmup_steps": 20,
    "checkpoint_minutes": 60.0, "log_every": 1000,
    # Four synthetic scenes: a scene-aware embedding has an effective rank near 4.
    "collapse_min_rank": 2.0,
    "jepa": {"image_size": 48, "patch_size": 8, "depth": 2, "heads": 2, "width": 64,
             "predictor_depth": 1, "predictor_width": 32, "steps": 1000, "lr": 0.001},
    "cpc": {"n_mels": 32, "hop_ms": 20, "hidden": 64, "prediction_steps": 4, "negatives": 16,
            "negative_exclusion": 3, "steps": 200, "lr": 0.001},
    "align": {"dim": 32, "steps": 200, "lr": 0.001},
}}


@pytest.fixture(autouse=True)
def one_thread():
    """Torch on one thread (autouse where a test module imports it): the tests' timings
    and the machine's other users both need it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny_settings(**learn):
    """Tiny settings; keyword arguments override `learn` keys (nested dicts merge)."""
    return config.load(None, overrides=merge(TINY, {"learn": learn}))


def day(days_ago: int) -> str:
    """A recent local date (media of recent days survive retention)."""
    return (date.today() - timedelta(days=days_ago)).isoformat()


def queue_day(settings, paths: Paths, date_: str, n_clips: int, seed: int, n_scenes: int = 4):
    clips = make_day(settings, paths, date_, n_clips, n_scenes=n_scenes, seed=seed)
    q = Queue(paths.memory_db)
    for c in clips:
        q.enqueue(c.manifest, str(c.manifest_path.relative_to(paths.data)))
    q.close()
    return clips
