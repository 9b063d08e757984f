"""A network camera read through PyAV: every frame is taken off the wire, only the kept
ones come out (decoded straight to the YUV the encoder takes when the camera already has
the clip's size), and any other size is letterboxed, never stretched. Real HTTP MJPEG
servers on 127.0.0.1, no mocks."""
from __future__ import annotations

import time

import av
import numpy as np
import pytest
from loopback import MjpegServer

from wm.capture.camera import OK, Camera

pytestmark = pytest.mark.slow


class Got:
    def __init__(self):
        self.frames: list[tuple[float, object]] = []

    def __call__(self, t, image):
        self.frames.append((t, image))


def camera(url: str, got: Got, fps: int = 10) -> Camera:
    return Camera(url, width=640, height=480, fps=fps, stall_seconds=2.0,
                  reopen_max_seconds=1.0, on_frame=got, on_state=lambda t, r: None)


def run_for(cam: Camera, seconds: float) -> None:
    assert cam.open(), "the camera did not open"
    cam.start()
    try:
        time.sleep(seconds)
    finally:
        cam.stop()


def wait_frames(got: Got, after: float, n: int, timeout: float = 5.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        later = [img for t, img in got.frames if t > after]
        if len(later) >= n:
            return later
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} frames after the change")


def test_a_30_fps_camera_gives_a_10_fps_clip_its_frames_as_yuv():
    grey = np.full((480, 640, 3), 128, np.uint8)
    with MjpegServer(fps=30, frames=[grey]) as server:
        got = Got()
        cam = camera(server.url, got)
        assert cam.open() and cam.state == OK and "640x480" in cam.description
        cam.start()
        try:
            time.sleep(1.5)
            white = server.show([np.full((480, 640, 3), 255, np.uint8)])
            after = wait_frames(got, white + 0.3, 5)
            time.sleep(1.5)
        finally:
            cam.stop()
    assert all(isinstance(img, av.VideoFrame) and img.format.name == "yuv420p"
               and (img.width, img.height) == (640, 480) for _, img in got.frames)
    # every frame was read off the wire, one in three kept
    assert cam.grabbed >= 60 and 0.25 <= cam.kept / cam.grabbed <= 0.4, (cam.kept, cam.grabbed)
    times = [t for t, _ in got.frames]
    assert 0.08 <= float(np.median(np.diff(times))) <= 0.12
    # the picture is the camera's: grey before, white after (limited-range luma: 16-235)
    y_before = got.frames[2][1].to_ndarray()[:480].mean()
    y_after = after[-1].to_ndarray()[:480].mean()
    assert 110 < y_before < 135 and y_after > 225, (y_before, y_after)


def test_a_camera_of_another_shape_is_letterboxed_not_stretched():
    wide = np.full((180, 320, 3), 255, np.uint8)   # 16:9 into 4:3: bars above and below
    with MjpegServer(fps=10, size=(320, 180), frames=[wide]) as server:
        got = Got()
        run_for(camera(server.url, got), 1.5)
    assert got.frames
    img = got.frames[-1][1]
    assert isinstance(img, np.ndarray) and img.shape == (480, 640, 3)
    assert img[:50].max() < 20 and img[-50:].max() < 20      # the bars
    assert img[100:380].mean() > 240                          # the picture, its full width


def test_a_camera_that_never_answers_does_not_open(tmp_path):
    from loopback import free_port

    got = Got()
    cam = camera(f"http://127.0.0.1:{free_port()}/stream", got)
    assert not cam.open()
