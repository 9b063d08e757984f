"""The retention child `wm run` starts outside sleep cycles (wm.daemon.maintenance):
`python -m wm.daemon.maintenance_run [--config FILE]`. Removes `.partial` files left by
writes that died long ago and applies retention, then prints what it did as one JSON
line on stdout. Exit status 0 when it ran, 2 on a settings error, 1 when retention
failed (the last line on stderr says why)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from wm.base import config, log
from wm.base.errors import WmError
from wm.base.paths import PRIVATE_UMASK, Paths

# No write takes this long: an older `.partial` file is a leftover, whoever named it.
STALE_PARTIAL_SECONDS = 3600.0


def _setup_log(settings: config.Settings, paths: Paths) -> None:
    lg = settings.logging
    try:
        log.setup(paths.log_file, lg.level, lg.max_bytes, lg.backups, console=False)
    except OSError:   # a full or read-only disk: warnings to stderr, the daemon reads them
        log.setup(None, "warning")


def maintain(settings: config.Settings, paths: Paths) -> dict:
    from wm.capture.orphans import remove_partials
    from wm.memory.retention import apply_retention

    removed = remove_partials(paths, min_age=STALE_PARTIAL_SECONDS)
    if removed:
        log.get("wm.daemon.maintenance").info("stale_partials_removed", count=len(removed))
    r = apply_retention(settings, paths)
    return {"purged": r.purged, "freed_bytes": r.freed_bytes, "media_bytes": r.media_bytes,
            "over_limit": r.over_limit, "partials_removed": len(removed)}


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)
    parser = argparse.ArgumentParser(prog="wm.daemon.maintenance_run")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    try:
        settings = config.load(args.config)
        paths = Paths.from_settings(settings)
        _setup_log(settings, paths)
        result = maintain(settings, paths)
    except WmError as e:
        print(f"wm: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:   # one line for the daemon's status; the traceback to the log
        log.get(log.CRASH_LOGGER).error("retention_failed", error=repr(e), exc_info=True)
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
