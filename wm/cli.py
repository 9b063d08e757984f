"""`wm` command line: parses arguments and calls the component that owns the work.
Components are imported inside each handler so that a short command never pays for
torch, OpenCV or PortAudio it does not use."""
from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from wm import __version__
from wm.base import config, log
from wm.base.errors import WmError
from wm.base.paths import PRIVATE_UMASK, Paths


def _duration(text: str) -> float:
    from wm.base.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _grace(text: str) -> float:
    """A duration, or zero (`wm check --grace 0`: nothing is being written now)."""
    return 0.0 if text.strip().rstrip("s") in ("0", "0.0") else _duration(text)


def _date(text: str) -> str:
    from wm.base.clipids import parse_date

    try:
        return parse_date(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# -- handlers: each one line of glue into its component -------------------------------

def _ingest(a, s, p):
    from wm.capture.ingest import run_ingest
    return run_ingest(s, p, [Path(f) for f in a.files], a.date)


def _config_show(a, s, p):
    print(config.render(s, p.root, as_json=a.json))
    return 0


def _record(a, s, p):
    from wm.capture.recorder import run_record
    return run_record(s, p, duration=a.duration, camera=a.camera, microphone=a.mic)


def _devices(a, s, p):
    from wm.capture.devices import show_devices
    return show_devices(s)


def _pause(a, s, p):
    from wm.capture.pause import pause
    return pause(p, a.for_seconds)


def _resume(a, s, p):
    from wm.capture.pause import resume
    return resume(p)


def _run(a, s, p):
    from wm.daemon.supervisor import run_daemon
    return run_daemon(s, p, config_path=a.config)


def _status(a, s, p):
    from wm.daemon.status import show_status
    return show_status(s, p, as_json=a.json)


def _sleep(a, s, p):
    from wm.nightly.run import run_sleep
    return run_sleep(s, p, date=a.date, budget_seconds=a.budget)


def _query(a, s, p):
    # the query service's client: the search itself is imported only if no service answers
    from wm.memory.query_client import QueryRequest, run_query_command
    return run_query_command(s, p, QueryRequest(
        image=a.image, audio=a.audio, clip=a.clip, at=a.at, text=a.text,
        modality=a.modality, topk=a.topk, date=a.date, since=a.since, until=a.until,
        as_json=a.json, show=a.show, open_best=a.open))


def _label(a, s, p):
    from wm.memory.labels import run_label
    return run_label(s, p, a.clip_id, a.word, remove=a.remove)


def _service(a, s, p):
    from wm.daemon.service import run_service
    return run_service(s, p, a.action, dry_run=a.dry_run, config_path=a.config)


def _logs(a, s, p):
    from wm.daemon.logview import run_logs
    return run_logs(p, follow=a.follow, level=a.level, as_json=a.json, since=a.since,
                    lines=a.lines)


def _check(a, s, p):
    from wm.check.run import run_check
    return run_check(s, p, repair=a.repair, grace=a.grace)


def _demo(a, s, p):
    from wm.demo.run import run_demo
    return run_demo(workdir=a.workdir, keep=a.keep)


# -- the parser ----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="settings file (default: $WM_CONFIG or the platform config dir)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging and full tracebacks")

    parser = argparse.ArgumentParser(
        prog="wm", parents=[common],
        description="An always-on recorder that learns: record, sleep on it, ask it.")
    parser.add_argument("--version", action="version", version=f"wm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name, handler, help_):
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    sp = cmd("ingest", _ingest, "cut recorded video files into 3-second clips")
    sp.add_argument("files", nargs="*", help="video files (default: everything in data/raw/DATE/)")
    sp.add_argument("--date", type=_date, help="the local day the recording was made (YYYY-MM-DD):"
                    " its clips go on that day at their own time of day")

    sp = cmd("config", None, "show the effective settings")
    csub = sp.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = csub.add_parser("show", parents=[common], help="every setting, its value and source")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_config_show)

    sp = cmd("record", _record, "record camera and microphone into clips")
    sp.add_argument("--duration", type=_duration, help="stop after this long (e.g. 60, 10m)")
    sp.add_argument("--camera", help="device index, file or URL (default: capture.camera)")
    sp.add_argument("--mic", help="microphone name or index (default: capture.microphone)")

    cmd("devices", _devices, "list the cameras and microphones wm can see")

    sp = cmd("pause", _pause, "stop recording until `wm resume` (or for a while)")
    sp.add_argument("--for", dest="for_seconds", type=_duration, metavar="DURATION",
                    help="resume by itself after this long (e.g. 30m)")
    cmd("resume", _resume, "resume recording after `wm pause`")

    cmd("run", _run, "the always-on service: record, queue, sleep at night")

    sp = cmd("status", _status, "is it recording, what is queued, when it last slept")
    sp.add_argument("--json", action="store_true")

    sp = cmd("sleep", _sleep, "run a sleep cycle: train, commit to memory, apply retention")
    # A manual cycle always runs at once; the flag is still accepted so that existing
    # scripts and notes that say `wm sleep --now` keep working.
    sp.add_argument("--now", action="store_true", help=argparse.SUPPRESS)
    sp.add_argument("--date", type=_date, help="the day to learn (default: every queued day)")
    sp.add_argument("--budget", type=_duration, help="time budget (e.g. 45m)")

    sp = cmd("query", _query, "search the memory")
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", type=Path, help="moments that look like this picture")
    what.add_argument("--audio", type=Path, help="moments that sound like this recording")
    what.add_argument("--clip", help="moments like this clip id")
    what.add_argument("--at", help='what was happening then ("yesterday 14:30", ISO time)')
    what.add_argument("--text", help="a word taught with `wm label`")
    sp.add_argument("--modality", choices=["video", "audio", "shared"],
                    help="which embedding to rank by (default: the query's own)")
    sp.add_argument("--topk", type=int, help="number of results (default: memory.topk)")
    sp.add_argument("--date", type=_date, help="only this local day")
    sp.add_argument("--since", type=_date, help="only from this day on")
    sp.add_argument("--until", type=_date, help="only up to this day")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--show", type=Path, metavar="FILE", help="write a contact sheet image")
    sp.add_argument("--open", action="store_true", help="open the best clip in the player")

    sp = cmd("label", _label, "teach a word by example: this clip is WORD")
    sp.add_argument("clip_id")
    sp.add_argument("word")
    sp.add_argument("--remove", action="store_true", help="forget this example")

    sp = cmd("service", _service, "install and control wm as a user service")
    sp.add_argument("action", choices=["install", "uninstall", "status", "start", "stop",
                                       "restart"])
    sp.add_argument("--dry-run", action="store_true", help="print files and commands only")

    sp = cmd("logs", _logs, "show the log")
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("--level", choices=["debug", "info", "warning", "error"])
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--since", type=_duration, help="only the last DURATION (e.g. 1h)")
    sp.add_argument("-n", "--lines", type=int, metavar="N",
                    help="last lines to show (default 50; with --since, all of them)")

    sp = cmd("check", _check, "check the data root for damage a crash or a fault left")
    sp.add_argument("--repair", action="store_true",
                    help="fix what can be fixed without losing a committed memory")
    sp.add_argument("--grace", type=_grace, metavar="DURATION",
                    help="take unfinished files older than this as left by a crash (default:"
                         " 5 min for clip media, 15 min for other partial writes); 0 only"
                         " when no wm process runs")

    sp = cmd("demo", _demo, "run a short made-up day through the whole pipeline")
    sp.set_defaults(standalone=True)
    sp.add_argument("--workdir", type=Path, help="where to put the demo (default: a temp dir)")
    sp.add_argument("--keep", action="store_true", help="keep the demo folder afterwards")
    return parser


# Commands whose process ends as soon as their output is out: a query done without the
# service has torch loaded, and the interpreter's orderly teardown of it (every module
# and object freed one by one) cost ~0.45 s of CPU after the answer was printed. They
# start no thread or child that exit would have to wait for. Their cyclic garbage
# collector runs rarely (GC_THRESHOLD new objects, not 700): importing torch made it
# walk a growing heap hundreds of times (~0.2 s), and the process is gone soon after.
EXIT_AT_ONCE = frozenset({"query"})
GC_THRESHOLD = 50_000


def main(argv: list[str] | None = None) -> int:
    # Whatever the user's umask: recordings, the database, the log and the state files of
    # every command (and the children they start) are the user's alone.
    umask = os.umask(PRIVATE_UMASK)
    try:
        args = build_parser().parse_args(argv)
        if argv is None and args.command in EXIT_AT_ONCE:
            gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        code = _main(args)
    finally:
        os.umask(umask)
    if argv is None and args.command in EXIT_AT_ONCE:   # the program itself, not a caller
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process with `code` once stdout, stderr and the log are flushed."""
    import logging

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:          # `wm query | head`: the reader has gone
        pass
    logging.shutdown()
    os._exit(code)


def _setup_log(settings: config.Settings, paths: Paths, debug: bool) -> None:
    level = "debug" if debug else settings.logging.level
    try:
        paths.make_private()
        log.setup(paths.log_file, level, settings.logging.max_bytes, settings.logging.backups)
    except OSError as e:
        # a read-only or full data root: the command still runs, logging to the terminal
        log.setup(None, level)
        print(f"wm: cannot write the log under {paths.root}: {e.strerror}", file=sys.stderr)


def _main(args: argparse.Namespace) -> int:
    args.config = getattr(args, "config", None)
    args.debug = getattr(args, "debug", False)
    try:
        if getattr(args, "standalone", False):
            # `wm demo` runs in a home of its own: the user's settings and data are not touched
            return int(args.handler(args, None, None) or 0)
        settings = config.load(args.config)
        paths = Paths.from_settings(settings)
        _setup_log(settings, paths, args.debug)
        return int(args.handler(args, settings, paths) or 0)
    except WmError as e:
        if args.debug:
            raise
        print(f"wm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `wm ... | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # the last line of defence: one line, details with --debug
        if args.debug:
            raise
        log.get(log.CRASH_LOGGER).error("unexpected_error", error=repr(e), command=args.command,
                                         exc_info=True)
        print(f"wm: {args.command} failed: {type(e).__name__}: {e} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
