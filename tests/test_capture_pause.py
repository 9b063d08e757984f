"""The privacy switch on its own: `wm pause`, `wm pause --for`, `wm resume`, and how a
recorder reads the state (the recorder's side is in test_capture_live/test_capture_file)."""
from __future__ import annotations

import json
import time

import pytest

from wm.capture.pause import is_paused, read_state


def test_pause_holds_until_resume(home, run_cli):
    assert not is_paused(home)
    r = run_cli("pause")
    assert r.code == 0 and "paused until `wm resume`" in r.out
    assert is_paused(home) and is_paused(home, now=time.time() + 10 * 365 * 86400)
    r = run_cli("resume")
    assert r.code == 0 and "resumed" in r.out
    assert not is_paused(home) and not home.pause_file.exists()
    assert "was not paused" in run_cli("resume").out


def test_pause_for_ends_by_itself(home, run_cli):
    before = time.time()
    r = run_cli("pause", "--for", "30m")
    assert r.code == 0 and "paused until" in r.out
    state = read_state(home)
    assert state.until == pytest.approx(before + 1800, abs=5)
    assert is_paused(home, now=before + 1790)
    assert not is_paused(home, now=before + 1810)


def test_bad_duration_is_refused(home, run_wm):
    r = run_wm("pause", "--for", "soon")
    assert r.code == 2 and "'soon' is not a duration" in r.err
    assert not home.pause_file.exists()


def test_unreadable_pause_file_counts_as_paused(home):
    """Failing closed: a damaged switch must not switch recording on."""
    home.pause_file.parent.mkdir(parents=True)
    home.pause_file.write_text("{not json")
    assert is_paused(home)
    home.pause_file.write_text(json.dumps({"since": 1.0, "until": 2.0}))
    assert not is_paused(home)
