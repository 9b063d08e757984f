"""Ingest speed against decode-only speed, both measured in the same run on the same file.

    .venv/bin/python bench/ingest.py                 # makes a 60 s 640x480 @ 30 fps H.264+AAC file
    .venv/bin/python bench/ingest.py --input FILE    # your own recording (made there if missing)
    .venv/bin/python bench/ingest.py --repeat 5 --seconds 60
    .venv/bin/python bench/ingest.py --decode-all    # also ingest decoding every frame (the
                                                     # lever before it), in the same run

Decode-only = demux + decode every video and audio frame with PyAV (decoder threads on),
nothing else: the floor for any ingest. Ingest = `wm ingest` of the same file into a fresh
data root (clips, stills, WAVs, manifests, fsyncs). Speeds are seconds of media per second
of wall time (x real time); the script prints the medians and their ratio.
Targets (2-core machine, 640x480 @ 30 fps): ingest >= 10x real time and >= 0.5 of decode-only."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_input(path: Path, seconds: float, width: int = 640, height: int = 480,
               fps: int = 30) -> None:
    """A camera-like recording: a detailed scene (noise summed over several scales, like
    a natural image's spectrum) panning slowly, sensor noise on every frame, a tone with
    hiss; H.264 (x264 veryfast, CRF 20, B-frames) + AAC. Detail and noise matter: smooth
    synthetic frames encode to a tiny bitrate and decode unrealistically fast."""
    import cv2

    rng = np.random.default_rng(0)
    scene = np.zeros((height, width * 2, 3), np.float32)
    for cell in (2, 4, 8, 16, 32, 64, 128):
        small = rng.standard_normal((height // cell + 2, width * 2 // cell + 2, 3))
        scene += cell ** 0.5 * cv2.resize(small.astype(np.float32), (width * 2, height),
                                          interpolation=cv2.INTER_LINEAR)
    scene = np.clip(128 + scene * (60 / scene.std()), 0, 255)
    rate = 44100
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "20"}
        a = out.add_stream("aac", rate=rate, layout="stereo")
        block = 1024
        next_sample = 0
        for i in range(int(seconds * fps)):
            x = int(i * 2) % width
            img = scene[:, x:x + width] + rng.normal(0, 3.0, (height, width, 3))
            f = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="bgr24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in vs.encode(f):
                out.mux(p)
            while next_sample < (i + 1) * rate / fps:
                t = (next_sample + np.arange(block)) / rate
                s = 0.1 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(block)
                af = av.AudioFrame.from_ndarray(np.stack([s, s]).astype(np.float32),
                                                format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = rate, next_sample, Fraction(1, rate)
                for p in a.encode(af):
                    out.mux(p)
                next_sample += block
        for s in (vs, a):
            for p in s.encode():
                out.mux(p)


def media_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        return c.duration / av.time_base


def decode_only(path: Path) -> float:
    start = time.perf_counter()
    with av.open(str(path)) as c:
        streams = [s for s in (c.streams.video[:1] + c.streams.audio[:1])]
        for s in streams:
            s.thread_type = "AUTO"
        for _ in c.decode(*streams):
            pass
    return time.perf_counter() - start


def ingest(path: Path, root: Path, preset: str | None,
           decode_all: bool = False) -> tuple[float, int, int]:
    """Seconds taken, clips written, bytes of clip video. `decode_all`: without the skip of
    unreferenced pictures no slot takes (how ingest decoded before), for comparison."""
    from wm.base import config, log
    from wm.base.paths import Paths
    from wm.capture.ingest import video
    from wm.capture.ingest.run import ingest_files

    video.VideoPart.skip_unneeded = (lambda *a: None) if decode_all else SKIP

    shutil.rmtree(root, ignore_errors=True)
    settings = config.load(overrides={"capture": {"ingest_preset": preset}} if preset else None)
    paths = Paths(root)
    log.setup(None, "warning")
    start = time.perf_counter()
    summary = ingest_files(settings, paths, [path], "2025-01-15", show_progress=False)
    took = time.perf_counter() - start
    if summary.errors:
        raise SystemExit(f"ingest failed: {summary.errors}")
    size = sum(p.stat().st_size for p in paths.clips_dir("2025-01-15").glob("*.mp4"))
    return took, summary.clips, size


def _skip():
    from wm.capture.ingest.video import VideoPart

    return VideoPart.skip_unneeded


SKIP = _skip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path,
                    help="media file to measure (generated there if missing; default: a temp file)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the generated file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--preset", help="x264 preset for the clips (default: capture.ingest_preset)")
    ap.add_argument("--decode-all", action="store_true",
                    help="also measure ingest decoding every frame, alternating with the rest")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wm-bench-"))
    os.environ.pop("WM_CONFIG", None)
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")   # the shipped defaults only
    try:
        src = args.input or work / "input.mp4"
        if not src.exists():
            t = time.perf_counter()
            make_input(src, args.seconds)
            print(f"generated {src.name}: {args.seconds:.0f} s 640x480 @ 30 fps H.264+AAC "
                  f"in {time.perf_counter() - t:.1f} s")
        secs = media_seconds(src)
        with av.open(str(src)) as c:
            v = c.streams.video[0].codec_context
            kbps = (c.bit_rate or 0) / 1000
        print(f"input: {src} ({secs:.1f} s, {v.name} {v.width}x{v.height}, {kbps:.0f} kbit/s); "
              f"cpus: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; "
              f"PyAV {av.__version__}")
        dec, ing, dcpu, icpu, alls, acpu = [], [], [], [], [], []
        for r in range(args.repeat):
            c0 = time.process_time()
            d = decode_only(src)
            c1 = time.process_time()
            i, clips, size = ingest(src, work / "home", args.preset)
            c2 = time.process_time()
            dec.append(secs / d)
            ing.append(secs / i)
            dcpu.append((c1 - c0) / secs * 60)
            icpu.append((c2 - c1) / secs * 60)
            line = (f"run {r + 1}: decode-only {secs / d:6.1f}x real time ({d:.2f} s), "
                    f"ingest {secs / i:6.1f}x ({i:.2f} s, {clips} clips, "
                    f"{size / 1e6:.1f} MB of clip video)")
            if args.decode_all:
                a, _, _ = ingest(src, work / "home", args.preset, decode_all=True)
                alls.append(secs / a)
                acpu.append((time.process_time() - c2) / secs * 60)
                line += f", ingest decoding all {secs / a:6.1f}x ({a:.2f} s)"
            print(line + f"; load {os.getloadavg()[0]:.1f}", flush=True)
        md, mi = statistics.median(dec), statistics.median(ing)
        print(f"CPU per minute of media (all threads): decode-only "
              f"{statistics.median(dcpu):.2f} s, ingest {statistics.median(icpu):.2f} s"
              + (f", ingest decoding all {statistics.median(acpu):.2f} s" if alls else ""))
        print(f"median decode-only {md:.1f}x real time; median ingest {mi:.1f}x real time; "
              f"ingest/decode-only {mi / md:.2f} (targets: ingest >= 10x, ratio >= 0.5); "
              f"load average now {os.getloadavg()[0]:.1f}")
        if alls:
            ma = statistics.median(alls)
            print(f"ingest decoding every frame: median {ma:.1f}x real time, "
                  f"{ma / md:.2f} of decode-only")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
