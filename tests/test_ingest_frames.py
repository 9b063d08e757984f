"""Ingest decodes only the pictures a clip can show (and those later pictures refer to):
each slot of a clip video still shows the source frame nearest to it. The source is a
real x264 file with B-frames whose every frame carries its own number as stripes."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from wm.base.manifest import Manifest
from wm.capture.ingest.run import ingest_files
from wm.capture.ingest.timeline import near_a_slot

FPS = Fraction(30000, 1001)   # frames never fall exactly on a slot
BITS = 8
W, H = 320, 240


TEXTURE = np.random.default_rng(0).integers(0, 256, (H // 2, 3 * W, 3), np.uint8)


def numbered(i: int) -> np.ndarray:
    """Frame i: in the top half 8 vertical stripes, white for a 1 bit of i (the left one
    the highest); in the bottom half a panning texture (x264 makes B-frames of that)."""
    img = np.zeros((H, W, 3), np.uint8)
    for b in range(BITS):
        if i >> (BITS - 1 - b) & 1:
            img[:H // 2, b * W // BITS:(b + 1) * W // BITS] = 255
    img[H // 2:] = TEXTURE[:, 2 * i % (2 * W):2 * i % (2 * W) + W]
    return img


def number_of(bgr: np.ndarray) -> int:
    top = bgr[8:H // 2 - 8]
    stripes = [top[:, b * W // BITS + 8:(b + 1) * W // BITS - 8].mean() > 128 for b in range(BITS)]
    return sum(1 << (BITS - 1 - b) for b, on in enumerate(stripes) if on)


def write_numbered(path, seconds: float) -> None:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"preset": "veryfast"}   # B-frames, most of them unreferenced
        for i in range(int(seconds * FPS)):
            f = av.VideoFrame.from_ndarray(numbered(i), format="bgr24")
            f.pts, f.time_base = i, 1 / FPS
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)


def frames_decoded(path, skip: str) -> int:
    with av.open(str(path)) as c:
        c.streams.video[0].codec_context.skip_frame = skip
        return sum(1 for _ in c.decode(video=0))


def test_every_slot_shows_the_nearest_source_frame(tmp_path, settings, home):
    src = tmp_path / "numbered.mp4"
    write_numbered(src, 6.5)
    # the file really has pictures nothing refers to (else nothing here is tested)
    assert frames_decoded(src, "NONREF") < 0.9 * frames_decoded(src, "DEFAULT")

    summary = ingest_files(settings, home, [src], "2025-01-15", show_progress=False)
    assert summary.clips == 2 and not summary.errors
    mans = sorted((Manifest.read(p) for p in home.clips_dir("2025-01-15").glob("*.json")),
                  key=lambda m: m.source.offset)
    fps = settings.capture.video_fps
    for c, m in enumerate(mans):
        with av.open(str(home.data / m.video)) as v:
            shown = [number_of(f.to_ndarray(format="bgr24")) for f in v.decode(video=0)]
        slots = [c * 3 + j / fps for j in range(3 * fps)]
        want = [round(t * FPS) % 256 for t in slots]
        assert shown == want, (c, shown, want)


@pytest.mark.parametrize("t, near", [
    (0.0, True), (0.1, True), (0.1 + 0.024, True), (0.1 + 0.034, False),   # 30 fps: window 25 ms
    (0.0667, False), (2.9999, True),
])
def test_near_a_slot(t, near):
    assert near_a_slot(t, (10, 1), 0.025) is near
