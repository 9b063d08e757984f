"""Settings: shipped defaults, a user's file overriding them key by key, WM_HOME relocating
the data root, and one clear line for every kind of bad config file."""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from wm.base import config
from wm.base.paths import Paths
from wm.base.settings_text import defaults_yaml


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_are_the_seed_settings(settings):
    cap = settings.capture
    assert (cap.clip_seconds, cap.frame_rate, cap.sample_rate) == (3, 1, 16000)
    assert cap.clip_samples == 48000
    assert {src for _, _, src in config.flatten(settings)} == {"default"}


def test_config_show_names_where_each_value_came_from(run_wm, home, tmp_path):
    user = write(tmp_path / "mine.yaml", "capture:\n  video_fps: 15\nmemory:\n  topk: 3\n")
    r = run_wm("config", "show", "--json", "--config", user)
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    rows = {row["key"]: row for row in shown["settings"]}
    assert rows["capture.video_fps"] == {"key": "capture.video_fps", "value": 15,
                                         "source": str(user)}
    assert rows["memory.topk"]["value"] == 3 and rows["memory.topk"]["source"] == str(user)
    assert rows["capture.clip_seconds"] == {"key": "capture.clip_seconds", "value": 3,
                                            "source": "default"}
    assert shown["home"] == str(home.root)
    # the table form says the same for a person
    r = run_wm("config", "show", "--config", user)
    line = next(line for line in r.out.splitlines() if line.startswith("capture.video_fps "))
    assert "15" in line and str(user) in line


def test_the_user_file_is_found_in_the_config_dir_and_through_wm_config(home, tmp_path,
                                                                        monkeypatch):
    xdg = write(tmp_path / "xdg-config" / "wm" / "config.yaml", "capture:\n  jpeg_quality: 70\n")
    s = config.load()
    assert s.capture.jpeg_quality == 70 and s.sources["capture.jpeg_quality"] == str(xdg)
    other = write(tmp_path / "elsewhere.yaml", "capture:\n  jpeg_quality: 60\n")
    monkeypatch.setenv("WM_CONFIG", str(other))
    assert config.load().capture.jpeg_quality == 60
    # --config wins over both
    explicit = write(tmp_path / "explicit.yaml", "capture:\n  jpeg_quality: 50\n")
    assert config.load(explicit).capture.jpeg_quality == 50


def test_wm_home_relocates_every_path(home, tmp_path, monkeypatch):
    s = config.load()
    paths = Paths.from_settings(s)
    assert paths.root == home.root
    for p in (paths.clips_dir("2025-01-15"), paths.memory_db, paths.log_file,
              paths.daily_checkpoint_dir("2025-01-15"), paths.ingest_index):
        assert p.is_relative_to(home.root)
    # paths.home in the user's file is used when WM_HOME is not set, and WM_HOME beats it
    user = write(tmp_path / "home.yaml", f"paths:\n  home: {tmp_path / 'configured'}\n")
    assert Paths.from_settings(config.load(user)).root == home.root
    monkeypatch.delenv("WM_HOME")
    assert Paths.from_settings(config.load(user)).root == tmp_path / "configured"


@pytest.mark.parametrize("text, key, problem", [
    ("capture:\n  clip_secs: 5\n", "capture.clip_secs", "unknown key"),
    ("capture:\n  sample_rate: fast\n", "capture.sample_rate", "must be int"),
    ("daemon:\n  check_seconds: -5\n", "daemon.check_seconds", "must not be negative"),
    ("capture: [1, 2\n", "line 2", "cannot be parsed"),
    ("capture: 5\n", "capture", "must be a mapping"),
    ("capture:\n  jpeg_quality: 101\n", "capture.jpeg_quality", "between 0 and 100"),
])
def test_a_bad_config_file_stops_with_one_line(run_wm, tmp_path, text, key, problem):
    bad = write(tmp_path / "bad.yaml", text)
    r = run_wm("config", "show", "--config", bad)
    assert r.code == 2
    assert len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert line.startswith("wm: ") and str(bad) in line and key in line and problem in line
    assert r.out == ""


def test_a_missing_config_file_named_explicitly_is_an_error(run_cli, tmp_path):
    r = run_cli("config", "show", "--config", tmp_path / "nope.yaml")
    assert r.code == 2 and r.err_lines == [f"wm: {tmp_path / 'nope.yaml'}: config file not found"]


def test_overrides_are_validated_like_files(home):
    assert config.load(overrides={"capture": {"min_tail_seconds": 2}}).capture.min_tail_seconds == 2.0
    with pytest.raises(config.ConfigError, match="capture.video_width.*even"):
        config.load(overrides={"capture": {"video_width": 641}})


# Each refused with exit status 2 and one line naming the file and the key.
REFUSED = [
    ("retention:\n  raw_days: .nan\n", "retention.raw_days", "finite"),
    ("retention:\n  max_gb: .inf\n", "retention.max_gb", "finite"),
    ("memory:\n  ann_nprobe: 0\n", "memory.ann_nprobe", "must be positive, got 0"),
    ("learn:\n  log_every: 0\n", "learn.log_every", "must be positive"),
    ("logging:\n  max_bytes: 0\n", "logging.max_bytes", "must be positive"),
    ("learn:\n  jepa:\n    heads: 3\n", "learn.jepa.heads", "must divide width"),
    ("learn:\n  jepa:\n    patch_size: 0\n", "learn.jepa.patch_size", "must be positive"),
    ("capture:\n  clip_seconds: 0\n", "capture.clip_seconds", "must be positive"),
    ("capture:\n  sample_rate: 10000000\n", "capture.sample_rate", "between 8000 and 192000"),
    ('daemon:\n  night_window: "25:00-06:00"\n', "daemon.night_window", "HH:MM-HH:MM"),
    ("daemon:\n  idle_minutes: .nan\n", "daemon.idle_minutes", "finite"),
    ("memory:\n  topk: 0\n", "memory.topk", "must be positive, got 0"),
    # beyond the list: the other kinds of check
    ("learn:\n  jepa:\n    image_size: 50\n", "learn.jepa.image_size", "multiple of patch_size"),
    ("learn:\n  jepa:\n    width: 98\n", "learn.jepa.heads", "must divide width (98)"),
    ("learn:\n  batch_size: true\n", "learn.batch_size", "must be int, got bool"),
    ("learn:\n  threads: 2.5\n", "learn.threads", "must be int, got float"),
    ("daemon:\n  assume_idle: 1\n", "daemon.assume_idle", "must be bool"),
    ("learn:\n  jepa:\n    depht: 4\n", "learn.jepa.depht", "unknown key"),
    ("learn:\n  device: gpu\n", "learn.device", "must be auto, cpu, cuda or mps"),
    ("capture:\n  ingest_preset: slow\n", "capture.ingest_preset", "ultrafast"),
    ("logging:\n  level: verbose\n", "logging.level", "debug, info, warning or error"),
    ("learn:\n  jepa:\n    mask_ratio: 1\n", "learn.jepa.mask_ratio", "between 0 and 1"),
    ("daemon:\n  lease_seconds: 0\n", "daemon.lease_seconds", "must be positive"),
    ("sources:\n  x: y\n", "sources", "unknown key"),
]


@pytest.mark.parametrize("text, key, problem", REFUSED, ids=[k for _, k, _ in REFUSED])
def test_wm_config_show_refuses_a_value_out_of_bounds(run_cli, tmp_path, text, key, problem):
    bad = write(tmp_path / "config.yaml", text)
    r = run_cli("config", "show", "--config", bad)
    assert r.code == 2, r.out
    assert len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert line.startswith(f"wm: {bad}: ") and f"'{key}'" in line and problem in line, line
    assert r.out == ""


def test_yaml_numbers_fit_the_declared_types(home, tmp_path):
    user = write(tmp_path / "mine.yaml", "retention:\n  raw_days: 3\ncapture:\n  camera: 2\n")
    s = config.load(user)
    # 3 is a fine float, and a camera index is text like a path or URL
    assert s.retention.raw_days == 3.0 and isinstance(s.retention.raw_days, float)
    assert s.capture.camera == "2"


def test_the_shipped_defaults_file_is_generated_from_the_declaration():
    shipped = resources.files("wm.base").joinpath("defaults.yaml").read_text()
    assert shipped == defaults_yaml(), "stale: run python tools/config_reference.py"
    # and it reads back as exactly the declared defaults, types included
    from_file = config.flatten(config.Settings(**yaml.safe_load(shipped)))
    declared = config.flatten(config.defaults())
    assert [(k, v, type(v)) for k, v, _ in from_file] == [(k, v, type(v)) for k, v, _ in declared]


def test_settings_stay_frozen_hashable_dataclasses_that_validate(settings):
    # checkpoints keep model settings through dataclasses.asdict; tests derive variants
    far = dataclasses.replace(settings, retention=dataclasses.replace(settings.retention,
                                                                     raw_days=10_000))
    assert far.retention.raw_days == 10_000.0 and far != settings
    assert dataclasses.asdict(settings.learn.jepa)["width"] == 256
    assert config.JepaSettings(**dataclasses.asdict(settings.learn.jepa)) == settings.learn.jepa
    assert hash(settings) == hash(config.defaults()) and settings == config.defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.memory.topk = 5
    with pytest.raises(ValidationError):
        dataclasses.replace(settings.memory, topk=0)
