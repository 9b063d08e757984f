"""Soak: kill wm at random moments and check that nothing is lost that was promised.

    .venv/bin/python bench/faults.py                  # 50 trials
    .venv/bin/python bench/faults.py --trials 5       # a quick look

One data root lives through every trial. Each trial starts `wm run` recording from a
loopback camera (MJPEG over HTTP) and a loopback microphone (a PulseAudio null sink),
then starts, at random, a `wm ingest` of a short recording and/or a `wm sleep` with tiny
models, waits a random 1-12 s and SIGKILLs one of those processes at random (a crash at
any write step). The others are stopped as a user would (SIGINT), and about one trial in
three then lets a night run to its end so the memory grows. Then:

- committed memories: every clip the memory held before the trial must still be there;
- `wm check` lists what the crash left; `wm check --repair` must repair all of it and a
  second `wm check` must find nothing;
- clips lost: clip ids with media but no manifest (the clip in flight) per trial.

Finally every bad input in BAD_INPUTS is run through the real command line, and each must
give a non-zero exit with one line on stderr naming the problem and no traceback.
Needs pulseaudio, pulseaudio-utils and libportaudio2."""
from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import mediagen  # noqa: E402
from loopback import MjpegServer, PulseServer, tone_wav  # noqa: E402

TINY = """
capture: {{camera: "{camera}", microphone: pulse, video_fps: 5}}
daemon: {{night_window: "{window}", check_seconds: 3600}}
learn:
  device: cpu
  threads: 1
  batch_size: 8
  micro_batch: 8
  warmup_steps: 2
  log_every: 1000
  collapse_min_rank: 1.0
  jepa: {{image_size: 48, patch_size: 8, depth: 1, heads: 2, width: 32, predictor_depth: 1,
          predictor_width: 16, steps: 30}}
  cpc: {{n_mels: 32, hop_ms: 20, hidden: 32, prediction_steps: 2, negatives: 8,
         negative_exclusion: 2, steps: 20}}
  align: {{dim: 16, steps: 20}}
"""


@dataclass
class Trial:
    victim: str
    at: float
    clips_lost: int = 0
    memories_lost: int = 0
    found: int = 0
    repaired: int = 0
    left_after_repair: int = 0
    kinds: list[str] = field(default_factory=list)


def wm_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "wm", *args]


def memory_ids(home: Path) -> set[str]:
    db = home / "memory" / "episodic.sqlite"
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(db, timeout=30) as c:
            return {r[0] for r in c.execute("SELECT DISTINCT clip_id FROM memory_clips")}
    except sqlite3.OperationalError:        # no memory table yet
        return set()


def check(env: dict, *extra: str) -> tuple[int, str]:
    # --grace 0: every wm process of the trial has ended, so all that is unfinished was
    # left by the crash
    p = subprocess.run(wm_argv("check", "--grace", "0", *extra), env=env, capture_output=True, text=True,
                       timeout=600)
    return p.returncode, p.stdout


def count_found(out: str) -> tuple[int, int, int, list[str]]:
    """(found, repaired, left, kinds) from `wm check`'s last line and listing."""
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if "nothing wrong" in last:
        return 0, 0, 0, []
    nums = [int(w) for w in last.replace(",", " ").split() if w.isdigit()]
    kinds = sorted({line.split(":")[0].split(maxsplit=1)[-1] for line in out.splitlines()
                    if line.startswith(("found", "repaired", "FAILED"))})
    return (nums + [0, 0, 0])[:3] + [kinds]


def stop(p: subprocess.Popen, sig=signal.SIGINT, timeout: float = 60) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def trial(env: dict, home: Path, work: Path, rng: random.Random) -> Trial:
    before = memory_ids(home)
    # a new recording each time (the same one again would be skipped as already ingested),
    # long enough that its ingest is still running when the kill comes
    media = mediagen.write(work / f"recording-{rng.randrange(10**9)}.mp4",
                           mediagen.Spec(seconds=20.0, size=(640, 480), tone_hz=rng.uniform(200, 900)))
    procs = {"wm run": subprocess.Popen(wm_argv("run"), env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)}
    time.sleep(rng.uniform(2, 6))
    if rng.random() < 0.6:
        procs["wm ingest"] = subprocess.Popen(
            wm_argv("ingest", str(media), "--date", "2025-02-0%d" % rng.randint(1, 9)), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rng.random() < 0.6:
        procs["wm sleep"] = subprocess.Popen(wm_argv("sleep", "--budget", "40s"), env=env,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    at = rng.uniform(1, 12)
    time.sleep(at)
    victim = rng.choice(sorted(n for n, p in procs.items() if p.poll() is None) or ["wm run"])
    procs[victim].kill()
    procs[victim].wait()
    for name, p in procs.items():
        if name != victim:
            stop(p)
    t = Trial(victim, round(at, 1))
    t.memories_lost = len(before - memory_ids(home))
    if rng.random() < 0.3:
        # a night that runs to its end, so that the memory grows and there is something to lose
        subprocess.run(wm_argv("sleep", "--budget", "60s"), env=env, capture_output=True, timeout=600)
    _, out = check(env)
    t.found, _, _, t.kinds = count_found(out)
    t.clips_lost = len({line.split()[3].rsplit("/", 1)[-1].split("_")[0].split(".")[0]
                        for line in out.splitlines() if line.startswith("found     orphan media")})
    _, out = check(env, "--repair")
    _, t.repaired, _, _ = count_found(out)
    rc, out = check(env)
    t.left_after_repair = count_found(out)[0] if rc else 0
    return t


BAD_INPUTS: list[list[str]] = [
    ["pause", "--for", "nan"], ["pause", "--for", "1e20"], ["sleep", "--budget", "inf"],
    ["logs", "--since", "nan"], ["query", "--at", "1e300 ago"], ["query", "--at", "25:99"],
    ["query", "--image", "{notimage}"], ["query", "--image", "{bomb}"],
    ["query", "--image", "{missing}"], ["query", "--audio", "{notimage}"],
    ["query", "--clip", "not-a-clip"], ["query", "--text", "never-taught"],
    ["ingest", "{fifo}"], ["ingest", "{notimage}"], ["label", "20250101T000000Z", "x"],
    ["query", "--clip", "20250101T000000Z", "--topk", "0"], ["record", "--duration", "-1"],
    ["--config", "{badconfig}", "status"], ["--config", "{missing}", "status"],
]


def bad_inputs(env: dict, work: Path) -> tuple[int, int, list[str]]:
    import zlib

    files = {"notimage": work / "notes.png", "missing": work / "nope.png",
             "bomb": work / "bomb.png", "fifo": work / "pipe.mp4", "badconfig": work / "bad.yaml"}
    files["notimage"].write_text("not a picture")
    ihdr = (50000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    files["bomb"].write_bytes(b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk
                              + zlib.crc32(chunk).to_bytes(4, "big"))
    if not files["fifo"].exists():
        os.mkfifo(files["fifo"])
    files["badconfig"].write_text("memory:\n  topk: .nan\n")
    clean, bad = 0, []
    for argv in BAD_INPUTS:
        args = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
        try:
            p = subprocess.run(wm_argv(*args), env=env, capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            bad.append(f"wm {' '.join(argv)}: hung")
            continue
        lines = [ln for ln in p.stderr.splitlines()
                 if "error:" in ln or ln.startswith("wm:") or "[error" in ln]
        if p.returncode != 0 and len(lines) == 1 and "Traceback" not in p.stderr:
            clean += 1
        else:
            bad.append(f"wm {' '.join(argv)}: exit {p.returncode}, stderr {p.stderr.strip()[-300:]!r}")
    return clean, len(BAD_INPUTS), bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path)
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="wm-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    home, rng = work / "home", random.Random(a.seed)
    with PulseServer(work / "pulse") as pulse, MjpegServer(fps=10) as camera:
        tone = tone_wav(work / "tone.wav", seconds=3600)
        player, _ = pulse.play(tone)
        now = time.localtime()
        window = f"{(now.tm_hour + 12) % 24:02d}:00-{(now.tm_hour + 13) % 24:02d}:00"
        (work / "config.yaml").write_text(TINY.format(camera=camera.url, window=window))
        env = dict(os.environ, WM_HOME=str(home), WM_CONFIG=str(work / "config.yaml"))
        trials = []
        for i in range(a.trials):
            t = trial(env, home, work, rng)
            trials.append(t)
            print(f"trial {i + 1:>2}: killed {t.victim:<9} at {t.at:>4} s; clips lost {t.clips_lost},"
                  f" memories lost {t.memories_lost}; check found {t.found} ({', '.join(t.kinds)}),"
                  f" repaired {t.repaired}, left {t.left_after_repair}", flush=True)
        player.kill()
        clean, total, bad = bad_inputs(env, work)
    print(f"\ntrials {len(trials)}; kills: " + ", ".join(
        f"{v} {sum(t.victim == v for t in trials)}" for v in ("wm run", "wm ingest", "wm sleep")))
    print(f"clips lost: {sum(t.clips_lost for t in trials)} in all, at most {max(t.clips_lost for t in trials)}"
          f" in one trial; memories lost: {sum(t.memories_lost for t in trials)}"
          f" (the memory held {len(memory_ids(home))} clips at the end;"
          f" {len(list((home / 'data' / 'clips').glob('*/*.json')))} clips on disk)")
    print(f"problems found {sum(t.found for t in trials)}, repaired {sum(t.repaired for t in trials)},"
          f" left after repair {sum(t.left_after_repair for t in trials)}")
    print(f"bad inputs: {clean} of {total} gave a clean one-line error")
    for b in bad:
        print("  " + b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
