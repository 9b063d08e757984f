"""Structured logging: JSON lines to logs/wm.jsonl (rotated by size) and readable lines on
stderr. Every event carries its context (file, clip, date) as key-value pairs."""
from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

import structlog

# Records of this logger go to the file only: the traceback of an unexpected error is
# kept for the curious, while the terminal gets one line (wm.cli prints it).
CRASH_LOGGER = "wm.crash"

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def setup(
    log_file: Path | None,
    level: str = "info",
    max_bytes: int = 10_000_000,
    backups: int = 5,
    console: bool = True,
) -> None:
    """Configure once per process. The file always gets `level` and above; the console
    too, unless console=False (a progress bar owns the terminal then, warnings still show)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        fh.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=_SHARED,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.dict_tracebacks,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        root.addHandler(fh)

    ch = logging.StreamHandler(sys.stderr)
    ch.setLevel(numeric if console else max(numeric, logging.WARNING))
    ch.addFilter(lambda record: record.name != CRASH_LOGGER)
    ch.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            ],
        )
    )
    root.addHandler(ch)

    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get(name: str = "wm") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
