"""The issue's first night, as a new user would have it: the real footage in
../shared/media/video ingested as one day, default settings, a 4-minute night, then
every clip asked for by its first still and by its own sound through the real CLI.

    .venv/bin/python bench/first_night.py                # budget 4 minutes
    .venv/bin/python bench/first_night.py --budget 1     # a night cut to a minute

It prints what `wm sleep` and `wm status` said (which version the memory holds, and the
verdict) and, for every clip: the rank of the clip itself when asked by its first still
(`wm query --image`; it must be first) and by its own sound (`wm query --audio`; it must
be among the top 5). Nothing here is a timed test: the figures go to BENCHMARKS.md."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media" / "video"
DAY = "2025-01-15"


def wm(home: Path, cfg: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, WM_HOME=str(home), WM_CONFIG=str(cfg))
    return subprocess.run([sys.executable, "-m", "wm", *args], env=env, capture_output=True,
                          text=True, cwd=ROOT)


def rank_of(answer: subprocess.CompletedProcess, clip_id: str) -> int | None:
    """The clip's rank among the answers (1 = first), None if absent or no answer."""
    if answer.returncode != 0:
        return None
    ranked = [r["clip_id"] for g in json.loads(answer.stdout)["groups"] for r in g["results"]]
    return ranked.index(clip_id) + 1 if clip_id in ranked else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=4.0, help="minutes of night")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="wm-first-night-"))
    work.mkdir(parents=True, exist_ok=True)
    home, cfg = work / "home", work / "config.yaml"
    # Default settings, but for retention: the day is in the past, and raw media older than
    # retention.raw_days would go right after the commit, before the questions.
    cfg.write_text("retention:\n  raw_days: 36500\n")
    videos = sorted(MEDIA.glob("*.*"))

    ingest = wm(home, cfg, "ingest", *map(str, videos), "--date", DAY)
    print(f"ingest {' + '.join(v.name for v in videos)}: rc {ingest.returncode}\n{ingest.stdout.strip()}")
    t0 = time.monotonic()
    night = wm(home, cfg, "sleep", "--date", DAY, "--budget", f"{args.budget:g}m")
    print(f"\nwm sleep --date {DAY} --budget {args.budget:g}m: rc {night.returncode}, "
          f"{time.monotonic() - t0:.0f} s\n{night.stdout.strip()}")
    print("\nwm status:\n" + wm(home, cfg, "status").stdout.strip())

    manifests = sorted((home / "data" / "clips" / DAY).glob("*.json"))
    firsts, tops = 0, 0
    print("\nclip               still -> rank   sound -> rank")
    for path in manifests:
        m = json.loads(path.read_text())
        by_still = rank_of(wm(home, cfg, "query", "--image", str(home / "data" / m["frames"][0]),
                              "--json"), m["id"])
        by_sound = rank_of(wm(home, cfg, "query", "--audio", str(home / "data" / m["audio"]),
                              "--json"), m["id"])
        firsts += by_still == 1
        tops += by_sound is not None and by_sound <= 5
        print(f"{m['id']}  {by_still or '-':>13}   {by_sound or '-':>13}")
    n = len(manifests)
    print(f"\n{n} clips in memory; a still finds its clip first: {firsts} of {n}; "
          f"its sound finds it in the top 5: {tops} of {n}")
    return 0 if n and firsts == n and tops == n else 1


if __name__ == "__main__":
    sys.exit(main())
