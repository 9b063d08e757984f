"""Pictures of clips: the small thumbnail kept after retention, and the contact sheet
`wm query --show` writes (one frame per result, its time and score written on it)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from wm.base.atomic import atomic_write_bytes
from wm.base.errors import WmError
from wm.base.media import read_wav
from wm.base.paths import Paths
from wm.memory.clips import ClipRecord

THUMB_WIDTH = 160
CELL = (240, 320)  # contact sheet cell, height x width
COLUMNS = 5


def spectrogram_image(samples: np.ndarray, size=(120, 160)) -> np.ndarray:
    """A sound as a picture (log magnitude, time left to right), for audio-only clips."""
    x = samples.astype(np.float32) / 32768.0
    n = 512
    hop = max(1, (len(x) - n) // size[1]) if len(x) > n else 1
    frames = np.stack([x[i:i + n] for i in range(0, max(1, len(x) - n), hop)]) if len(x) > n \
        else np.pad(x, (0, n - len(x)))[None]
    mag = np.log1p(np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) * 10).T[::-1]
    img = cv2.normalize(mag, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.applyColorMap(cv2.resize(img, size[::-1]), cv2.COLORMAP_MAGMA)


def clip_picture(paths: Paths, clip: ClipRecord) -> np.ndarray | None:
    """The clip's middle still while its media exists, else its kept thumbnail; a
    spectrogram for a clip without video."""
    if clip.media_gone is None:
        if clip.frames:
            img = cv2.imread(str(paths.data / clip.frames[len(clip.frames) // 2]))
            if img is not None:
                return img
        elif clip.audio and (paths.data / clip.audio).exists():
            return spectrogram_image(read_wav(paths.data / clip.audio)[0])
    return cv2.imread(str(paths.thumbnail(clip.date, clip.clip_id)))


def make_thumbnail(paths: Paths, clip: ClipRecord) -> Path | None:
    """Write the small JPEG that outlives the media; None if there is nothing to show."""
    img = clip_picture(paths, clip)
    if img is None:
        return None
    h, w = img.shape[:2]
    small = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))),
                       interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    target = paths.thumbnail(clip.date, clip.clip_id)
    atomic_write_bytes(target, buf.tobytes())
    return target


def _label(img: np.ndarray, lines: list[str]) -> None:
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    y = 4
    for text in lines:
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        cv2.rectangle(img, (2, y), (8 + tw, y + th + base + 4), (0, 0, 0), -1)
        cv2.putText(img, text, (5, y + th + 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += th + base + 6


def contact_sheet(cells: list[tuple[np.ndarray | None, list[str]]]) -> np.ndarray:
    """A grid of pictures (grey where a clip has none), each captioned with its lines."""
    h, w = CELL
    cols = min(COLUMNS, max(1, len(cells)))
    rows = (len(cells) + cols - 1) // cols
    sheet = np.full((rows * h, cols * w, 3), 40, np.uint8)
    for i, (img, lines) in enumerate(cells):
        cell = np.full((h, w, 3), 90, np.uint8)
        if img is not None:
            ih, iw = img.shape[:2]
            s = min(h / ih, w / iw)
            fit = cv2.resize(img, (max(1, int(iw * s)), max(1, int(ih * s))))
            y0, x0 = (h - fit.shape[0]) // 2, (w - fit.shape[1]) // 2
            cell[y0:y0 + fit.shape[0], x0:x0 + fit.shape[1]] = fit
        _label(cell, lines)
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = cell
    return sheet


IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def check_target(path: Path) -> None:
    """Fail before any work if an image cannot be written there."""
    if path.suffix.lower() not in IMAGE_TYPES:
        raise WmError(f"{path}: cannot write an image of type '{path.suffix or '(none)'}'"
                      " (use .jpg or .png)")
    if not path.parent.is_dir():
        raise WmError(f"{path}: folder {path.parent} does not exist")


def write_image(path: Path, img: np.ndarray) -> None:
    ext = path.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(ext, img, params)
    except cv2.error:
        ok = False
    if not ok:
        raise WmError(f"{path}: cannot write an image of type '{ext}' (use .jpg or .png)")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as e:
        raise WmError(f"{path}: cannot be written: {e.strerror}") from None
