"""Every path under the data root, computed in one place. Nothing else in `wm` joins
folder names under the root by hand."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from wm.base.config import Settings


PRIVATE_DIR = 0o700
# What every process of wm creates under (umask): folders 0700, files 0600.
PRIVATE_UMASK = 0o077


def default_home() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "wm"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wm"


def resolve_home(settings: Settings | None = None) -> Path:
    """WM_HOME wins, then the config's paths.home, then the platform's user data dir."""
    if os.environ.get("WM_HOME"):
        return Path(os.environ["WM_HOME"]).expanduser().absolute()
    if settings is not None and settings.paths.home:
        return Path(settings.paths.home).expanduser().absolute()
    return default_home()


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "Paths":
        return cls(resolve_home(settings))

    def make_private(self) -> None:
        """Create the root 0700, or tighten it if something made it looser: it holds a
        person's recordings, and a private root hides everything beneath it."""
        self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            self.root.chmod(PRIVATE_DIR)

    # -- recordings ---------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw_root(self) -> Path:
        """Holds one folder per local date of recordings to ingest."""
        return self.data / "raw"

    def raw_dir(self, date: str) -> Path:
        return self.raw_root / date

    @property
    def clips_root(self) -> Path:
        """Holds one folder per local date of clip videos and manifests."""
        return self.data / "clips"

    def clips_dir(self, date: str) -> Path:
        return self.clips_root / date

    def frames_dir(self, date: str) -> Path:
        return self.data / "frames" / date

    def audio_dir(self, date: str) -> Path:
        return self.data / "audio" / date

    def clip_video(self, date: str, cid: str) -> Path:
        return self.clips_dir(date) / f"{cid}.mp4"

    def manifest(self, date: str, cid: str) -> Path:
        return self.clips_dir(date) / f"{cid}.json"

    def frame(self, date: str, cid: str, k: int) -> Path:
        return self.frames_dir(date) / f"{cid}_{k}.jpg"

    def audio(self, date: str, cid: str) -> Path:
        return self.audio_dir(date) / f"{cid}.wav"

    def thumbnail(self, date: str, cid: str) -> Path:
        """Kept after retention deletes the media, so a purged memory still shows a face."""
        return self.data / "thumbs" / date / f"{cid}.jpg"

    def media_dirs(self) -> list[Path]:
        """Folders that hold clip media (where stale `.partial` files may be left)."""
        return [self.data / "clips", self.data / "frames", self.data / "audio", self.data / "thumbs"]

    # -- memory, models, reports ----------------------------------------------------
    @property
    def memory_db(self) -> Path:
        return self.root / "memory" / "episodic.sqlite"

    @property
    def embeddings(self) -> Path:
        return self.root / "memory" / "embeddings"

    @property
    def memory_writer_lock(self) -> Path:
        """Held by whoever changes shard and index files (one commit or compaction at a time)."""
        return self.embeddings / ".writer.lock"

    @property
    def memory_readers_lock(self) -> Path:
        """Held shared by every query while it lists and opens shard and index files;
        maintenance deletes retired files only when it can take it exclusively."""
        return self.memory_db.parent / "readers.lock"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def daily_checkpoint_dir(self, date: str) -> Path:
        return self.checkpoints / "daily" / date

    @property
    def daily_checkpoints(self) -> Path:
        """Holds one folder per night of model checkpoints."""
        return self.checkpoints / "daily"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def report(self, date: str, suffix: str = "json") -> Path:
        return self.reports / f"{date}.{suffix}"

    # -- running state ----------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "wm.jsonl"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def pause_file(self) -> Path:
        return self.state / "paused.json"

    @property
    def status_file(self) -> Path:
        return self.state / "status.json"

    @property
    def last_sleep_file(self) -> Path:
        """What the last sleep cycle did (written by `wm sleep`, read by `wm status`)."""
        return self.state / "last_sleep.json"

    @property
    def ingest_index(self) -> Path:
        """One JSON line per file `wm ingest` finished: its fingerprint and first clip."""
        return self.state / "ingested.jsonl"

    @property
    def sleep_lock_file(self) -> Path:
        """Held by a running `wm sleep`: two cycles never train at once."""
        return self.state / "sleep.lock"

    @property
    def lock_file(self) -> Path:
        return self.state / "wm.lock"

    @property
    def query_socket(self) -> Path:
        """The Unix socket on which the query service of `wm run` answers `wm query`
        (0600 in the 0700 root: no TCP port, nobody else's)."""
        return self.state / "query.sock"
