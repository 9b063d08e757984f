"""Recordings dropped into data/raw/{date}/ for ingest, as retention sees them: how big,
how long they have been there, and whether they were ingested whole (their clips then
hold the same moments, so the recording may go)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wm.base.paths import Paths
from wm.capture.ingest.index import entries, fingerprint
from wm.memory.retention_rules import RawFile


@dataclass
class IngestIndex:
    """What state/ingested.jsonl says was ingested whole: file names and fingerprints."""
    files: set[str] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, paths: Paths) -> "IngestIndex":
        out = cls()
        for entry in entries(paths):      # lines noting only where a file starts carry neither
            if entry.get("file"):
                out.files.add(os.path.abspath(str(entry["file"])))
            if entry.get("fingerprint"):
                out.fingerprints.add(str(entry["fingerprint"]))
        return out

    def has_name(self, path: Path) -> bool:
        return os.path.abspath(path) in self.files

    def has(self, path: Path) -> bool:
        """By name, else by content (a copy ingested under another name)."""
        if self.has_name(path):
            return True
        try:
            return fingerprint(path) in self.fingerprints
        except OSError:
            return False


def _arrivals(paths: Paths) -> list[tuple[Path, int, float]]:
    """(file, bytes, arrival) of every regular file in a day folder of data/raw/."""
    out = []
    try:
        days = [d for d in os.scandir(paths.raw_root) if d.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for day in days:
        try:
            entries = list(os.scandir(day.path))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    out.append((Path(e.path), st.st_size, max(st.st_mtime, st.st_ctime)))
            except OSError:
                continue
    return out


def raw_files(paths: Paths, index: IngestIndex, content_too: bool = False) -> list[RawFile]:
    """Every raw recording, ingested or not by name; with `content_too`, a file not
    found by name is looked up by content (which reads 2 MiB of it)."""
    check = index.has if content_too else index.has_name
    return [RawFile(p, size, arrived, check(p)) for p, size, arrived in _arrivals(paths)]


def oldest_ingested(paths: Paths) -> float | None:
    """When the oldest raw recording ingested (by name) arrived: cheap, for retention_due."""
    index = IngestIndex.read(paths)
    times = [f.arrived for f in raw_files(paths, index) if f.ingested]
    return min(times) if times else None


def delete_raw(paths: Paths, files: list[RawFile]) -> tuple[int, int, list[str]]:
    """(files deleted, bytes freed, problems); an emptied day folder goes too."""
    n = freed = 0
    problems = []
    for f in files:
        try:
            f.path.unlink()
            n += 1
            freed += f.size
        except FileNotFoundError:
            pass
        except OSError as e:
            problems.append(f"{f.path.name}: {e.strerror or e}")
            continue
        try:
            f.path.parent.rmdir()
        except OSError:
            pass   # not empty, which is the usual case
    return n, freed, problems
