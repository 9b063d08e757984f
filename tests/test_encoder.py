"""The live clips' H.264 encoder: a hardware encoder is probed with a real encode and, where
it does not work (no GPU here: this is the path every machine without one takes), the
recorder falls back to x264 with one log line and writes real, decodable clips."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import av
import cv2
import numpy as np
import pytest

from wm.base import config, log
from wm.base.manifest import Source
from wm.capture import encoder, writer

START = datetime(2025, 1, 15, 14, 30, 12, tzinfo=timezone.utc)
KW = {"clip_seconds": 3, "sample_rate": 16000, "video_fps": 10, "jpeg_quality": 85}


def logged(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def moving_frames(n: int = 30) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full((480, 640, 3), 60, np.uint8)
        img[100:200, 10 + 15 * i:90 + 15 * i] = (0, 0, 255)   # a red box moving right
        out.append(img)
    return out


def clip_of(frames) -> writer.ClipMedia:
    return writer.ClipMedia(cid="20250115T143012Z", date="2025-01-15", start=START,
                            duration=3.0, audio=np.zeros(48000, np.int16), video=frames,
                            stills=[frames[0], frames[10], frames[20]],
                            source=Source(kind="live", name="camera 0, microphone default"))


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def no_hardware_here() -> None:
    working = [k for k in encoder.HARDWARE if encoder.probe(encoder.hardware(k)) is None]
    if working:
        pytest.skip(f"this machine has a working hardware encoder ({working}): no fallback")


@pytest.mark.parametrize("asked, platform, level", [
    ("auto", "linux", "info"),             # tries QSV and NVENC
    ("auto", "darwin", "info"),            # VideoToolbox: not in this FFmpeg build
    ("qsv", "linux", "warning"),           # asked for by name: a warning, and still records
])
def test_without_a_hardware_encoder_clips_are_x264_after_one_log_line(home, tmp_path, asked,
                                                                      platform, level):
    no_hardware_here()
    log_file = tmp_path / "wm.jsonl"
    log.setup(log_file, "info", console=False)
    codec = encoder.choose(asked, "ultrafast", 28, log.get("wm.capture.recorder"),
                           platform=platform)
    assert codec == encoder.x264("ultrafast", 28)
    lines = [e for e in logged(log_file) if e["event"].startswith("video_encoder")]
    assert len(lines) == 1 and lines[0]["event"] == "video_encoder_fallback"
    assert lines[0]["level"] == level
    tried = lines[0]["tried"]
    names = [encoder.HARDWARE[k] for k in encoder.AUTO_ORDER[platform]] if asked == "auto" \
        else [encoder.HARDWARE[asked]]
    assert sorted(tried) == sorted(names) and all(tried.values())  # each with its reason

    # and the fallback really records: a clip any player decodes, the box where it was
    m = writer.write_clip(home, clip_of(moving_frames()), codec=codec, **KW)
    frames = decoded(home.data / m.video)
    assert len(frames) == 30
    box = frames[29][100:200, 10 + 15 * 29:90 + 15 * 29].mean(axis=(0, 1))
    assert box[2] > 180 and box[1] < 80, box   # red, after a lossy encode


def test_x264_asked_by_name_probes_nothing_and_says_nothing(tmp_path):
    log_file = tmp_path / "wm.jsonl"
    log.setup(log_file, "info", console=False)
    codec = encoder.choose("x264", "veryfast", 26, log.get("wm.capture.recorder"))
    assert codec.name == "libx264" and codec.options == {"preset": "veryfast", "crf": "26"}
    assert not [e for e in logged(log_file) if e["event"].startswith("video_encoder")]


def test_an_nv12_encoder_takes_bgr_and_yuv_frames_alike(home):
    """Hardware encoders take nv12: the writer hands them BGR arrays and yuv420p frames (a
    live MJPEG camera's) as they come. libx264 takes nv12 too, so the path runs here."""
    bgr = moving_frames()
    yuv = [av.VideoFrame.from_ndarray(cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
           for f in bgr[:15]]
    mixed = yuv + bgr[15:]
    nv12 = encoder.VideoCodec("libx264", {"preset": "ultrafast", "crf": "20"}, pix_fmt="nv12")
    m = writer.write_clip(home, clip_of(mixed), codec=nv12, **KW)
    frames = decoded(home.data / m.video)
    assert len(frames) == 30
    for i in (5, 25):   # one of each kind: the box is where it was drawn
        box = frames[i][100:200, 10 + 15 * i:90 + 15 * i].mean(axis=(0, 1))
        assert box[2] > 180 and box[1] < 80, (i, box)
    # the stills of yuv frames are real JPEGs of the picture too
    still = cv2.imread(str(home.data / m.frames[0]))
    assert still.shape == (480, 640, 3) and still[100:200, 10:90, 2].mean() > 180


def test_a_probe_that_fails_says_why_in_one_line():
    why = encoder.probe(encoder.VideoCodec("h264_no_such_encoder"))
    assert why is not None and "\n" not in why and why


@pytest.mark.parametrize("text, problem", [
    ("capture:\n  encoder: vaapi\n", "capture.encoder"),
    ("capture:\n  crf: 60\n", "capture.crf"),
    ("capture:\n  preset: placebo\n", "capture.preset"),
])
def test_encoder_settings_are_validated(home, tmp_path, text, problem):
    bad = tmp_path / "config.yaml"
    bad.write_text(text)
    with pytest.raises(config.ConfigError, match=problem) as e:
        config.load(bad)
    assert "\n" not in str(e.value)
