"""Settings: shipped defaults, a user's file overriding them key by key, WM_HOME relocating
the data root, and one clear line for every kind of bad config file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from wm.base import config
from wm.base.paths import Paths


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
