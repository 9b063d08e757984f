"""`wm logs`: readable and JSON output, level and age filters, the tail reaching into
rotated files, and `-f` following a log that is written and rotated by the real
RotatingFileHandler (wm.base.log.setup) while it runs."""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from wm.base import log
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.daemon.logview import log_files, run_logs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def real_log():
    """wm.base.log.setup in this process; the handlers are taken down afterwards."""
    yield log.setup
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()


def _stamp(ago: timedelta) -> str:
    return (datetime.now(timezone.utc) - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(event: str, level: str, ago: timedelta, **ctx) -> str:
    return json.dumps({**ctx, "event": event, "level": level, "logger": "wm.test",
                       "timestamp": _stamp(ago)})


def _write(paths: Paths, lines: list[str], suffix: str = "") -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    Path(f"{paths.log_file}{suffix}").write_text("".join(ln + "\n" for ln in lines))


def _events(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"(?:DEBUG|INFO|WARNING|ERROR)\s+(\S+)", text)]


def test_level_and_since_filters(tmp_path, capsys):
    paths = Paths(tmp_path)
    _write(paths, [
        _record("old_error", "error", timedelta(hours=3)),
        _record("old_info", "info", timedelta(hours=2)),
        _record("chatter", "debug", timedelta(minutes=30)),
        _record("clip_written", "info", timedelta(minutes=20), clip="20250115T143012Z"),
        _record("camera_lost", "warning", timedelta(minutes=10), camera="0"),
        _record("sleep_failed", "error", timedelta(minutes=5)),
    ])
    run_logs(paths)
    assert _events(capsys.readouterr().out) == [
        "old_error", "old_info", "chatter", "clip_written", "camera_lost", "sleep_failed"]

    run_logs(paths, level="warning")
    assert _events(capsys.readouterr().out) == ["old_error", "camera_lost", "sleep_failed"]

    run_logs(paths, since=3600)
    assert _events(capsys.readouterr().out) == [
        "chatter", "clip_written", "camera_lost", "sleep_failed"]

    run_logs(paths, since=3600, level="info")
    out = capsys.readouterr().out
    assert _events(out) == ["clip_written", "camera_lost", "sleep_failed"]
    assert "clip=20250115T143012Z" in out and "[wm.test]" in out

    run_logs(paths, lines=2)
    assert _events(capsys.readouterr().out) == ["camera_lost", "sleep_failed"]

    with pytest.raises(WmError, match="--lines"):
        run_logs(paths, lines=-1)


def test_tail_reaches_into_rotated_files_in_order(tmp_path, capsys):
    paths = Paths(tmp_path)
    ago = lambda i: timedelta(minutes=100 - i)  # noqa: E731
    _write(paths, [_record(f"e{i}", "info", ago(i)) for i in range(0, 4)], ".2")
    _write(paths, [_record(f"e{i}", "info", ago(i)) for i in range(4, 8)], ".1")
    _write(paths, [_record(f"e{i}", "info", ago(i)) for i in range(8, 10)])
    run_logs(paths, lines=7)
    assert _events(capsys.readouterr().out) == [f"e{i}" for i in range(3, 10)]
    run_logs(paths, since=95 * 60 + 30)
    assert _events(capsys.readouterr().out) == [f"e{i}" for i in range(5, 10)]


def test_json_output_is_json_lines_and_skips_foreign_lines(tmp_path, capsys):
    paths = Paths(tmp_path)
    _write(paths, [
        _record("a", "info", timedelta(minutes=3), file="/x y/z.mp4", n=3),
        "Traceback (most recent call last): not a JSON line",
        _record("b", "warning", timedelta(minutes=2)),
    ])
    run_logs(paths, as_json=True)
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [r["event"] for r in rows] == ["a", "b"]
    assert rows[0]["file"] == "/x y/z.mp4" and rows[0]["n"] == 3

    run_logs(paths)  # readable: the foreign line is shown as it is
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "Traceback (most recent call last): not a JSON line"
    assert 'file="/x y/z.mp4"' in out[0] and "n=3" in out[0]
    run_logs(paths, level="info")  # a filter drops what it cannot judge
    assert "Traceback" not in capsys.readouterr().out


def test_readable_output_of_the_real_log_shows_local_time_and_exceptions(tmp_path, capsys,
                                                                         real_log):
    paths = Paths(tmp_path)
    real_log(paths.log_file, "debug", console=False)
    try:
        1 / 0
    except ZeroDivisionError:
        log.get("wm.learn").exception("sleep_failed", date="2025-01-15")
    run_logs(paths)
    out = capsys.readouterr().out.splitlines()
    local = datetime.now().astimezone()
    assert out[0].startswith(local.strftime("%Y-%m-%d %H:"))  # shown in local time
    assert "ERROR" in out[0] and "sleep_failed" in out[0] and "date=2025-01-15" in out[0]
    assert out[1].strip() == "ZeroDivisionError: division by zero"
    assert "test_logs.py" in out[2]


def _wait_for(lines: queue.Queue, out: list[str], pattern: str, timeout: float = 20.0) -> None:
    """Collect the follower's output until a line matches."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        out.append(line)
        if re.search(pattern, line):
            return
    raise AssertionError(f"no line matching {pattern!r} in {out[-5:]}")


_WITH_CTRL_C = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv[0] = 'wm'; runpy.run_module('wm', run_name='__main__', alter_sys=True)")


def test_follow_across_rotation(tmp_path, real_log):
    paths = Paths(tmp_path)
    # ~110 bytes a line, rotated every ~8 lines; three backups
    real_log(paths.log_file, "info", max_bytes=900, backups=3, console=False)
    logger = log.get("wm.test")
    for n in range(3):
        logger.info("tick", n=n)

    env = dict(os.environ, WM_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    env.pop("WM_CONFIG", None)
    # `wm logs -f` with Ctrl-C as a terminal delivers it: a suite started in the background
    # (`nohup pytest &`, or `( pytest & )` from a script) runs with SIGINT ignored, and an
    # ignored signal is inherited through exec, so the child would never see the Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-c", _WITH_CTRL_C, "logs", "-f", "--level", "info"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    out: list[str] = []
    try:
        _wait_for(lines, out, r"tick\s+n=2\b")
        n = 3
        # batches of up to 20 lines (at most 3 rotations between two looks), each waited for
        for batch in (5, 12, 20, 9, 20):
            for _ in range(batch):
                logger.info("tick", n=n)
                logger.debug("hidden", n=n)  # below the handler's level: never written
                n += 1
            _wait_for(lines, out, rf"tick\s+n={n - 1}\b")
        assert Path(f"{paths.log_file}.3").exists(), "the test should have rotated the log"

        # a line that reaches the file in two writes is shown once, whole
        with open(paths.log_file, "a") as f:
            f.write('{"event": "split", "level": "warning", ')
            f.flush()
            time.sleep(0.5)
            f.write(f'"timestamp": "{_stamp(timedelta(0))}", "part": 2}}\n')
        logger.warning("after_split")
        _wait_for(lines, out, r"after_split")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(timeout=10)
        while not lines.empty():
            out.append(lines.get())
        proc.stdout.close()
        proc.stderr.close()

    text = "".join(out)
    ticks = [int(m) for m in re.findall(r"tick\s+n=(\d+)", text)]
    assert ticks == list(range(n)), f"missing or repeated lines: {ticks}"
    assert "hidden" not in text
    split = [ln for ln in out if "split" in ln and "after_split" not in ln]
    assert len(split) == 1 and "WARNING" in split[0] and "part=2" in split[0]
    assert rc == 0


WRITER = """
import sys
from pathlib import Path
from wm.base import log
log.setup(Path(sys.argv[1]), "info", max_bytes=int(sys.argv[4]), backups=1000, console=False)
lg = log.get("wm.test")
for i in range(int(sys.argv[3])):
    lg.info("line", writer=int(sys.argv[2]), n=i, pad="x" * 60)
"""


def test_several_processes_share_one_log_and_its_rotation(tmp_path):
    """`wm run`, `wm sleep` and `wm ingest` write one log at once: every line arrives
    once and whole, and the log is rotated once per max_bytes, not once per process."""
    paths = Paths(tmp_path)
    paths.logs.mkdir()
    writers, each, max_bytes = 4, 400, 4000
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(paths.log_file), str(w),
                               str(each), str(max_bytes)], cwd=REPO)
             for w in range(writers)]
    assert [p.wait(120) for p in procs] == [0] * writers

    files = log_files(paths.log_file)
    records = [json.loads(ln) for f in files for ln in f.read_text().splitlines()]
    seen = sorted((r["writer"], r["n"]) for r in records)
    assert seen == [(w, n) for w in range(writers) for n in range(each)]
    total = sum(f.stat().st_size for f in files)
    line = total / len(records)
    assert len(files) <= total / max_bytes * 1.25 + 2, "rotated more often than it filled"
    # A process that has not yet seen a rotation appends its line to the file just moved.
    assert all(f.stat().st_size <= max_bytes + writers * line for f in files[1:])


def test_logs_under_a_strict_locale_show_non_utf8_names(tmp_path, real_log):
    """A file name that is not UTF-8 (as Linux allows), bytes that are not text and an
    accent, shown by `wm logs` where stdout cannot encode them: escaped, not a crash."""
    paths = Paths(tmp_path)
    real_log(paths.log_file, "info", console=False)
    log.get("wm.ingest").warning("ingest_failed", file=os.fsdecode(b"/raw/caf\xe9.mp4"))
    log.get("wm.test").info("gr\u00fc\u00dfe")
    with open(paths.log_file, "ab") as f:
        f.write(b'{"event": "raw \xff\xfe bytes", "level": "info"}\n')
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIO"))}
    base.update(WM_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    base.pop("WM_CONFIG", None)
    for strict in ({"LC_ALL": "C", "PYTHONUTF8": "0"},                   # ASCII stdout
                   {"LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}):   # strict UTF-8
        for args in ((), ("--json",)):
            done = subprocess.run([sys.executable, "-m", "wm", "logs", *args],
                                  capture_output=True, env={**base, **strict}, timeout=60)
            assert done.returncode == 0, (strict, args, done.stderr)
            out = done.stdout.decode("utf-8")
            assert "ingest_failed" in out and "caf" in out and "bytes" in out, (strict, out)
            if args:
                assert len([json.loads(ln) for ln in out.splitlines()]) == 3
