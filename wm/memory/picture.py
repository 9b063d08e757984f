"""The size a picture file says it has, read from its header without decoding it: a
74-byte PNG may claim 50000 x 50000 pixels, and decoding first would cost gigabytes (or
an OpenCV assertion) before anything could refuse it.

PNG, JPEG, GIF, BMP, WebP and TIFF headers are read; for anything else None (the decoder
then decides, and the decoded size is checked after)."""
from __future__ import annotations

import struct
from typing import BinaryIO

# Enough for a 48-megapixel phone photo (8000 x 6000); decoding one takes ~150 MB.
MAX_PIXELS = 50_000_000
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SCAN_LIMIT = 1 << 22   # markers are searched this far (EXIF and ICC come first)


def _png(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def _gif(f: BinaryIO, head: bytes) -> tuple[int, int]:
    return struct.unpack("<HH", head[6:10])


def _bmp(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    if struct.unpack("<I", head[14:18])[0] == 12:          # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)


def _webp(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _jpeg(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    f.seek(2)
    while f.tell() < _JPEG_SCAN_LIMIT:
        b = f.read(1)
        while b == b"\xff":           # fill bytes before a marker
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue                  # markers without a length
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if marker in _JPEG_SOF:
            sof = f.read(5)
            if len(sof) < 5:
                return None
            h, w = struct.unpack(">HH", sof[1:5])
            return w, h
        f.seek(length - 2, 1)
    return None


def _tiff(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    end = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(end + "I", head[4:8])[0])
    count = f.read(2)
    if len(count) < 2:
        return None
    size: dict[int, int] = {}
    for _ in range(min(struct.unpack(end + "H", count)[0], 512)):
        entry = f.read(12)
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(end + "HH", entry[:4])
        if tag in (256, 257):
            fmt = "H" if kind == 3 else "I"
            size[tag] = struct.unpack(end + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
    return (size[256], size[257]) if len(size) == 2 else None


def claimed_size(f: BinaryIO) -> tuple[int, int] | None:
    """(width, height) the header of the open file claims; None for an unknown format or
    a header cut short. OSError passes through."""
    head = f.read(32)
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(f, head)
        if head.startswith(b"\xff\xd8"):
            return _jpeg(f, head)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return _gif(f, head)
        if head.startswith(b"BM"):
            return _bmp(f, head)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(f, head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(f, head)
    except struct.error:
        return None
    return None


def too_large(size: tuple[int, int] | None, limit: int = MAX_PIXELS) -> bool:
    return size is not None and size[0] * size[1] > limit
