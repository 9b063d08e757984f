"""`wm ingest`: recorded video files -> 3-second clips (H.264+AAC mp4, 1-FPS JPEG stills,
16 kHz mono WAV of exactly clip_seconds * sample_rate samples, manifest last)."""
from wm.capture.ingest.run import run_ingest

__all__ = ["run_ingest"]
