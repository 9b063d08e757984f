"""What travels between the recorder's threads: the sources' events into the segmenter
(through one queue, so they keep their order), and the cuts out of it to the writer."""
from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from wm.base.manifest import Gap

if TYPE_CHECKING:
    import av


@dataclass(frozen=True, slots=True)
class Frame:
    """A video frame read at source time `t` (the segmenter files the frames it keeps by
    their time on its timeline instead): BGR pixels, or, from a network camera read with
    PyAV, the decoded yuv420p frame itself (no round trip through BGR before the encode)."""
    t: float
    bgr: "np.ndarray | av.VideoFrame"


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """int16 mono samples whose last one was read at source time `t_end`."""
    block: np.ndarray
    t_end: float
    new_stream: bool    # the first block of a (re)opened stream: placed by its time
    overflow: bool      # samples may be missing before it: a hole is measured by its time


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device went down at source time `t` (`reason`), or came back (`reason` None)."""
    modality: str       # "audio" | "video"
    t: float
    reason: str | None


Event = Frame | AudioBlock | DeviceState


@dataclass
class Cut:
    """One clip's content, placed and padded, ready for the writer."""
    index: int
    start: float          # epoch seconds of the clip's first sample
    source_time: float    # source time of the clip's first sample
    duration: float       # seconds of real content
    audio: np.ndarray | None
    video: list[np.ndarray]
    stills: list[np.ndarray]
    gaps: list[Gap]
    flags: list[str]
