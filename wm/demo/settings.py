"""The demo's own settings: small, fast models and a short sleep, in a home of its own.
The user's settings and data are never read or written."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import yaml

from wm.base import config, log
from wm.base.paths import Paths
from wm.demo.day import SEED
from wm.demo.folder import DemoFolder

SPEED = 10.0                   # times real time, for the capture
TOPK = 5
SLEEP_BUDGET_SECONDS = 260.0   # a slow, busy machine trains fewer steps rather than overrun

# Written to the demo's folder as config.yaml: models a 2-core CPU trains in one or two
# minutes. Everything else is the shipped defaults.
DEMO_SETTINGS = {
    "capture": {"video_width": 320, "video_height": 240, "video_fps": 10},
    "learn": {
        "device": "cpu", "batch_size": 16, "micro_batch": 16, "warmup_steps": 20,
        "checkpoint_minutes": 60.0, "log_every": 100, "seed": SEED,
        # Four places: an embedding that knows them has an effective rank near 4.
        "collapse_min_rank": 2.0,
        # Half the JEPA and 4/5 of the CPC steps they had: on a quiet machine the full
        # 1,000 / 500 overfit the 48-clip day (new pictures, sounds and sound to pictures
        # 86 / 80 / 77% right), 500 / 400 gave 90 / 88 / 90% (docs/demo.md). JEPA's lr:
        # over the demo's day seeds 0-7, 0.001 put new pictures at 84-96% (0.0003: 78-97%,
        # 0.002: 70-81% on seeds 0-3), and no day's worst kind under 83%.
        "jepa": {"image_size": 48, "patch_size": 8, "depth": 4, "heads": 4, "width": 128,
                 "predictor_depth": 2, "predictor_width": 64, "steps": 500, "lr": 0.001},
        "cpc": {"n_mels": 32, "hop_ms": 20, "hidden": 64, "prediction_steps": 4,
                "negatives": 16, "negative_exclusion": 3, "steps": 400, "lr": 0.001},
        # A demo visit is 12 s: a clip's neighbours 3 s away are mostly of its own visit
        # (the positives), those 6 s away often of the next place. Few steps: on a day of
        # 48 clips the heads otherwise learn the clips, not the places. Measured offline on
        # the demo's day with its night's encoders, 8 seeds of the heads (new sounds finding
        # their place's pictures, top 5): 100 steps in 32 dimensions 0.93 (0.89-0.97), in 8
        # dimensions 0.89 (0.83-0.98); 200 steps 0.87 and 300 steps 0.68 (8 dimensions).
        "align": {"dim": 32, "steps": 100, "lr": 0.0003, "exclusion_seconds": 4.0},
    },
    "memory": {"topk": TOPK},
    # The demo's few megabytes need not wait for the 2 GB a real day keeps free.
    "retention": {"min_free_gb": 0.2},
}


@contextlib.contextmanager
def isolated(folder: DemoFolder) -> Iterator[tuple[config.Settings, Paths]]:
    """The demo's settings and home: WM_HOME and WM_CONFIG point into the demo folder for
    this process and its children, and the log goes to the demo's log file."""
    import torch

    cfg = {**DEMO_SETTINGS, "paths": {"home": str(folder.home)}}
    folder.config.write_text("# wm demo: a small, fast configuration (see wm/demo/settings.py)\n"
                             + yaml.safe_dump(cfg, sort_keys=False))
    saved = {k: os.environ.get(k) for k in ("WM_HOME", "WM_CONFIG")}
    threads = torch.get_num_threads()
    os.environ["WM_HOME"], os.environ["WM_CONFIG"] = str(folder.home), str(folder.config)
    # Models this small gain nothing from a second thread, and on a busy machine threads
    # that wait for each other made every training step ten times slower.
    torch.set_num_threads(1)
    try:
        settings = config.load(folder.config)
        paths = Paths.from_settings(settings)
        # The console shows the demo's own lines; warnings still come through.
        log.setup(paths.log_file, "info", console=False)
        yield settings, paths
    finally:
        log.setup(None, "warning")   # let go of the demo's log file
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
