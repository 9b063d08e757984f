"""Does a night of learning beat features that need none, on real footage?

    .venv/bin/python bench/learn.py                         # 1 seed, a 20-minute night
    .venv/bin/python bench/learn.py --seeds 0 1 2 3 4 --budgets 20 40 60 --second-night
    .venv/bin/python bench/learn.py --budgets 0             # no training: version 0 only
    .venv/bin/python bench/learn.py --seeds 1 2 --steps 752 243 2000   # steps, not minutes

--steps trains a fixed number of steps per stage (JEPA, CPC, alignment) with no time
budget: the figures then do not depend on how busy the machine is (a 20-minute night on
this 2-core VM trained 752 / 243 / 2,000 steps at load 2-3.5, and a fifth of that at
load 8), at the price of taking as long as those steps take.

For each seed and budget: a labelled day composed from ../shared/media (bench/realday.py:
five places, real footage with a real sound, revisited in a shuffled order with zoom,
brightness, gain and noise jitter) goes through the real command line into a fresh data
root: `wm ingest FILES --date D`, then `wm sleep --date D --budget B`, then one real
`wm query` per kind of question as a check. Precision@5 (same place among the top 5,
the query clip excluded) is then measured for every clip with each embedder on the same
clips, ranked by cosine as the memory ranks them:

  audio->video   the clip's sound against the others' pictures (shared space)
  image->image   one still of the clip against the others' pictures
  audio->audio   the clip's sound against the others' sounds

next to chance, version 0 (wm/learn/fixed.py), random weights (as they are, and centred
on the day as a night's version is) and the night's model (promoted or not; the table
says which). With --second-night a second day is learned
on top and the first day's precision is measured again. Figures go to stdout and to
bench/out/learn-*.json; BENCHMARKS.md quotes them with this command."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import torch  # noqa: E402
from realday import Visit, compose_day  # noqa: E402

from wm.base import config  # noqa: E402
from wm.base.manifest import Manifest  # noqa: E402
from wm.base.paths import Paths  # noqa: E402
from wm.learn.encoders import Encoders, load_encoders  # noqa: E402
from wm.learn.fixed import FixedEncoders  # noqa: E402
from wm.learn.models import ModelConfig, build_models  # noqa: E402
from wm.learn.versions import all_versions  # noqa: E402
from wm.memory.clips import Clip  # noqa: E402
from wm.memory.commit import read_media  # noqa: E402

DAYS = ("2025-03-10", "2025-03-11")
QUESTIONS = ("audio->video", "image->image", "audio->audio")


@dataclass
class Row:
    seed: int
    budget_min: float
    night: int
    embedder: str
    promoted: bool | None
    clips: int
    precision: dict[str, float | None]
    steps: str = ""          # "J/C/A" when trained by steps rather than by a budget


def wm(home: Path, cfg: Path, *args: str) -> str:
    env = dict(os.environ, WM_HOME=str(home), WM_CONFIG=str(cfg))
    p = subprocess.run([sys.executable, "-m", "wm", *args], env=env, capture_output=True, text=True)
    if p.returncode not in (0, 3):
        raise SystemExit(f"wm {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    return p.stdout


def day_clips(paths: Paths, day: str, visits: list[Visit]) -> tuple[list[Clip], np.ndarray]:
    """The day's clips with each one's place (the visit its start falls in)."""
    clips, labels = [], []
    for path in sorted(paths.clips_dir(day).glob("*.json")):
        m = Manifest.read(path)
        start = datetime.fromisoformat(m.start).timestamp()
        for v in visits:
            if v.start.timestamp() - 1 <= start < v.start.timestamp() + v.seconds:
                clips.append(Clip.from_manifest(m, str(path.relative_to(paths.data))))
                labels.append(v.place)
                break
    return clips, np.asarray(labels)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def precision_at_5(queries: np.ndarray, keys: np.ndarray, labels: np.ndarray) -> float | None:
    if np.isnan(queries).any() or np.isnan(keys).any():
        return None
    sim = _unit(queries) @ _unit(keys).T
    np.fill_diagonal(sim, -np.inf)
    top = np.argsort(-sim, axis=1)[:, :5]
    return float((labels[top] == labels[:, None]).mean())


def chance(labels: np.ndarray) -> float:
    same = (labels[:, None] == labels[None, :]).sum(1) - 1
    return float((same / (len(labels) - 1)).mean())


def evaluate(embedder, paths: Paths, clips: list[Clip], labels: np.ndarray) -> dict:
    loaded = [read_media(paths, c) for c in clips]
    emb = embedder.embed_clips([x.stills for x in loaded], [x.audio for x in loaded])
    stills = [cv2.imread(str(paths.data / c.frames[min(1, len(c.frames) - 1)])) for c in clips]
    image_q = np.concatenate([embedder.embed_image(s).video for s in stills])
    return {"audio->video": precision_at_5(emb.shared_audio, emb.shared_video, labels),
            "image->image": precision_at_5(image_q, emb.video, labels),
            "audio->audio": precision_at_5(emb.audio, emb.audio, labels)}


def centre_on_day(enc: Encoders, paths: Paths, clips: list[Clip]) -> None:
    loaded = [read_media(paths, c) for c in clips]
    emb = enc.embed_clips([x.stills for x in loaded], [x.audio for x in loaded])
    with torch.no_grad():
        enc.models.video_mean += torch.from_numpy(np.nanmean(emb.video, 0))
        enc.models.audio_mean += torch.from_numpy(np.nanmean(emb.audio, 0))


def night(home: Path, cfg: Path, media: Path, day: str, budget_min: float, visits: int,
          seed: int, by_steps: bool = False) -> list[Visit]:
    vs = compose_day(media / day, day, visits, seed=1000 * seed + int(day[-2:]))
    wm(home, cfg, "ingest", *[str(v.path) for v in vs], "--date", day)
    if budget_min > 0 or by_steps:
        t0 = time.monotonic()
        limit = [] if by_steps else ["--budget", f"{budget_min}m"]
        out = wm(home, cfg, "sleep", "--date", day, *limit)
        print(f"    night {day}: {time.monotonic() - t0:.0f} s\n      " + out.strip().replace("\n", "\n      "))
    return vs


def run_one(seed: int, budget_min: float, visits: int, second: bool, work: Path,
            steps: list[int] | None = None) -> list[Row]:
    label = "-".join(map(str, steps)) if steps else f"{budget_min}"
    home, media = work / f"home-{seed}-{label}", work / f"media-{seed}"
    cfg = work / f"config-{seed}-{label}.yaml"
    # The composed days are in the past: retention must not delete their media before
    # the figures are measured on them.
    stages = "".join(f"  {k}:\n    steps: {n}\n" for k, n in zip(("jepa", "cpc", "align"), steps or []))
    cfg.write_text(f"learn:\n  seed: {seed}\n{stages}retention:\n  raw_days: 36500\n")
    by_steps = steps is not None
    settings = config.load(cfg)
    paths = Paths(home)
    torch.manual_seed(seed)
    v1 = night(home, cfg, media, DAYS[0], budget_min, visits, seed, by_steps)
    clips, labels = day_clips(paths, DAYS[0], v1)
    for q in ("--image", "--audio") if budget_min > 0 or by_steps else ():   # the real CLI answers (a check)
        sample = clips[0]
        arg = sample.frames[0] if q == "--image" else sample.audio
        wm(home, cfg, "query", q, str(paths.data / arg), "--topk", "5", "--json")
    rows = []
    base = dict(seed=seed, budget_min=0 if by_steps else budget_min, clips=len(clips),
                steps="/".join(map(str, steps)) if steps else "")
    rows.append(Row(**base, night=1, embedder="chance", promoted=None,
                    precision={k: chance(labels) for k in QUESTIONS}))
    rows.append(Row(**base, night=1, embedder="version 0", promoted=None,
                    precision=evaluate(FixedEncoders(settings.capture.sample_rate), paths, clips, labels)))
    rand = Encoders(build_models(ModelConfig.from_settings(settings), seed), "random", torch.device("cpu"))
    rows.append(Row(**base, night=1, embedder="random weights", promoted=None,
                    precision=evaluate(rand, paths, clips, labels)))
    centre_on_day(rand, paths, clips)      # the normalisation a night's version gets
    rows.append(Row(**base, night=1, embedder="random weights, centred", promoted=None,
                    precision=evaluate(rand, paths, clips, labels)))
    versions = all_versions(paths)
    if versions:
        v = versions[-1]
        enc = load_encoders(settings, paths, version=v.version)
        rows.append(Row(**base, night=1, embedder=f"trained {v.version}", promoted=v.promoted,
                        precision=evaluate(enc, paths, clips, labels)))
    if second and (budget_min > 0 or by_steps):
        night(home, cfg, media, DAYS[1], budget_min, visits, seed, by_steps)
        v = all_versions(paths)[-1]
        enc = load_encoders(settings, paths, version=v.version)
        rows.append(Row(**base, night=2, embedder=f"trained {v.version} (day 1 again)",
                        promoted=v.promoted, precision=evaluate(enc, paths, clips, labels)))
    return rows


def show(rows: list[Row]) -> None:
    print(f"{'seed':>4} {'budget':>6} {'night':>5} {'embedder':<34} {'promoted':>8} "
          + " ".join(f"{q:>13}" for q in QUESTIONS))
    for r in rows:
        p = " ".join(f"{r.precision[q]:13.3f}" if r.precision[q] is not None else f"{'-':>13}"
                     for q in QUESTIONS)
        prom = "" if r.promoted is None else ("yes" if r.promoted else "NO")
        limit = r.steps or f"{r.budget_min:g}"
        print(f"{r.seed:>4} {limit:>6} {r.night:>5} {r.embedder:<34} {prom:>8} {p}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[20.0], help="minutes; 0 = no night")
    ap.add_argument("--visits", type=int, default=54, help="visits of 9 s (3 clips each)")
    ap.add_argument("--second-night", action="store_true")
    ap.add_argument("--steps", type=int, nargs=3, metavar=("JEPA", "CPC", "ALIGN"),
                    help="train these steps per stage with no time budget (--budgets is then ignored)")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    a = ap.parse_args()
    if not (ROOT.parent / "shared" / "media").is_dir():
        raise SystemExit("bench/learn.py needs ../shared/media (real footage), which is not here")
    work = a.keep or Path(tempfile.mkdtemp(prefix="wm-learn-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for seed in a.seeds:
        for budget in [0.0] if a.steps else a.budgets:
            print(f"seed {seed}, " + (f"steps {a.steps}" if a.steps else f"budget {budget:g} min"), flush=True)
            rows += run_one(seed, budget, a.visits, a.second_night, work, a.steps)
            show(rows)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"learn-{stamp}.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
