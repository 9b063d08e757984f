"""What the demo prints: its stages, the answers shown in full, the scorecard in words,
and where everything is afterwards."""
from __future__ import annotations

import os
import time
from pathlib import Path

from wm.base.paths import Paths
from wm.demo import scorecard
from wm.demo.folder import DemoFolder
from wm.demo.questions import ASKED, KINDS, QueryOutcome
from wm.demo.settings import TOPK
from wm.demo.summary import Summary


def say(text: str = "") -> None:
    print(text, flush=True)


def stage(n: int, text: str) -> float:
    say(f"\n[{n}/6] {text}")
    return time.monotonic()


def took(t0: float) -> str:
    return f"{time.monotonic() - t0:.0f} s"


def intro(folder: DemoFolder, paths: Paths) -> None:
    say("wm demo: a made-up day is recorded, slept on and searched by the real pipeline"
        " (about 3 minutes).")
    say(f"  demo folder: {folder.root}")
    say(f"  its WM_HOME: {paths.root}   (your own settings and recordings are not touched)")


def show(o: QueryOutcome, width: int = 9) -> None:
    say(f"    {'rank':>4}  {'score':>6}  {'clip':<18}  {'really from':<{width}}")
    for r in o.results:
        say(f"    {r.rank:>4}  {r.score:>6.3f}  {r.clip_id:<18}  {r.place:<{width}}  "
            f"{'✓' if r.right else '✗'}")
    say(f"    {o.right} of {len(o.results)} right (random picks: {o.chance:.0%})")


def show_answers(detailed: list[tuple[QueryOutcome, object]], sheets: list[Path]) -> None:
    """The queries shown in full, each with its command line and contact sheet."""
    for (o, _), sheet in zip(detailed, sheets):
        say(f"\n  {KINDS[o.kind].title.format(o.place)}")
        say(f"    $ {o.command} --show {sheet}")
        show(o)


def show_scores(scores: dict[str, scorecard.Score]) -> None:
    """The scorecard, and in words what it says when a kind of query was not learned or
    could not be answered at all."""
    say(f"\n  Every place asked for with {ASKED} new pictures and {ASKED} new sounds, and by its"
        f" word (top {TOPK} each):")
    for kind, sc in scores.items():
        if not sc.asked:
            say(f"    {KINDS[kind].label:<28} no answer to any of {sc.unanswered}")
            continue
        say(f"    {KINDS[kind].label:<28} {sc.right:>3} of {sc.asked:>3} right ({sc.rate:4.0%});"
            f" random picks: {sc.chance:.0%}")
    say("    (--modality shared ranks a picture against clips as seen and heard, and a sound finds"
        " pictures (--audio FILE --modality video), in the space the alignment learned)")
    _in_words(scores)


def _in_words(scores: dict[str, scorecard.Score]) -> None:
    weak = [KINDS[k].plain for k in scorecard.weak(scores)]
    partly = [KINDS[k].plain for k in scorecard.partly(scores)]
    for k in scorecard.unanswerable(scores):
        say(f"    Plainly: asked {KINDS[k].plain}, the memory had no answer: {scores[k].why}. While"
            " no night's model is promoted the memory holds version 0, which has no shared"
            " sight-and-sound space; the first promoted night brings one.")
    if weak:
        say(f"    Honestly: this short night did not learn to tell the places apart"
            f" {' or '.join(weak)} (less than twice what random picks get).")
    if partly:
        say(f"    Honestly: asked {' and '.join(partly)}, it tells some places apart but mixes others up"
            f" (right less than {scorecard.GOOD:.0%} of the time): the demo's models are tiny"
            f" (48 px pictures) and trained for about a minute on one day.")


def where_next(s: Summary, folder: DemoFolder, keep: bool) -> None:
    if not keep:
        stage(6, f"Done in {s.seconds:.0f} s. The demo folder was temporary and is deleted now:"
                 " `wm demo --keep` (or `--workdir DIR`) keeps its recording, clips, memory,"
                 " models, report, contact sheets and log to look around in.")
    else:
        stage(6, f"Done in {s.seconds:.0f} s. Where everything is:")
        _where_everything_is(s, folder)
    say("\n  Record your own days:")
    say("    wm devices              # the cameras and microphones wm can see")
    say("    wm record --duration 1m # try them: a minute of clips")
    say("    wm service install      # record always, sleep on it at night")
    say("    wm query --image PHOTO  # the next morning: when did I see this?")


def _where_everything_is(s: Summary, folder: DemoFolder) -> None:
    home = Paths(Path(s.home))
    rel = lambda p: os.path.relpath(p, folder.root)  # noqa: E731
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
