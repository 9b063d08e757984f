"""`wm demo`: a made-up day through the whole pipeline, in a throw-away WM_HOME.

A short recording of four made-up places, each with its own look and its own sound,
visited in a known order, is played as a live camera and microphone at ten times real
speed. The watcher queues every clip; a sleep cycle with small, fast models trains and
commits the clips to memory; then the memory is asked by new pictures, new sounds and
taught words, and every answer is checked against the schedule the recording was made
from. Nothing is staged: a model that fails to tell the places apart shows as a low hit
rate, and the demo says so. The user's own settings and data are never read or written."""
from __future__ import annotations

import json
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.demo import output, pipeline
from wm.demo.day import PLACES, SCHEDULE, VISIT_SECONDS, make_recording
from wm.demo.folder import DemoFolder, prepare_folder
from wm.demo.output import say, stage, took
from wm.demo.questions import example_clips, queries, truth, write_sheets
from wm.demo.scorecard import scorecard
from wm.demo.settings import SPEED, TOPK, isolated
from wm.demo.summary import Summary


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
        output.where_next(summary, folder, keep)
    finally:
        if not keep:
            shutil.rmtree(folder.root, ignore_errors=True)
    return 0


def demo(settings, paths: Paths, folder: DemoFolder, started: float) -> Summary:
    s = Summary(folder=str(folder.root), home=str(paths.root), config=str(folder.config),
                recording=str(folder.recording), places=list(PLACES),
                visits=[PLACES[v] for v in SCHEDULE.visits], visit_seconds=SCHEDULE.visit_seconds,
                speed=SPEED)
    output.intro(folder, paths)
    _make_day(s, settings, folder)
    _record(s, settings, paths, folder)
    _sleep(s, settings, paths)
    where = _teach(s, settings, paths)
    _ask(s, settings, paths, folder, where)
    s.seconds = round(time.monotonic() - started, 1)
    return s


def _timed(s: Summary, name: str, t0: float) -> None:
    s.stage_seconds[name] = round(time.monotonic() - t0, 1)


def _make_day(s: Summary, settings, folder: DemoFolder) -> None:
    t0 = stage(1, f"Making a {SCHEDULE.seconds / 60:g}-minute recording of a day in"
                  f" {len(PLACES)} places")
    say(f"    {', '.join(PLACES)}: each has its own look and sound. As in a real recording, the")
    say("    camera drifts and shakes, people walk past, the light and colours change, and the")
    say("    sound's level wanders, with knocks, voices and clatter that belong to no place")
    for line in textwrap.wrap(" ".join(s.visits), 80, initial_indent=f"the day, {VISIT_SECONDS:g} s"
                              " a visit: ", subsequent_indent="  "):
        say(f"    {line}")
    make_recording(folder.recording, settings)
    _timed(s, "recording", t0)
    say(f"    wrote {folder.recording} in {took(t0)}")


def _record(s: Summary, settings, paths: Paths, folder: DemoFolder) -> None:
    t0 = stage(2, f"Recording it as if live: the file plays as camera and microphone at"
                  f" {SPEED:g}x speed; the watcher queues each clip")
    s.clips_written, s.clips_queued = pipeline.capture(settings, paths, folder)
    _timed(s, "capture", t0)
    days = sorted(p.name for p in paths.clips_root.iterdir() if p.is_dir())
    s.date = days[-1] if days else ""
    say(f"    {s.clips_written} clips of {settings.capture.clip_seconds} s written to"
        f" {paths.clips_root}, {s.clips_queued} queued, in {took(t0)}")
    if not s.clips_queued:
        raise WmError(f"the recording gave no clips to learn from (see {paths.log_file})")


def _sleep(s: Summary, settings, paths: Paths) -> None:
    from wm.memory.store import Store

    t0 = stage(3, "Sleeping on it: JEPA learns to see, CPC to hear, the alignment ties sight"
                  " to sound; then the clips go into memory")
    pipeline.sleep(settings, paths)
    _timed(s, "sleep", t0)
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


def _teach(s: Summary, settings, paths: Paths) -> dict[str, int]:
    """Label one example clip per place; returns where each clip in memory is from."""
    stage(4, "Teaching words: one example clip of each place")
    where = truth(paths)
    s.examples = example_clips(paths, where)
    pipeline.teach(settings, paths, s.examples)
    return where


def _ask(s: Summary, settings, paths: Paths, folder: DemoFolder, where: dict[str, int]) -> None:
    t0 = stage(5, f"Asking the memory; each answer is checked against the day's schedule (top"
             f" {TOPK}, ✓ = really from that place)")
    s.queries, detailed = queries(settings, paths, folder, where, s.examples)
    sheets = write_sheets(paths, folder, detailed)
    s.contact_sheets = [str(p) for p in sheets]
    output.show_answers(detailed, sheets)
    s.scores = scorecard(s.queries)
    output.show_scores(s.scores)
    _timed(s, "queries", t0)
