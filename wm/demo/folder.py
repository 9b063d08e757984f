"""The demo's folder: its recording, home, settings, questions, contact sheets and summary,
and the marker that lets a later demo clear it (and nothing that is not a demo's)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from wm.base.errors import WmError

MARKER = ".wm-demo"            # says a folder is a demo's, which a later demo may clear


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
