"""Commit throughput: clips a second that the night's commit (wm.memory.commit.commit_queued,
the function `wm sleep` calls) takes from the queue into the memory, with its baselines
run beside it in the same command.

    .venv/bin/python bench/commit.py                       # 600 clips, 3 repeats, 1 and 2 threads
    .venv/bin/python bench/commit.py --clips 200 --reps 3 --threads 1

A day of real clip files is written first through the recorder's own writer
(wm.capture.writer.write_clip): 640x480 JPEG stills at the default quality, 3 s WAVs,
and a small mp4 each (the commit only checks that the mp4 is there). The models are the
default sizes with random weights: the same arithmetic per clip as a trained version.
Each repeat empties the memory, queues every clip again and commits them all.

Beside every repeat, at the same thread count:
- decode only: every clip's media read as the commit reads them (wm.memory.reading), no
  model: the floor the commit cannot go under without reading less;
- matmul: fp32 1024x1024 torch.mm GFLOP/s on one thread, timed just before and after the
  commit: on this shared machine a core's speed moves by 2x between minutes, so each
  commit figure is read next to the machine's speed at that moment ("at 71 GFLOP/s": the
  commit's rate scaled to this machine's quiet 1-thread matmul rate, an estimate).
Medians over the repeats; the load average is printed for each."""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import torch

from wm.base import config
from wm.base.clipids import clip_id
from wm.base.config import Settings
from wm.base.manifest import Source
from wm.base.paths import Paths
from wm.base.queue import Queue
from wm.capture.writer import ClipMedia, write_clip
from wm.demo.synth import scene_sound, scene_still
from wm.learn.encoders import Encoders
from wm.learn.models import ModelConfig, build_models
from wm.memory import reading
from wm.memory.commit import COMMIT_BATCH, commit_queued

DAY = "2025-03-04"
PER_DAY = 16 * 3600 // 3          # clips in 16 hours of recording
STILL = (480, 640)                # what the recorder writes by default
VIDEO = (120, 160)                # the mp4 is not read by the commit: small keeps set-up short
QUIET_GFLOPS = 71.0               # 1-thread matmul rate of this machine in a quiet minute


@dataclass
class Rep:
    threads: int
    load: float
    commit_s: float
    decode_s: float
    gflops: float
    committed: int


def make_day(settings: Settings, paths: Paths, n: int) -> list[tuple]:
    """n clips written as the recorder writes them; (manifest, relative path) each."""
    cap = settings.capture
    rng = np.random.default_rng(0)
    start = datetime(2025, 3, 4, 8, 0, tzinfo=timezone.utc)
    reps = max(1, cap.video_fps // cap.frame_rate)
    out = []
    for k in range(n):
        scene = (k // 10) % 4          # visits of 30 s to four places
        stills = [scene_still(scene, rng, STILL) for _ in range(cap.clip_seconds * cap.frame_rate)]
        small = [cv2.resize(s, VIDEO[::-1], interpolation=cv2.INTER_AREA) for s in stills]
        t0 = start + timedelta(seconds=k * cap.clip_seconds)
        media = ClipMedia(cid=clip_id(t0), date=DAY, start=t0, duration=float(cap.clip_seconds),
                          audio=scene_sound(scene, rng, cap.clip_seconds, cap.sample_rate),
                          video=[f for f in small for _ in range(reps)], stills=stills,
                          source=Source(kind="file", name="bench", offset=k * cap.clip_seconds))
        m = write_clip(paths, media, clip_seconds=cap.clip_seconds, sample_rate=cap.sample_rate,
                       video_fps=cap.video_fps, jpeg_quality=cap.jpeg_quality)
        out.append((m, str(paths.manifest(DAY, m.id).relative_to(paths.data))))
    return out


def matmul_gflops() -> float:
    """One core's speed now: fp32 1024x1024 torch.mm on one thread, median of 5."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        rates.append(2 * 1024 ** 3 / (time.perf_counter() - t) / 1e9)
    torch.set_num_threads(threads)
    return statistics.median(rates)


def decode_only(paths: Paths, day: list[tuple]) -> float:
    """Seconds to read every clip's media as the commit reads them, on one thread."""
    t = time.perf_counter()
    for _, rel in day:
        clip, _, _ = reading.read_manifest(paths, rel)
        assert reading.read_media(paths, clip).verdict == reading.OK
    return time.perf_counter() - t


def one_rep(settings: Settings, paths: Paths, day: list[tuple], encoders, threads: int,
            batch: int) -> Rep:
    torch.set_num_threads(threads)
    shutil.rmtree(paths.root / "memory", ignore_errors=True)
    q = Queue(paths.memory_db)
    for m, rel in day:
        q.enqueue(m, rel)
    q.close()
    load = float(Path("/proc/loadavg").read_text().split()[0])
    decode_s = decode_only(paths, day)
    before = matmul_gflops()
    t = time.perf_counter()
    r = commit_queued(settings, paths, encoders, lambda: False, batch=batch)
    commit_s = time.perf_counter() - t
    after = matmul_gflops()
    return Rep(threads, load, commit_s, decode_s, (before + after) / 2, r.committed)


def report(reps: list[Rep], n: int) -> None:
    print(f"\n{'threads':>7} {'commit clips/s':>15} {'s/clip':>7} {'16-h day':>9}"
          f" {'decode-only clips/s':>20} {'matmul GFLOP/s':>15} {'at 71 GFLOP/s':>14} {'load':>10}")
    for threads in sorted({r.threads for r in reps}):
        mine = [r for r in reps if r.threads == threads]
        rate = statistics.median(r.committed / r.commit_s for r in mine)
        decode = statistics.median(n / r.decode_s for r in mine)
        gf = statistics.median(r.gflops for r in mine)
        # the commit scaled to a quiet core: comparable between runs made at different
        # loads (an estimate, not a measurement)
        quiet = statistics.median(r.committed / r.commit_s * QUIET_GFLOPS / r.gflops for r in mine)
        loads = "-".join(f"{x:.1f}" for x in (min(r.load for r in mine), max(r.load for r in mine)))
        print(f"{threads:>7} {rate:>15.2f} {1 / rate:>7.3f} {PER_DAY / rate / 60:>7.0f} m"
              f" {decode:>20.0f} {gf:>15.1f} {quiet:>14.2f} {loads:>10}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=600)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=COMMIT_BATCH, help="clips per commit batch")
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    a = ap.parse_args()
    settings = config.load(None)
    j = settings.learn.jepa
    print(f"commit of {a.clips} clips (640x480 stills, 3 s audio), models at the default sizes"
          f" with random weights (JEPA {j.image_size} px, depth {j.depth}, width {j.width};"
          f" CPC hidden {settings.learn.cpc.hidden}), batch {a.batch}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        paths = Paths(Path(tmp))
        t = time.perf_counter()
        day = make_day(settings, paths, a.clips)
        print(f"day written in {time.perf_counter() - t:.0f} s")
        encoders = Encoders(build_models(ModelConfig.from_settings(settings), 0), "bench",
                            torch.device("cpu"))
        reps = []
        for i in range(a.reps):
            for threads in a.threads:
                r = one_rep(settings, paths, day, encoders, threads, a.batch)
                assert r.committed == a.clips, r
                print(f"rep {i} threads {threads}: {r.committed / r.commit_s:.2f} clips/s,"
                      f" decode-only {a.clips / r.decode_s:.0f} clips/s, matmul {r.gflops:.1f}"
                      f" GFLOP/s, load {r.load:.2f}", flush=True)
                reps.append(r)
        report(reps, a.clips)


if __name__ == "__main__":
    main()
