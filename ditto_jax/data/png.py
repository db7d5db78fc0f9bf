"""PNG codec for RLDS frames: `encode_png` (one frame) and `decode_png_frames` (a whole
episode at once, OpenCV in a few threads), plus the frame resize used when loading."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ditto_jax.errors import DittoError

_DECODE_CHUNK = 256  # frames per decode task
_pool = None


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, C) frame, C in {1, 3}.

    Every row uses the 'Up' filter: it compresses Atari frames about as well as adaptive
    filtering.
    """
    import cv2
    img = frame[..., 0] if frame.shape[-1] == 1 else frame[..., ::-1]  # cv2 wants BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img),
                           [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    if not ok:  # pragma: no cover
        raise DittoError("Could not PNG-encode a frame", field="observation",
                         got=f"shape {frame.shape}, dtype {frame.dtype}")
    return buf.tobytes()


def _decode_png(data: bytes) -> np.ndarray:
    """One PNG as a uint8 (H, W, C) frame (OpenCV; RGB order). Raises ValueError."""
    import cv2
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("OpenCV could not decode the PNG (corrupt data)")
    if img.dtype != np.uint8:
        raise ValueError(f"PNG is {img.dtype}, expected 8-bit")
    if img.ndim == 2:
        return img[..., None]
    if img.shape[-1] == 3:
        return img[..., ::-1]
    if img.shape[-1] == 4:
        return img[..., [2, 1, 0, 3]]
    return img


def _decode_range(lo, hi, pngs):
    return [_decode_png(pngs[i]) for i in range(lo, hi)]


def _parallel(fn, n, *args):
    """Runs fn(lo, hi, *args) over chunks of range(n) in a small thread pool (OpenCV
    releases the GIL); returns the concatenated results in order."""
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
    """Decodes a sequence of same-size PNGs into one uint8 (N, H, W, C) array: OpenCV per
    frame, in a few threads. Raises ValueError on bad data.

    A hand-vectorised decoder (numpy filters over zlib output) read a dataset 1.8x faster
    here, but that is at most about 1% of `ditto run --preset demo`, and it was slower on
    RL Unplugged's frames (`python benchmarks/png_decode.py`,
    benchmarks/results/png_decode.json), so the library does it.
    """
    n = len(pngs)
    if n == 0:
        raise ValueError("no frames")
    frames = _parallel(_decode_range, n, pngs)
    for i, img in enumerate(frames):
        if img.shape != frames[0].shape:
            raise ValueError(f"frame {i} has shape {img.shape}, frame 0 has "
                             f"{frames[0].shape}")
    out = np.stack(frames)
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
