"""PNG codec for RLDS frames: `encode_png` (one frame) and `decode_png_frames` (a whole
episode at once, vectorised in numpy), plus the frame resize used when loading."""
from __future__ import annotations

import os
import struct
import zlib
from typing import Sequence

import numpy as np

from ditto_jax.errors import DittoError

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_DECODE_CHUNK = 256  # frames per decode task
_pool = None


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, C) frame, C in {1, 3}.

    Every row uses the 'Up' filter: it compresses Atari frames about as well as adaptive
    filtering, and `decode_png_frames` undoes it for a whole episode with one vectorised
    add per image row.
    """
    import cv2
    img = frame[..., 0] if frame.shape[-1] == 1 else frame[..., ::-1]  # cv2 wants BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img),
                           [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    if not ok:  # pragma: no cover
        raise DittoError("Could not PNG-encode a frame", field="observation",
                         got=f"shape {frame.shape}, dtype {frame.dtype}")
    return buf.tobytes()


def _png_header(data: bytes):
    """(height, width, channels) for an 8-bit non-interlaced PNG, else None."""
    if data[:8] != _PNG_SIG or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or interlace or color not in _PNG_CHANNELS:
        return None
    return h, w, _PNG_CHANNELS[color]


def _png_inflate(data: bytes) -> bytes:
    """The decompressed (still filtered) scanlines of a PNG."""
    n = int.from_bytes(data[33:37], "big")
    if data[37:41] == b"IDAT" and data[45 + n:49 + n] == b"IEND":  # one IDAT chunk
        return zlib.decompress(data[41:41 + n])
    pos, idat, end = 8, [], len(data)
    while pos < end:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    return zlib.decompress(b"".join(idat))


def _decode_png_slow(data: bytes) -> np.ndarray:
    import cv2
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("cv2 could not decode the PNG")
    if img.dtype != np.uint8:
        raise ValueError(f"PNG is {img.dtype}, expected 8-bit")
    if img.ndim == 2:
        return img[..., None]
    if img.shape[-1] == 3:
        return img[..., ::-1]
    if img.shape[-1] == 4:
        return img[..., [2, 1, 0, 3]]
    return img


def _inflate_range(lo, hi, pngs, header):
    """Decompressed scanlines of frames lo..hi; None for a frame with another header."""
    return [_png_inflate(pngs[i]) if pngs[i][16:29] == header else None
            for i in range(lo, hi)]


def _decode_slow_range(lo, hi, pngs, which):
    return [_decode_png_slow(pngs[i]) for i in which[lo:hi]]


def _parallel(fn, n, *args):
    """Runs fn(lo, hi, *args) over chunks of range(n) in a small thread pool (zlib and
    OpenCV release the GIL); returns the concatenated results in order."""
    global _pool
    if n <= _DECODE_CHUNK or (os.cpu_count() or 1) < 2:
        return fn(0, n, *args)
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="frames")
    futures = [_pool.submit(fn, lo, min(lo + _DECODE_CHUNK, n), *args)
               for lo in range(0, n, _DECODE_CHUNK)]
    return [x for f in futures for x in f.result()]


def decode_png_frames(pngs: Sequence[bytes], channels: int | None = None) -> np.ndarray:
    """Decodes a sequence of same-size PNGs into one uint8 (N, H, W, C) array.

    Fast path (8-bit, non-interlaced, rows filtered with None, Sub or Up; `encode_png`
    writes Up): zlib-decompress each frame (in a few threads: zlib releases the GIL),
    then undo the filters for all frames at once: Sub rows with a wrapping uint8 cumsum,
    Up rows with one vectorised add per image row. Frames using Average/Paeth (other
    encoders' adaptive filtering) are decoded by OpenCV. Raises ValueError on bad data.
    """
    n = len(pngs)
    if n == 0:
        raise ValueError("no frames")
    first = _png_header(pngs[0])
    if first is None:
        out = np.stack([_decode_png_slow(p) for p in pngs])
    else:
        h, w, c = first
        stride = w * c + 1
        raws = _parallel(_inflate_range, n, pngs, pngs[0][16:29])
        size = h * stride
        odd = [i for i, r in enumerate(raws) if r is None or len(r) != size]
        for i in odd:
            if raws[i] is not None:
                raise ValueError(f"frame {i}: PNG data has the wrong size")
            raws[i] = bytes(size)  # decoded below by OpenCV
        rows = np.frombuffer(b"".join(raws), np.uint8).reshape(n, h, stride)
        filt = rows[:, :, 0]
        bad = np.any(filt > 2, axis=1)  # Average/Paeth rows: OpenCV decodes these frames
        bad[odd] = True
        out = np.ascontiguousarray(rows[:, :, 1:]).reshape(n, h, w, c)
        if filt.any():
            sub = filt == 1
            if sub.any():  # Sub: each byte adds the same channel of the pixel to its left
                fi, ri = np.nonzero(sub)
                out[fi, ri] = np.cumsum(out[fi, ri], axis=1, dtype=np.uint8)
            up = filt == 2
            all_up = up.all(axis=0)
            for r in range(1, h):  # Up: each row adds the (decoded) row above
                if all_up[r]:
                    out[:, r] += out[:, r - 1]
                elif up[:, r].any():
                    m = up[:, r]
                    out[m, r] += out[m, r - 1]
        which = np.flatnonzero(bad)
        for i, img in zip(which, _parallel(_decode_slow_range, len(which), pngs, which)):
            if img.shape != (h, w, c):
                raise ValueError(f"frame {i} has shape {img.shape}, frame 0 has {(h, w, c)}")
            out[i] = img
    if channels is not None and out.shape[-1] != channels:
        raise ValueError(f"frames have {out.shape[-1]} channels, expected {channels}")
    return out


def _resize_frames(frames, size):
    """Area-interpolated resize of (N, H, W, C) uint8 frames to `size` = (h, w)."""
    import cv2
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((len(frames), h, w, frames.shape[-1]), np.uint8)

    def work(lo, hi, _):
        for i in range(lo, hi):
            out[i] = cv2.resize(frames[i], (w, h), interpolation=cv2.INTER_AREA).reshape(
                h, w, -1)
        return []
    _parallel(work, len(frames), None)
    return out
