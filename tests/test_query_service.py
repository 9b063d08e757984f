"""The query service of `wm run`: a real server on a real Unix socket in a temporary data
root answers `wm query` exactly as the command does in-process; a stale socket or no
service costs nothing but the in-process path; the service is a supervised child that comes
back when it dies; and a new model version's encoders are loaded without a restart.

The memory is committed with version 0 (real features that need no training, no torch), so
the in-process path and the service embed with the same real encoders."""
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from memory_support import make_memory_day, settings_for_tests

from wm.base import log
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.daemon.query_server import EncoderCache, QueryServer
from wm.daemon.query_service import QueryService, query_service_command
from wm.learn.fixed import VERSION_0, FixedEncoders
from wm.learn.versions import record_version
from wm.memory.commit import commit_queued
from wm.memory.query_client import ask_service, run_query_command
from wm.memory.request import QueryRequest

DATE = "2025-01-15"


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    root = tmp_path_factory.mktemp("qs")
    settings, paths = settings_for_tests(), Paths(root / "home")
    clips = make_memory_day(paths, settings, DATE, n_clips=12, seed=3)
    commit_queued(settings, paths, FixedEncoders(settings.capture.sample_rate), lambda: False)
    # The service's log lines go to the log file, as in `wm run`, not into the output compared.
    log.setup(paths.log_file, "debug", console=False)
    yield settings, paths, clips
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()


class Running:
    """A QueryServer serving in a thread of the test process."""

    def __init__(self, settings, paths, encoders=None):
        self.server = QueryServer(settings, paths, encoders)
        self.server.bind()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.server.serve, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.server.close()


def _run(settings, paths, req, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = run_query_command(settings, paths, req)
    except WmError as e:       # as wm.cli prints it
        print(f"wm: {e}", file=sys.stderr)
        rc = e.exit_code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_the_service_answers_as_the_command_does_in_process(memory, capsys):
    settings, paths, clips = memory
    still = paths.data / clips[4].manifest.frames[0]
    sound = paths.data / clips[7].manifest.audio
    asks = [QueryRequest(image=still), QueryRequest(audio=sound, topk=3, as_json=True),
            QueryRequest(clip=clips[2].manifest.id, modality="video")]
    alone = [_run(settings, paths, req, capsys) for req in asks]
    running = Running(settings, paths)
    try:
        served = [_run(settings, paths, req, capsys) for req in asks]
        assert running.server.answered == len(asks)
    finally:
        running.close()
    assert served == alone
    assert alone[0][0] == 0 and "10 best of 12 clips by their stills (exact)" in alone[0][1]
    got = json.loads(alone[1][1])
    assert got["groups"][0]["results"][0]["clip_id"] == clips[7].manifest.id
    assert not paths.query_socket.exists(), "the service removes its socket when it stops"


def test_bad_input_reads_the_same_through_the_service(memory, tmp_path, monkeypatch, capsys):
    settings, paths, clips = memory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.jpg").write_text("not a picture")
    asks = [QueryRequest(image=Path("missing.jpg")), QueryRequest(image=Path("notes.jpg")),
            QueryRequest(text="kitchen"), QueryRequest(image=Path("notes.jpg"), topk=0)]
    alone = [_run(settings, paths, req, capsys) for req in asks]
    running = Running(settings, paths)
    try:
        served = [_run(settings, paths, req, capsys) for req in asks]
        assert running.server.answered == len(asks)
        # a relative picture name is read from the asker's folder, not the service's
        (tmp_path / "here.jpg").write_bytes((paths.data / clips[0].manifest.frames[0]).read_bytes())
        assert _run(settings, paths, QueryRequest(image=Path("here.jpg")), capsys)[0] == 0
        # and a contact sheet is written where the asker said, as the asker wrote it
        shown = _run(settings, paths, QueryRequest(image=Path("here.jpg"), topk=2,
                                                   show=Path("sheet.jpg")), capsys)
        assert shown[0] == 0 and shown[1].endswith("\ncontact sheet: sheet.jpg\n")
        assert (tmp_path / "sheet.jpg").read_bytes()[:2] == b"\xff\xd8"
    finally:
        running.close()
    assert served == alone
    assert all(rc == 2 and out == "" and err.count("\n") == 1 for rc, out, err in served)
    assert served[0][2] == "wm: missing.jpg: no such file\n"


def test_the_socket_is_private(memory):
    settings, paths, _ = memory
    running = Running(settings, paths)
    try:
        mode = paths.query_socket.stat().st_mode
    finally:
        running.close()
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_a_stale_socket_or_none_falls_back_to_the_command(memory, capsys):
    settings, paths, clips = memory
    req = QueryRequest(image=paths.data / clips[1].manifest.frames[0], topk=2)
    assert ask_service(paths, req, 10) is None            # no socket at all
    # what a service killed -9 leaves: a socket file nobody listens on
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(paths.query_socket))
    dead.close()
    try:
        assert paths.query_socket.is_socket()
        t = time.monotonic()
        assert ask_service(paths, req, 10) is None
        assert time.monotonic() - t < 1.0, "a refused connection is not waited on"
        rc, out, err = _run(settings, paths, req, capsys)
        assert rc == 0 and "2 best of 12 clips" in out and err == ""
        # and a new service replaces the stale file
        running = Running(settings, paths)
        try:
            assert ask_service(paths, req, 10).out == out
        finally:
            running.close()
    finally:
        paths.query_socket.unlink(missing_ok=True)


def test_a_service_that_fails_mid_answer_leaves_the_query_to_the_command(memory, capsys):
    settings, paths, clips = memory

    def broken(settings, paths, version):
        raise RuntimeError("out of memory")      # what a real failure in the service looks like

    running = Running(settings, paths, EncoderCache(broken))
    try:
        req = QueryRequest(image=paths.data / clips[1].manifest.frames[0], topk=2)
        rc, out, err = _run(settings, paths, req, capsys)
    finally:
        running.close()
    assert rc == 0 and "2 best of 12 clips" in out and err == ""


def test_a_newly_promoted_version_is_loaded_without_a_restart(memory, tmp_path):
    """The loader counts its loads and hands out version 0's real features for any version
    (a trained version's torch models are what this test does not need to load)."""
    settings, _, _ = memory
    paths = Paths(tmp_path / "home")
    loads = []

    def load(settings, paths, version):
        loads.append(version)
        return FixedEncoders(settings.capture.sample_rate)

    cache = EncoderCache(load, keep=2)
    cache.warm(settings, paths)
    assert loads == []                                    # no memory yet: nothing to load
    record_version(paths, "2025-01-15.1", DATE, "checkpoints/a.pt", True)
    cache.warm(settings, paths)
    cache.warm(settings, paths)
    assert loads == ["2025-01-15.1"]                      # loaded once, kept
    record_version(paths, "2025-01-16.1", "2025-01-16", "checkpoints/b.pt", False)
    cache.warm(settings, paths)
    assert loads == ["2025-01-15.1"]                      # not promoted: not the one in use
    record_version(paths, "2025-01-17.1", "2025-01-17", "checkpoints/c.pt", True)
    cache.warm(settings, paths)
    cache(settings, paths, VERSION_0)
    assert loads == ["2025-01-15.1", "2025-01-17.1", VERSION_0]
    assert list(cache.loaded) == ["2025-01-17.1", VERSION_0]   # at most `keep` held


def _answers(paths) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(paths.query_socket))
            return True
        except OSError:
            return False


def _until(check, seconds=60.0, step=0.1, tick=lambda: None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick()
        if check():
            return True
        time.sleep(step)
    return False


def test_the_service_is_a_supervised_child_that_comes_back(memory, monkeypatch, capsys):
    settings, paths, clips = memory
    monkeypatch.setenv("WM_HOME", str(paths.root))
    svc = QueryService(settings, query_service_command(None))
    svc.start()
    try:
        assert _until(lambda: _answers(paths), tick=svc.watch), "the service listens"
        first = svc.pid
        os.kill(first, signal.SIGKILL)                     # a crash: its socket file stays
        assert _until(lambda: svc.pid not in (None, first) and _answers(paths),
                      tick=svc.watch), "restarted after its back-off"
        assert svc.restarts == 1
        req = QueryRequest(image=paths.data / clips[5].manifest.frames[2], topk=4)
        served = ask_service(paths, req, 10)
        assert served is not None and served.rc == 0 and "4 best of 12 clips" in served.out
    finally:
        svc.stop()
    assert svc.pid is None and not paths.query_socket.exists()


def test_the_service_is_off_when_the_settings_say_so(memory):
    settings, _, _ = memory
    import dataclasses

    off = dataclasses.replace(settings, daemon=dataclasses.replace(settings.daemon,
                                                                   query_service=False))
    svc = QueryService(off, query_service_command(None))
    svc.start()
    svc.watch()
    assert svc.pid is None


def test_asking_the_service_imports_no_numpy_opencv_or_torch():
    code = ("import sys, wm.cli, wm.memory.query_client as c; "
            "print(sorted(m for m in ('numpy', 'cv2', 'torch', 'av') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_new_settings_restart_the_service_only_when_a_query_reads_them(memory):
    """A child that only sleeps stands in for the service: what is tested is its life."""
    import dataclasses

    settings, _, _ = memory
    svc = QueryService(settings, lambda: [sys.executable, "-c", "import time; time.sleep(60)"])
    svc.start()
    try:
        first = svc.pid
        later_night = dataclasses.replace(settings, daemon=dataclasses.replace(
            settings.daemon, night_window="02:00-05:00"))
        svc.update(later_night)
        assert svc.pid == first
        more = dataclasses.replace(later_night, memory=dataclasses.replace(
            settings.memory, topk=20))
        svc.update(more)
        assert svc.pid not in (None, first)
        off = dataclasses.replace(more, daemon=dataclasses.replace(
            more.daemon, query_service=False))
        svc.update(off)
        assert svc.pid is None
    finally:
        svc.stop()
