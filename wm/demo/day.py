"""The demo's made-up day: four places, each with its own look and sound, visited in a
known order; the schedule that says where the recording is when; and the recording."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PLACES = ("kitchen", "desk", "garden", "street")
SCENES = (0, 1, 4, 3)          # the wm.demo.synth scene that plays each place
# The day, in order (indices of PLACES): every place three times, for four clips each, so
# the memory holds each place under three sound takes and many lights and views. A visit
# lasts long enough (12 s) that a clip's neighbours in time are mostly of its own place, as
# in a real day (the alignment takes clips of the same visit as each other's positives).
VISITS = (2, 3, 0, 1, 2, 0, 3, 1, 0, 2, 1, 3)
VISIT_SECONDS = 12.0
SEED = 0


@dataclass(frozen=True)
class Schedule:
    """Which place the recording shows when: visit k covers [k, k+1) * visit_seconds."""
    visits: tuple[int, ...]
    visit_seconds: float

    @property
    def seconds(self) -> float:
        return len(self.visits) * self.visit_seconds

    def place_at(self, t: float) -> int:
        k = int(max(t, 0.0) // self.visit_seconds)
        return self.visits[min(k, len(self.visits) - 1)]

    def clip_place(self, offset: float, duration: float) -> int:
        """A clip belongs to the place it shows for most of its length: its middle's."""
        return self.place_at(offset + duration / 2)

    def visit_middle(self, place: int) -> float:
        """The middle of the first visit to `place` (where its example clip is taken)."""
        return (self.visits.index(place) + 0.5) * self.visit_seconds


SCHEDULE = Schedule(VISITS, VISIT_SECONDS)


def make_recording(path: Path, settings) -> None:
    from wm.demo.synth import write_recording

    cap = settings.capture
    # Twice the size the clips keep, as a camera delivers more than is stored.
    write_recording(path, SCHEDULE.seconds, [SCENES[v] for v in SCHEDULE.visits],
                    SCHEDULE.visit_seconds, seed=SEED, fps=cap.video_fps,
                    size=(cap.video_height * 2, cap.video_width * 2), lively=True)
