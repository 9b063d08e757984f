"""The entry points: `wm ingest` (run_ingest; the daemon runs it as a child process) and
ingest_files, which ingests a list of files with one pool of writer threads."""
from __future__ import annotations

import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av

from wm.base import log
from wm.base.config import Settings
from wm.base.errors import WmError
from wm.base.paths import Paths
from wm.base.progress import Progress
from wm.capture.diskfloor import check_room
from wm.capture.ingest.file import StoppedLow, ingest_file
from wm.capture.ingest.index import already_ingested, identify, remember
from wm.capture.ingest.probe import BadMedia, check_file, estimate_seconds, why

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                  ".3gp"}
WRITERS = 2                # clips encoded at once: both cores stay busy when decoding is ahead


@dataclass
class IngestSummary:
    files: int = 0          # files ingested by this call (not skipped, not failed)
    clips: int = 0          # clips written
    seconds: float = 0.0    # seconds of source content in those clips
    skipped: int = 0        # files already ingested earlier
    errors: list[str] = field(default_factory=list)  # "FILE: reason", one per failed file
    dropped: float = 0.0    # seconds of final remainders shorter than capture.min_tail_seconds

    def line(self) -> str:
        text = (f"ingest: {self.files} file{'s' * (self.files != 1)}, {self.clips} clips, "
                f"{self.seconds:.1f} s; skipped {self.skipped} already ingested")
        if round(self.dropped, 1) > 0:
            text += f"; dropped {self.dropped:.1f} s of short final remainders"
        if self.errors:
            text += f"; {len(self.errors)} failed"
        return text


def run_ingest(settings: Settings, paths: Paths, files: list[Path], date: str | None) -> int:
    """`wm ingest [FILE...] [--date D]`: exit 0 when every file went in (or was already
    in), 1 when any failed. DiskLow (exit 1) when the disk is under
    retention.min_free_gb: nothing is ingested."""
    if not files:
        files = _raw_files(paths, date)
    check_room(paths.root, settings.retention.min_free_gb, "wm ingest")
    level = logging.getLogger().level
    if level > logging.DEBUG:
        # the bar and the summary are the console's story: the per-file details
        # (streams chosen, tails dropped) go to the log file, warnings and errors to both
        log.setup(paths.log_file, logging.getLevelName(level).lower(),
                  settings.logging.max_bytes, settings.logging.backups, console=False)
    summary = ingest_files(settings, paths, files, date, show_progress=sys.stderr.isatty())
    print(summary.line())
    return 1 if summary.errors else 0


def _raw_files(paths: Paths, date: str | None) -> list[Path]:
    """The recordings in data/raw/DATE/."""
    if date is None:
        raise WmError("give video files to ingest, or --date DATE to ingest everything "
                      "in data/raw/DATE/")
    raw = paths.raw_dir(date)
    if not raw.is_dir():
        raise WmError(f"{raw}: no such folder (nothing recorded for {date})")
    return [p for p in sorted(raw.iterdir())
            if p.is_file() and not p.name.startswith(".")
            and p.suffix.lower() in VIDEO_SUFFIXES]


def ingest_files(settings: Settings, paths: Paths, files: list[Path], date: str | None,
                 show_progress: bool = True) -> IngestSummary:
    """Ingest each file into clips (with `date`, on that local day). A file that fails is
    reported in `errors` (and the log) and the others still go in; a file already
    ingested is skipped. When the disk falls under retention.min_free_gb, the ingest
    stops between two clips: the file in hand and the rest are reported, not ingested."""
    summary = IngestSummary()
    files = [Path(f) for f in files]
    expected = {f: estimate_seconds(f) for f in files} if show_progress else {}
    progress = Progress(sum(expected.values()), "ingest", unit="s") if show_progress else None
    reserved: set[tuple[str, str]] = set()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="wm-ingest-writer") as pool:
        for path in files:
            before = progress.done if progress is not None else 0.0
            try:
                _ingest_one(settings, paths, path, date, pool, reserved, progress, summary)
            except StoppedLow as e:
                summary.clips += e.clips
                summary.seconds += e.seconds
                _failed(summary, path, f"{e}; kept {e.clips} clip{'s' * (e.clips != 1)}",
                        progress)
                for rest in files[files.index(path) + 1:]:
                    _failed(summary, rest, "not ingested: the disk is under its floor", progress)
                break
            finally:
                if progress is not None:   # a skipped or failed file counts as done on the bar
                    progress.update(max(0.0, expected[path] - (progress.done - before)))
    if progress is not None:
        progress.close()
    log.get("wm.ingest").info("ingest_done", files=summary.files, clips=summary.clips,
                              seconds=round(summary.seconds, 3), skipped=summary.skipped,
                              failed=len(summary.errors),
                              wall=round(time.monotonic() - started, 3))
    return summary


def _ingest_one(settings: Settings, paths: Paths, path: Path, date: str | None,
                pool: ThreadPoolExecutor, reserved: set, progress: Progress | None,
                summary: IngestSummary) -> None:
    logger = log.get("wm.ingest")
    try:
        fid = identify(path, check_file(path))
        if already_ingested(paths, fid.fingerprint) is not None:
            summary.skipped += 1
            logger.info("already_ingested", file=str(path))
            return
        result = ingest_file(settings, paths, path, date, fid, pool, reserved, progress)
    except (BadMedia, av.error.FFmpegError, OSError) as e:
        reason = str(e) if isinstance(e, BadMedia) else why(e)
        _failed(summary, path, reason, progress)
        return
    except StoppedLow:
        raise   # not this file's fault: the whole ingest stops
    except Exception as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):   # --debug: the traceback
            raise
        _failed(summary, path, f"internal error: {type(e).__name__}: {e} "
                "(run with --debug for the traceback)", progress)
        return
    summary.clips += result.clips
    summary.seconds += result.seconds
    summary.dropped += result.dropped
    if result.problem:
        kept = f"kept {result.clips} clip{'s' * (result.clips != 1)}"
        _failed(summary, path, f"{result.problem}; {kept}", progress)
        return
    remember(paths, fid.fingerprint, path, result.first, result.clips)
    summary.files += 1
    logger.info("ingested", file=str(path), clips=result.clips,
                seconds=round(result.seconds, 3), dropped=round(result.dropped, 3))


def _failed(summary: IngestSummary, path: Path, reason: str, progress: Progress | None) -> None:
    summary.errors.append(f"{path}: {reason}")
    if progress is not None and progress.tty:   # the error gets a line of its own
        progress.stream.write("\r" + " " * 80 + "\r")
    log.get("wm.ingest").error("ingest_failed", file=str(path), reason=reason)
