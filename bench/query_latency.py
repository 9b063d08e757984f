"""End-to-end latency of `wm query --image F` and `wm query --audio F` run from the shell
(a new process each time, results printed), with the query service answering and without
it, on a small memory and on one of 1M clips; the client's peak RSS and CPU time; the
service's own part (a socket round trip from the bench's process); and, as the floor
beside them, the command line's start-up in the same run.

    .venv/bin/python bench/query_latency.py                       # 48 clips and 1M, 10 runs each
    .venv/bin/python bench/query_latency.py --sizes 48 --runs 5   # quick
    .venv/bin/python bench/query_latency.py --workdir /tmp/wm-qlat # the memories are kept and reused
    .venv/bin/python bench/query_latency.py --sizes 48 --no-service # the floor and the fallback only

Each memory is a real one: 48 synthetic clips (wm.demo.synth) committed with the real
encoders at the default model size (random weights, saved as a promoted version: speed does
not depend on the weights), then for the large sizes synthetic clustered 256-d vectors of
that version added through the store (store.add, 28,800 clips a day, as bench/query.py) and
its IVF indexes built (ann.sync_index), so `wm query` searches 1M picture and 1M sound
vectors. The service is `python -m wm.daemon.query_server`, started as `wm run` starts it
(wm.daemon.query_service.spawn_service: nice 10); the first query after its start is not
timed (it may still be loading the encoders). The floor beside them is `wm config show`:
the command line's start-up with the settings loaded and the log opened, as `wm query`
has them before it asks anything."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from wm.base import config  # noqa: E402
from wm.base.paths import Paths  # noqa: E402

WM = [sys.executable, "-m", "wm"]
DATE = "2025-01-15"
VERSION = f"{DATE}.1"
SMALL = 48
PER_DAY = 28_800


@dataclass
class Timing:
    label: str
    seconds: list[float]
    rss_mb: list[float]
    cpu: list[float] = field(default_factory=list)   # CPU seconds, client (+ service)

    def line(self) -> str:
        s = sorted(self.seconds)
        rss = statistics.median(self.rss_mb)
        return (f"  {self.label:<36} p50 {statistics.median(s):7.3f} s   min {s[0]:6.3f}"
                f"   max {s[-1]:6.3f}" + ("" if rss != rss else f"   client RSS {rss:4.0f} MB")
                + (f"   CPU {statistics.median(self.cpu):6.3f} s" if self.cpu else "")
                + f"   (n={len(s)})")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:      # not Linux
        return "?"


# -- building the memories ------------------------------------------------------------

def build_small(home: Path) -> None:
    """48 clips committed with a default-size model saved as the promoted VERSION."""
    import torch
    from memory_support import make_memory_day

    from wm.learn.encoders import load_encoders
    from wm.learn.models import ModelConfig, build_models
    from wm.learn.train import atomic_save
    from wm.learn.versions import record_version
    from wm.memory.commit import commit_queued

    torch.set_num_threads(1)
    settings, paths = config.load(None), Paths(home)
    clips = make_memory_day(paths, settings, DATE, n_clips=SMALL, seed=4)
    models = build_models(ModelConfig.from_settings(settings), seed=0)
    ckpt = paths.daily_checkpoint_dir(DATE) / "model-bench.pt"
    sha = atomic_save({"config": models.config.to_dict(), "models": models.state_dict()}, ckpt)
    record_version(paths, VERSION, DATE, str(ckpt.relative_to(paths.root)), True, sha)
    commit_queued(settings, paths, load_encoders(settings, paths), lambda: False)
    shutil.copy(paths.data / clips[3].manifest.frames[1], home.parent / f"{home.name}.jpg")
    shutil.copy(paths.data / clips[3].manifest.audio, home.parent / f"{home.name}.wav")


def grow(home: Path, n: int) -> None:
    """Synthetic clips up to n in all, with video and audio vectors of VERSION, then the
    version's IVF indexes."""
    from bench.query import day_of_clips, members, unit

    from wm.learn.embeddings import ClipEmbeddings
    from wm.memory import ann
    from wm.memory.store import Store

    settings, paths = config.load(None), Paths(home)
    rng = np.random.default_rng(n)
    centres = unit(rng.normal(size=(2000, 256)).astype(np.float32))
    t0 = time.perf_counter()
    with Store(paths) as store:
        for day_i, start in enumerate(range(SMALL, n, PER_DAY)):
            m = min(PER_DAY, n - start)
            _day, clips = day_of_clips(day_i, m)
            nan = np.full((m, 128), np.nan, np.float32)
            store.add(VERSION, clips, ClipEmbeddings(members(rng, centres, m),
                                                     members(rng, centres, m), nan, nan,
                                                     shared=nan))
            print(f"\r  building: {start + m:,} / {n:,} clips", end="", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
        mem = settings.memory
        for kind in ("video", "audio"):
            t = time.perf_counter()
            with store.writer():
                ann.sync_index(store, VERSION, kind, mem.ann_min_rows, mem.ann_nprobe)
            print(f"  IVF index of {kind}: {time.perf_counter() - t:.0f} s")


def memory(workdir: Path, n: int) -> Path:
    home = workdir / f"mem-{n}"
    done = workdir / f"mem-{n}.built"
    if done.exists():
        print(f"== memory of {n:,} clips: reused {home}")
        return home
    if home.exists():
        shutil.rmtree(home)
    print(f"== memory of {n:,} clips: building {home}")
    build_small(home)
    if n > SMALL:
        grow(home, n)
    done.write_text("ok\n")
    return home


# -- timing ---------------------------------------------------------------------------

def run_once(argv: list[str], env: dict, service: int | None = None
             ) -> tuple[float, float, bytes, float]:
    """Wall seconds, the command's own peak RSS (MB), its stdout and the CPU seconds it
    used (plus the service's meanwhile), run as from a shell (stdout to a file: the command
    never waits on a pipe). On a loaded machine the CPU time is the steadier figure: what
    the wall time would be on an idle one, less waiting on the disk."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        before = cpu_of(service) if service else 0.0
        t = time.perf_counter()
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - t
        cpu = usage.ru_utime + usage.ru_stime + (cpu_of(service) - before if service else 0.0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {err.read().decode()[-800:]}")
        return seconds, usage.ru_maxrss / 1024, out.read(), cpu


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a running process has used."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def measure(label: str, argv: list[str], env: dict, runs: int,
            service: int | None = None) -> tuple[Timing, bytes]:
    t = Timing(label, [], [], [])
    out = b""
    for _ in range(runs):
        s, r, out, c = run_once(argv, env, service)
        t.seconds.append(s)
        t.rss_mb.append(r)
        t.cpu.append(c)
    return t, out


def start_service(home: Path, env: dict) -> subprocess.Popen:
    from wm.daemon.query_service import spawn_service

    p = spawn_service([sys.executable, "-m", "wm.daemon.query_server"], env=env,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = Paths(home).query_socket
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sock.is_socket():
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(sock))
                    return p
                except OSError:
                    pass
        if p.poll() is not None:
            raise SystemExit(f"the query service exited ({p.returncode})")
        time.sleep(0.2)
    raise SystemExit("the query service did not listen within 120 s")


def rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def round_trips(home: Path, flag: str, f: Path, runs: int) -> Timing:
    """The service's part alone: request to reply through the socket from this process
    (no interpreter start, no command-line start-up)."""
    from wm.memory.query_client import ask_service
    from wm.memory.request import QueryRequest

    req = QueryRequest(**{flag[2:]: f})
    secs = []
    for _ in range(runs):
        t = time.perf_counter()
        reply = ask_service(Paths(home), req, 10)
        secs.append(time.perf_counter() - t)
        if reply is None or reply.rc != 0:
            raise SystemExit(f"the service did not answer {flag} {f}")
    return Timing(f"socket round trip {flag} (service)", secs, [float("nan")])


def bench_memory(home: Path, runs: int, fallback_runs: int, service: bool = True) -> None:
    env = {**os.environ, "WM_HOME": str(home), "PYTHONPATH": str(ROOT)}
    image, sound = home.parent / f"{home.name}.jpg", home.parent / f"{home.name}.wav"
    asks = [("--image", image), ("--audio", sound)]
    print(f"== {home.name}: load average {loadavg()}")
    rows = [measure("wm config show (start-up floor)", WM + ["config", "show"], env, runs)[0]]
    outputs = {}
    for flag, f in asks:
        t, outputs[("local", flag)] = measure(f"wm query {flag}, no service",
                                              WM + ["query", flag, str(f)], env, fallback_runs)
        rows.append(t)
    if not service:
        for r in rows:
            print(r.line())
        print(f"  load average at the end {loadavg()}")
        return
    svc = start_service(home, env)
    try:
        for flag, f in asks:
            run_once(WM + ["query", flag, str(f)], env)   # first query: encoders may be loading
            t, outputs[("service", flag)] = measure(f"wm query {flag}, service running",
                                                    WM + ["query", flag, str(f)], env, runs,
                                                    service=svc.pid)
            rows.append(t)
        rows += [round_trips(home, flag, f, runs) for flag, f in asks]
        server_rss = rss_of(svc.pid)
    finally:
        svc.send_signal(signal.SIGTERM)
        svc.wait(10)
    for r in rows:
        print(r.line())
    same = all(outputs[("local", f)] == outputs[("service", f)] for f, _ in asks)
    print(f"  service RSS after the queries: {server_rss:.0f} MB;"
          f" output identical with and without the service: {same}")
    print(f"  load average at the end {loadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[SMALL, 1_000_000])
    ap.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    ap.add_argument("--fallback-runs", type=int, help="runs without the service (default: --runs)")
    ap.add_argument("--workdir", type=Path,
                    help="where the memories are built and kept (default: a temporary folder)")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--no-service", action="store_true",
                    help="only the floor and the queries done without the service")
    a = ap.parse_args()
    tmp = None
    if a.workdir is None:
        tmp = tempfile.TemporaryDirectory()
        a.workdir = Path(tmp.name)
    a.workdir.mkdir(parents=True, exist_ok=True)
    try:
        homes = [memory(a.workdir, n) for n in a.sizes]
        if not a.build_only:
            for home in homes:
                bench_memory(home, a.runs, a.fallback_runs or a.runs, not a.no_service)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
