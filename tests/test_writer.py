"""The atomic clip writer: real MP4, JPEG and WAV files; the manifest only once every other
file is in place; nothing half-written survives `remove_partials`."""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone

import av
import cv2
import numpy as np
import pytest

from wm.base import media
from wm.base.manifest import AUDIO_ONLY, VIDEO_ONLY, Manifest, Source
from wm.base.media import read_wav
from wm.capture import writer

DATE = "2025-01-15"
START = datetime(2025, 1, 15, 14, 30, 12, tzinfo=timezone.utc)
KW = dict(clip_seconds=3, sample_rate=16000, video_fps=10, jpeg_quality=85)


def frames(n: int = 30, size=(120, 160)) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full((*size, 3), 40, np.uint8)
        img[:, (i * 5) % size[1]:(i * 5) % size[1] + 8] = (0, 200, 255)
        out.append(img)
    return out


def tone(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def clip(cid: str = "20250115T143012Z", **kw) -> writer.ClipMedia:
    v = frames()
    base = dict(cid=cid, date=DATE, start=START, duration=3.0, audio=tone(), video=v,
                stills=[v[0], v[10], v[20]], source=Source(kind="file", name="/x.mp4"))
    return writer.ClipMedia(**{**base, **kw})


def test_a_clip_is_written_whole(home):
    m = writer.write_clip(home, clip(), **KW)
    assert Manifest.read(home.manifest(DATE, m.id)) == m
    assert m.video == "clips/2025-01-15/20250115T143012Z.mp4"
    assert m.frames == [f"frames/2025-01-15/20250115T143012Z_{k}.jpg" for k in range(3)]
    assert m.start == "2025-01-15T14:30:12+00:00" and m.flags == []
    samples, rate = read_wav(home.data / m.audio)
    assert rate == 16000 and np.array_equal(samples, tone())
    for f in m.frames:
        assert cv2.imread(str(home.data / f)).shape == (120, 160, 3)
    with av.open(str(home.data / m.video)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
        decoded = list(c.decode(video=0))
    assert len(decoded) == 30 and (decoded[0].width, decoded[0].height) == (160, 120)
    # colours survive the trip (a swapped channel or a range error would not)
    bar = decoded[12].to_ndarray(format="bgr24")[:, 61:67].reshape(-1, 3).mean(axis=0)
    assert np.abs(bar - (0, 200, 255)).max() < 25
    with av.open(str(home.data / m.video)) as c:
        audio = sum(f.samples for f in c.decode(audio=0))
    assert abs(audio - 48000) <= 2048   # AAC works in 1024-sample frames
    assert list(home.root.rglob("*.partial")) == []


def test_decoded_video_frames_go_in_without_a_round_trip_through_bgr(home):
    # what ingest hands over: frames already at the clip's size, in YUV
    yuv = []
    for i, img in enumerate(frames()):
        yuv.append(av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p"))
    m = writer.write_clip(home, clip(video=yuv), **KW)
    with av.open(str(home.data / m.video)) as c:
        got = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(got) == 30
    # the moving bar is where it was drawn (lossy, so compare coarsely)
    assert np.abs(got[12].astype(int) - frames()[12].astype(int)).mean() < 12


def test_frames_only_and_sound_only_clips_are_flagged(home):
    m = writer.write_clip(home, clip(audio=None), **KW)
    assert m.audio is None and VIDEO_ONLY in m.flags and not m.has_audio
    with av.open(str(home.data / m.video)) as c:
        assert len(c.streams.audio) == 0
    m = writer.write_clip(home, clip("20250115T143015Z", video=[], stills=[]), **KW)
    assert m.frames == [] and AUDIO_ONLY in m.flags and not m.has_video


def test_audio_of_the_wrong_length_is_refused_before_the_manifest(home):
    with pytest.raises(ValueError, match="47999 samples, not 48000"):
        writer.write_clip(home, clip(audio=tone()[:-1]), **KW)
    assert not home.manifest(DATE, "20250115T143012Z").exists()


def test_a_failure_mid_write_leaves_no_manifest_and_remove_partials_clears_the_rest(
        home, monkeypatch):
    kept = writer.write_clip(home, clip("20250115T143009Z"), **KW)   # an earlier, whole clip
    real = media.commit_file

    def dying(tmp, final):
        # the WAV's bytes are on disk under .partial when the process "dies" (a crash or
        # a full disk cannot be produced here, so the rename is what fails)
        if final.suffix == ".wav":
            raise OSError(28, "No space left on device")
        real(tmp, final)

    monkeypatch.setattr(media, "commit_file", dying)   # the WAV is written by wm.base.media
    with pytest.raises(OSError):
        writer.write_clip(home, clip(), **KW)
    monkeypatch.setattr(media, "commit_file", real)

    assert not home.manifest(DATE, "20250115T143012Z").exists()
    left = sorted(p.name for p in home.root.rglob("*.partial"))
    # the writer's pid and a random token in the name: two writers never share one
    pattern = rf"20250115T143012Z\.wav\.{os.getpid()}-[0-9a-f]+\.partial"
    assert len(left) == 1 and re.fullmatch(pattern, left[0]), left
    removed = writer.remove_partials(home)
    assert [p.name for p in removed] == left
    assert list(home.root.rglob("*.partial")) == []
    # the whole clip is untouched
    assert Manifest.read(home.manifest(DATE, kept.id)) == kept
    assert all((home.data / f).exists() for f in [kept.video, kept.audio, *kept.frames])


def test_manifest_round_trips_through_json(home):
    m = writer.write_clip(home, clip(flags=["padded"], duration=1.5), **KW)
    text = home.manifest(DATE, m.id).read_text()
    assert Manifest.from_json(text) == m
    assert '"has_video": true' in text and '"has_audio": true' in text
    assert m.duration == 1.5 and m.samples == 48000


def test_yuv_frames_keep_their_timing(tmp_path):
    f = av.VideoFrame.from_ndarray(frames(1)[0], format="bgr24").reformat(format="yuv420p")
    path = tmp_path / "held.mp4"
    writer.write_mp4(path, [f] * 5, 10, None, 16000, 0.5)   # one frame held for 5 slots
    with av.open(str(path)) as c:
        times = [fr.time for fr in c.decode(video=0)]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
