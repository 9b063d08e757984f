"""Odd values on the command line get one line naming the value and the reason, exit 2,
and change nothing (a pause that is refused does not pause)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("argv", [
    ["pause", "--for", "nan"], ["pause", "--for", "inf"], ["pause", "--for", "0"],
    ["pause", "--for", "1e20"], ["sleep", "--budget", "nan"], ["sleep", "--budget", "0"],
    ["logs", "--since", "nan"], ["logs", "--since", "inf"], ["record", "--duration", "-1"],
])
def test_odd_durations_are_refused_in_one_line(run_wm, home, argv):
    r = run_wm(*argv)
    assert r.code == 2
    errors = [line for line in r.err_lines if "error:" in line]      # after argparse's usage
    assert len(errors) == 1 and f"'{argv[-1]}'" in errors[0], r.err
    assert "Traceback" not in r.err
    assert not home.pause_file.exists()
