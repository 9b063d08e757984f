"""The real pipeline's parts the demo runs on its day: the recorder playing the file as a
live camera and microphone while the watcher queues each clip, a sleep cycle, and the
taught words."""
from __future__ import annotations

import contextlib
import io

from wm.base.paths import Paths
from wm.demo.day import SCHEDULE
from wm.demo.folder import DemoFolder
from wm.demo.output import say
from wm.demo.settings import SLEEP_BUDGET_SECONDS, SPEED


def capture(settings, paths: Paths, folder: DemoFolder) -> tuple[int, int]:
    """Record the file as a live source while the watcher queues what lands; returns
    (clips written, clips queued)."""
    from wm.base.progress import Progress
    from wm.base.queue import Queue
    from wm.capture.recorder import Recorder
    from wm.daemon.watcher import Watcher

    watcher = Watcher(paths)
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


def teach(settings, paths: Paths, examples: dict[str, str]) -> None:
    """`wm label CLIP WORD` for each word's example clip, its output indented as the
    demo's own."""
    from wm.memory.labels import run_label

    for name, clip in examples.items():
        say(f"    $ wm label {clip} {name}")
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            run_label(settings, paths, clip, name)
        for line in said.getvalue().splitlines():
            say(f"    {line}")
