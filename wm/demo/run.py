"""`wm demo`: a made-up day through the whole pipeline, in a throw-away WM_HOME.

A short recording of four made-up places, each with its own look and its own sound,
visited in a known order, is played as a live camera and microphone at ten times real
speed. The watcher queues every clip; a sleep cycle with small, fast models trains and
commits the clips to memory; then the memory is asked by new pictures, new sounds and
taught words, and every answer is checked against the schedule the recording was made
from. Nothing is staged: a model that fails to tell the places apart shows as a low hit
rate, and the demo says so. The user's own settings and data are never read or written."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from wm.base import config, log
from wm.base.errors import WmError
from wm.base.paths import Paths

PLACES = ("kitchen", "desk", "garden", "street")
SCENES = (0, 1, 4, 3)          # the wm.demo.synth scene that plays each place
# The day, in order (indices of PLACES): every place six times, for two clips each, so the
# memory holds each place under six different lights and sound takes, not one.
VISITS = (2, 3, 0, 1, 2, 0, 1, 3, 2, 1, 3, 0, 3, 0, 2, 1, 3, 0, 1, 2, 1, 2, 0, 3)
VISIT_SECONDS = 6.0
SPEED = 10.0                   # times real time, for the capture
TOPK = 5
# New pictures and new sounds asked for per place: one query's answers mostly stand or
# fall together (its nearest clips are alike), so a hit rate needs several queries.
ASKED = 5
GOOD = 0.8                     # a hit rate below this is called out as only partly learned
SEED = 0
SLEEP_BUDGET_SECONDS = 200.0   # a slow, busy machine trains fewer steps rather than overrun
MARKER = ".wm-demo"            # says a folder is a demo's, which a later demo may clear

# The demo's own small, fast configuration (written to its folder as config.yaml): models
# a 2-core CPU trains in under a minute. Everything else is the shipped defaults.
DEMO_SETTINGS = {
    "capture": {"video_width": 320, "video_height": 240, "video_fps": 10},
    "learn": {
        "device": "cpu", "batch_size": 16, "micro_batch": 16, "warmup_steps": 20,
        "checkpoint_minutes": 60.0, "log_every": 100, "seed": SEED,
        # Four places: an embedding that knows them has an effective rank near 4.
        "collapse_min_rank": 2.0,
        "jepa": {"image_size": 48, "patch_size": 8, "depth": 4, "heads": 4, "width": 128,
                 "predictor_depth": 2, "predictor_width": 64, "steps": 1000, "lr": 0.0003},
        "cpc": {"n_mels": 32, "hop_ms": 20, "hidden": 64, "prediction_steps": 4,
                "negatives": 16, "negative_exclusion": 3, "steps": 200, "lr": 0.001},
        "align": {"dim": 32, "steps": 500, "lr": 0.001},
    },
    "memory": {"topk": TOPK},
    # The demo's few megabytes need not wait for the 2 GB a real day keeps free.
    "retention": {"min_free_gb": 0.2},
}


# -- the day's structure: pure ----------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """Which place the recording shows when: visit k covers [k, k+1) * visit_seconds."""
    visits: tuple[int, ...]
    visit_seconds: float

    @property
    def seconds(self) -> float:
        return len(self.visits) * self.visit_seconds

    def place_at(self, t: float) -> int:
        k = int(max(t, 0.0) // self.visit_seconds)
        return self.visits[min(k, len(self.visits) - 1)]

    def clip_place(self, offset: float, duration: float) -> int:
        """A clip belongs to the place it shows for most of its length: its middle's."""
        return self.place_at(offset + duration / 2)

    def visit_middle(self, place: int) -> float:
        """The middle of the first visit to `place` (where its example clip is taken)."""
        return (self.visits.index(place) + 0.5) * self.visit_seconds


SCHEDULE = Schedule(VISITS, VISIT_SECONDS)


# -- questions and answers ---------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    label: str          # its row in the scorecard
    title: str          # the heading of its query shown in full ({} = the place)
    shown: str | None   # the place whose query is shown in full, if any
    plain: str          # how to say it: "did not learn to tell the places apart ..."


KINDS = {
    "image": Kind("new pictures (--image)", "By picture: a new photo of the {}", "garden",
                  "by sight"),
    "image-shared": Kind("the same, --modality shared", "", None,
                         "by sight through the shared space"),
    "sound": Kind("new sounds (--audio)", "By sound: a new recording of the {}", "street",
                  "by sound"),
    "word": Kind("taught words (--text)", "By taught word: '{}' (its example clip left out)",
                 "kitchen", "by a taught word"),
}


@dataclass
class ResultRow:
    rank: int
    clip_id: str
    score: float
    place: str          # where the clip really is from (the schedule at its offset)
    right: bool


@dataclass
class QueryOutcome:
    kind: str           # a key of KINDS
    place: str          # the right answer
    query: str          # the picture or sound file, or the word
    results: list[ResultRow]
    chance: float       # share of the searched clips that are from `place`
    command: str        # the same query as a command line

    @property
    def right(self) -> int:
        return sum(r.right for r in self.results)


@dataclass
class Score:
    right: int = 0
    asked: int = 0
    chance: float = 0.0  # the hit rate random picks would have

    @property
    def rate(self) -> float:
        return self.right / self.asked if self.asked else 0.0


def scorecard(outcomes: list[QueryOutcome]) -> dict[str, Score]:
    """Hits per kind of query, against the hit rate of random picks from the memory."""
    out: dict[str, Score] = {}
    for o in outcomes:
        s = out.setdefault(o.kind, Score())
        n = len(o.results)
        s.chance = (s.chance * s.asked + o.chance * n) / max(1, s.asked + n)
        s.right += o.right
        s.asked += n
    return out


@dataclass
class Summary:
    """What the demo did and found; written as summary.json for scripts and tests."""
    folder: str
    home: str
    config: str
    recording: str
    places: list[str]
    visits: list[str]
    visit_seconds: float
    speed: float
    date: str = ""
    clips_written: int = 0
    clips_queued: int = 0
    clips_committed: int = 0
    version: str | None = None
    examples: dict[str, str] = field(default_factory=dict)   # word -> its example clip
    queries: list[QueryOutcome] = field(default_factory=list)
    scores: dict[str, Score] = field(default_factory=dict)
    contact_sheets: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        body = asdict(self)
        for q, o in zip(body["queries"], self.queries):
            q["right"] = o.right
        for k, s in self.scores.items():
            body["scores"][k]["rate"] = round(s.rate, 4)
        return json.dumps(body, indent=1, ensure_ascii=False)


# -- the folder -------------------------------------------------------------------------

@dataclass(frozen=True)
class DemoFolder:
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def recording(self) -> Path:
        return self.root / "recording.mp4"

    @property
    def queries(self) -> Path:
        return self.root / "queries"

    @property
    def sheets(self) -> Path:
        return self.root / "sheets"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def mark(self) -> None:
        (self.root / MARKER).write_text("made by `wm demo`; `wm demo --workdir` may clear this"
                                        " folder\n")


def prepare_folder(workdir: Path) -> DemoFolder:
    """A new or empty folder, or an earlier demo's (cleared); never anything else."""
    root = workdir.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise WmError(f"{workdir}: is a file, not a folder for the demo")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise WmError(f"{workdir}: is not empty and holds no earlier demo; give a new or"
                          " empty folder")
        for p in root.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    folder = DemoFolder(root)
    folder.mark()
    return folder


@contextlib.contextmanager
def isolated(folder: DemoFolder) -> Iterator[tuple[config.Settings, Paths]]:
    """The demo's settings and home: WM_HOME and WM_CONFIG point into the demo folder for
    this process and its children, and the log goes to the demo's log file."""
    import torch

    cfg = {**DEMO_SETTINGS, "paths": {"home": str(folder.home)}}
    folder.config.write_text("# wm demo: a small, fast configuration (see wm/demo/run.py)\n"
                             + yaml.safe_dump(cfg, sort_keys=False))
    saved = {k: os.environ.get(k) for k in ("WM_HOME", "WM_CONFIG")}
    threads = torch.get_num_threads()
    os.environ["WM_HOME"], os.environ["WM_CONFIG"] = str(folder.home), str(folder.config)
    # Models this small gain nothing from a second thread, and on a busy machine threads
    # that wait for each other made every training step ten times slower.
    torch.set_num_threads(1)
    try:
        settings = config.load(folder.config)
        paths = Paths.from_settings(settings)
        # The console shows the demo's own lines; warnings still come through.
        log.setup(paths.log_file, "info", console=False)
        yield settings, paths
    finally:
        log.setup(None, "warning")   # let go of the demo's log file
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- output --------------------------------------------------------------------------------

def say(text: str = "") -> None:
    print(text, flush=True)


def stage(n: int, text: str) -> float:
    say(f"\n[{n}/6] {text}")
    return time.monotonic()


def took(t0: float) -> str:
    return f"{time.monotonic() - t0:.0f} s"


def show(o: QueryOutcome, width: int = 9) -> None:
    say(f"    {'rank':>4}  {'score':>6}  {'clip':<18}  {'really from':<{width}}")
    for r in o.results:
        say(f"    {r.rank:>4}  {r.score:>6.3f}  {r.clip_id:<18}  {r.place:<{width}}  "
            f"{'✓' if r.right else '✗'}")
    say(f"    {o.right} of {len(o.results)} right (random picks: {o.chance:.0%})")


# -- the stages ----------------------------------------------------------------------------

def make_recording(folder: DemoFolder, settings) -> None:
    from wm.demo.synth import write_recording

    cap = settings.capture
    # Twice the size the clips keep, as a camera delivers more than is stored.
    write_recording(folder.recording, SCHEDULE.seconds, [SCENES[v] for v in SCHEDULE.visits],
                    SCHEDULE.visit_seconds, seed=SEED, fps=cap.video_fps,
                    size=(cap.video_height * 2, cap.video_width * 2))


def capture(settings, paths: Paths, folder: DemoFolder) -> tuple[int, int]:
    """Record the file as a live source while the watcher queues what lands; returns
    (clips written, clips queued)."""
    from wm.base.progress import Progress
    from wm.base.queue import Queue
    from wm.capture.recorder import Recorder
    from wm.daemon.watcher import Watcher

    watcher = Watcher(settings, paths)
    watcher.start()
    rec = Recorder(settings, paths, source_file=folder.recording, speed=SPEED)
    bar = Progress(SCHEDULE.seconds, "recording", unit="s")
    try:
        rec.start()
        while not rec.wait(0.25):
            clips = rec.health().clips_written
            bar.update(max(0.0, clips * settings.capture.clip_seconds - bar.done), f"{clips} clips")
    finally:
        rec.stop()
        bar.close()
        watcher.stop()
    q = Queue(paths.memory_db)
    try:
        queued = q.counts()["queued"]
    finally:
        q.close()
    return rec.health().clips_written, queued


def sleep(settings, paths: Paths) -> None:
    from wm.nightly.run import run_sleep

    # Ctrl-C during the cycle makes it checkpoint and return 130: stop the demo there too.
    if run_sleep(settings, paths, date=None, budget_seconds=SLEEP_BUDGET_SECONDS) == 130:
        raise KeyboardInterrupt


def manifests(paths: Paths, state: str | None = None) -> dict:
    """Clip id -> manifest, for the clips in the queue (in `state`)."""
    from wm.base.manifest import Manifest
    from wm.base.queue import Queue

    q = Queue(paths.memory_db)
    try:
        items = q.items(state=state)
    finally:
        q.close()
    return {i.clip_id: Manifest.read(paths.data / i.manifest) for i in items}


def truth(paths: Paths) -> dict[str, int]:
    """Where each clip in the memory is really from: its offset in the recording (from its
    manifest) looked up in the schedule the recording was made from."""
    from wm.base.queue import COMMITTED

    return {cid: SCHEDULE.clip_place(m.source.offset, m.duration)
            for cid, m in manifests(paths, COMMITTED).items()}


def example_clips(paths: Paths, where: dict[str, int]) -> dict[str, str]:
    """Word -> the clip nearest the middle of its place's first visit."""
    found = manifests(paths)
    out = {}
    for place, name in enumerate(PLACES):
        mid = SCHEDULE.visit_middle(place)
        out[name] = min((c for c, p in where.items() if p == place),
                        key=lambda c: abs(found[c].source.offset + found[c].duration / 2 - mid))
    return out


def ask(settings, paths: Paths, where: dict[str, int], kind: str, place: int, req,
        query: str, command: str, skip: frozenset[str] = frozenset()):
    """Run one query and check every result against where its clip is really from; returns
    the outcome and the memory's answer (for its contact sheet)."""
    from wm.memory.query import answer

    ans = answer(settings, paths, req)
    ans = replace(ans, groups=[replace(g, hits=[h for h in g.hits if h.clip.clip_id not in skip][:TOPK])
                               for g in ans.groups])
    hits = [h for g in ans.groups for h in g.hits][:TOPK]
    rows = [ResultRow(i, h.clip.clip_id, round(float(h.score), 4), PLACES[where[h.clip.clip_id]],
                      where[h.clip.clip_id] == place) for i, h in enumerate(hits, 1)]
    pool = [p for c, p in where.items() if c not in skip]
    chance = sum(p == place for p in pool) / max(1, len(pool))
    return QueryOutcome(kind, PLACES[place], query, rows, round(chance, 4), command), ans


def queries(settings, paths: Paths, folder: DemoFolder, where: dict[str, int],
            examples: dict[str, str]) -> tuple[list[QueryOutcome], list[tuple[QueryOutcome, object]]]:
    """Every place asked for by new pictures (ranked two ways), new sounds and its taught
    word. Returns all outcomes, and those shown in full with their answers (see KINDS)."""
    import cv2

    from wm.base.media import write_wav
    from wm.demo.synth import scene_sound, scene_still
    from wm.memory.query import QueryRequest

    rng = np.random.default_rng([SEED, 1])   # a new draw: no frame or sound of the recording
    rate = settings.capture.sample_rate
    folder.queries.mkdir(exist_ok=True)
    outcomes, detailed = [], []

    def run(kind, place, req, query, command, skip=frozenset()):
        o, ans = ask(settings, paths, where, kind, place, req, query, command, skip)
        outcomes.append(o)
        if KINDS[kind].shown == o.place and not any(d.kind == kind for d, _ in detailed):
            detailed.append((o, ans))

    for place, name in enumerate(PLACES):
        for k in range(1, ASKED + 1):
            picture, sound = folder.queries / f"{name}-{k}.jpg", folder.queries / f"{name}-{k}.wav"
            cv2.imwrite(str(picture), scene_still(SCENES[place], rng, (480, 640)))
            write_wav(sound, scene_sound(SCENES[place], rng, 4.0, rate), rate)
            run("image", place, QueryRequest(image=picture, topk=TOPK), str(picture),
                f"wm query --image {picture}")
            run("image-shared", place, QueryRequest(image=picture, modality="shared", topk=TOPK),
                str(picture), f"wm query --image {picture} --modality shared")
            run("sound", place, QueryRequest(audio=sound, topk=TOPK), str(sound),
                f"wm query --audio {sound}")
        # The example itself comes back first; it is no answer, so it is left out.
        run("word", place, QueryRequest(text=name, topk=TOPK + 1), name,
            f"wm query --text {name}", frozenset([examples[name]]))
    detailed.sort(key=lambda d: list(KINDS).index(d[0].kind))
    return outcomes, detailed


def write_sheets(paths: Paths, folder: DemoFolder, detailed) -> list[Path]:
    from wm.memory.query import write_sheet

    folder.sheets.mkdir(exist_ok=True)
    out = []
    for o, ans in detailed:
        target = folder.sheets / f"{o.kind}-{o.place}.jpg"
        write_sheet(paths, ans, target)
        out.append(target)
    return out


# -- the whole demo ------------------------------------------------------------------------

def run_demo(workdir: Path | None, keep: bool) -> int:
    started = time.monotonic()
    if workdir is None:
        folder = DemoFolder(Path(tempfile.mkdtemp(prefix="wm-demo-")))
        folder.mark()
    else:
        folder = prepare_folder(workdir)
        keep = True    # a folder the user named is theirs to delete
    try:
        with isolated(folder) as (settings, paths):
            summary = demo(settings, paths, folder, started)
        folder.summary.write_text(summary.to_json())
        where_next(summary, folder, keep)
    finally:
        if not keep:
            shutil.rmtree(folder.root, ignore_errors=True)
    return 0


def demo(settings, paths: Paths, folder: DemoFolder, started: float) -> Summary:
    from wm.memory.labels import run_label
    from wm.memory.store import Store

    s = Summary(folder=str(folder.root), home=str(paths.root), config=str(folder.config),
                recording=str(folder.recording), places=list(PLACES),
                visits=[PLACES[v] for v in SCHEDULE.visits], visit_seconds=SCHEDULE.visit_seconds,
                speed=SPEED)
    say("wm demo: a made-up day is recorded, slept on and searched by the real pipeline"
        " (about 2 minutes).")
    say(f"  demo folder: {folder.root}")
    say(f"  its WM_HOME: {paths.root}   (your own settings and recordings are not touched)")

    t0 = stage(1, f"Making a {SCHEDULE.seconds / 60:g}-minute recording of a day in"
                  f" {len(PLACES)} places")
    say(f"    {', '.join(PLACES)}: each has its own look and sound; the light, the colours,")
    say("    where things stand, and the sound's pitch and loudness change from moment to moment")
    for line in textwrap.wrap(" ".join(s.visits), 80, initial_indent=f"the day, {VISIT_SECONDS:g} s"
                              " a visit: ", subsequent_indent="  "):
        say(f"    {line}")
    make_recording(folder, settings)
    s.stage_seconds["recording"] = round(time.monotonic() - t0, 1)
    say(f"    wrote {folder.recording} in {took(t0)}")

    t0 = stage(2, f"Recording it as if live: the file plays as camera and microphone at"
                  f" {SPEED:g}x speed; the watcher queues each clip")
    s.clips_written, s.clips_queued = capture(settings, paths, folder)
    s.stage_seconds["capture"] = round(time.monotonic() - t0, 1)
    days = sorted(p.name for p in paths.clips_root.iterdir() if p.is_dir())
    s.date = days[-1] if days else ""
    say(f"    {s.clips_written} clips of {settings.capture.clip_seconds} s written to"
        f" {paths.clips_root}, {s.clips_queued} queued, in {took(t0)}")
    if not s.clips_queued:
        raise WmError(f"the recording gave no clips to learn from (see {paths.log_file})")

    t0 = stage(3, "Sleeping on it: JEPA learns to see, CPC to hear, the alignment ties sight"
                  " to sound; then the clips go into memory")
    sleep(settings, paths)
    s.stage_seconds["sleep"] = round(time.monotonic() - t0, 1)
    with Store(paths) as store:
        s.clips_committed = store.count()
        versions = store.versions()
    s.version = versions[-1] if versions else None
    if not s.clips_committed:
        notes = json.loads(paths.last_sleep_file.read_text()).get("stages", {})
        raise WmError("the sleep cycle put no clip into memory ("
                      + "; ".join(f"{k}: {v}" for k, v in notes.items() if k in ("evaluation", "commit"))
                      + f"); see {paths.log_file}")
    say(f"    model version {s.version}; {s.clips_committed} clips in memory, in {took(t0)}")

    t0 = stage(4, "Teaching words: one example clip of each place")
    where = truth(paths)
    s.examples = example_clips(paths, where)
    for name, clip in s.examples.items():
        say(f"    $ wm label {clip} {name}")
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            run_label(settings, paths, clip, name)
        for line in said.getvalue().splitlines():
            say(f"    {line}")

    t0 = stage(5, f"Asking the memory; each answer is checked against the day's schedule (top"
             f" {TOPK}, ✓ = really from that place)")
    s.queries, detailed = queries(settings, paths, folder, where, s.examples)
    sheets = write_sheets(paths, folder, detailed)
    s.contact_sheets = [str(p) for p in sheets]
    for (o, _), sheet in zip(detailed, sheets):
        say(f"\n  {KINDS[o.kind].title.format(o.place)}")
        say(f"    $ {o.command} --show {sheet}")
        show(o)
    s.scores = scorecard(s.queries)
    say(f"\n  Every place asked for with {ASKED} new pictures and {ASKED} new sounds, and by its"
        f" word (top {TOPK} each):")
    for kind, sc in s.scores.items():
        say(f"    {KINDS[kind].label:<28} {sc.right:>3} of {sc.asked:>3} right ({sc.rate:4.0%});"
            f" random picks: {sc.chance:.0%}")
    say("    (--modality shared ranks a picture against clips as seen and heard, in the space"
        " the alignment learned)")
    weak = [KINDS[k].plain for k, sc in s.scores.items() if sc.rate < 2 * sc.chance]
    partly = [KINDS[k].plain for k, sc in s.scores.items() if 2 * sc.chance <= sc.rate < GOOD]
    if weak:
        say(f"    Honestly: this short night did not learn to tell the places apart"
            f" {' or '.join(weak)} (less than twice what random picks get).")
    if partly:
        say(f"    Honestly: asked {' and '.join(partly)}, it tells some places apart but mixes others up"
            f" (right less than {GOOD:.0%} of the time): the demo's vision model is tiny (48 px)"
            f" and trained for about a minute on 144 stills.")
    s.stage_seconds["queries"] = round(time.monotonic() - t0, 1)
    s.seconds = round(time.monotonic() - started, 1)
    return s


def where_next(s: Summary, folder: DemoFolder, keep: bool) -> None:
    home = Paths(Path(s.home))
    rel = lambda p: os.path.relpath(p, folder.root)  # noqa: E731
    if not keep:
        stage(6, f"Done in {s.seconds:.0f} s. The demo folder was temporary and is deleted now:"
                 " `wm demo --keep` (or `--workdir DIR`) keeps its recording, clips, memory,"
                 " models, report, contact sheets and log to look around in.")
    else:
        stage(6, f"Done in {s.seconds:.0f} s. Where everything is:")
        rows = [
            ("demo folder", str(folder.root)),
            ("recording", rel(folder.recording)),
            # A demo run across midnight files its clips under two days: name the roots.
            ("clips", f"{rel(home.clips_root)}/DAY/  (video + manifest; stills in"
                      f" {rel(home.frames_dir('DAY'))}/, sound in {rel(home.audio_dir('DAY'))}/)"),
            ("memory", f"{rel(home.memory_db)} and {rel(home.embeddings)}/"),
            ("models", f"{rel(home.daily_checkpoint_dir(s.date))}/"),
            ("report", f"{rel(home.report(s.date))} and {rel(home.report(s.date, 'png'))}"),
            ("contact sheets", ", ".join(rel(p) for p in s.contact_sheets)),
            ("questions", f"{rel(folder.queries)}/  (the new pictures and sounds asked with)"),
            ("log", rel(home.log_file)),
            ("summary", f"{rel(folder.summary)}  (every answer and where it is really from)"),
            ("settings", f"{rel(folder.config)}  (small, fast models)"),
        ]
        for name, where in rows:
            say(f"    {name:<15} {where}")
        say("\n  Look around in it (the demo's memory, as any other):")
        say(f"    WM_HOME={home.root} wm status")
        say(f"    WM_HOME={home.root} wm query --image {folder.queries / 'garden-1.jpg'}"
            f" --show {folder.root / 'my-sheet.jpg'}")
        say(f"    WM_HOME={home.root} wm query --text street --show {folder.root / 'street.jpg'}")
    say("\n  Record your own days:")
    say("    wm devices              # the cameras and microphones wm can see")
    say("    wm record --duration 1m # try them: a minute of clips")
    say("    wm service install      # record always, sleep on it at night")
    say("    wm query --image PHOTO  # the next morning: when did I see this?")
