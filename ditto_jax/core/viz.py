"""Images and videos for humans: prediction strips, episode videos."""
import os

import numpy as np
from PIL import Image


def _to_rgb(frames):
    frames = np.asarray(frames)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames.astype(np.uint8)


def save_prediction_strip(truth, model, path, *, context, scale=2):
    """Writes `path.png` (rows: truth, model per sample; columns: time) and `path.gif`.

    truth, model: uint8 (B, T, H, W, C). A red bar marks where the model stops
    seeing frames and starts imagining. The PNG is labelled: each row says
    "truth" or "model", the columns are headed "observed" and "imagined".
    """
    truth, model = _to_rgb(truth), _to_rgb(model)
    assert truth.shape == model.shape, (truth.shape, model.shape)
    b, t, h, w, _ = truth.shape
    gap = 2
    rows, labels = [], []
    for i in range(b):
        for name, seq in (("truth", truth[i]), ("model", model[i])):
            row = np.concatenate(list(seq), axis=1)
            bar = np.zeros((h, gap, 3), np.uint8)
            bar[..., 0] = 255
            row = np.concatenate([row[:, :context * w], bar, row[:, context * w:]], axis=1)
            labels.append((name, sum(r.shape[0] for r in rows)))
            rows.append(row)
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows, axis=0)
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                       Image.NEAREST)
    img = _label_strip(img, labels, scale=scale, row_height=h * scale,
                       observed_width=context * w * scale, bar_width=gap * scale)
    img.save(path + ".png")
    frames = []
    for k in range(t):
        pair = np.concatenate([np.concatenate([truth[i, k], model[i, k]], axis=1)
                               for i in range(b)], axis=0)
        frames.append(Image.fromarray(pair).resize((pair.shape[1] * scale, pair.shape[0] * scale),
                                                   Image.NEAREST))
    frames[0].save(path + ".gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
    return path + ".png"


LABEL_WIDTH = 44   # pixels left of the strip for "truth" / "model"
HEADER_HEIGHT = 14  # pixels above it for "observed" / "imagined"


def _label_strip(img, labels, *, scale, row_height, observed_width, bar_width):
    """`img` with a white margin: row labels on the left, column headings on top.

    labels: (text, top row of that strip row in unscaled pixels).
    """
    from PIL import ImageDraw
    out = Image.new("RGB", (img.width + LABEL_WIDTH, img.height + HEADER_HEIGHT), "white")
    out.paste(img, (LABEL_WIDTH, HEADER_HEIGHT))
    draw = ImageDraw.Draw(out)
    font = _font()
    draw.text((LABEL_WIDTH + 2, 1), "observed", fill=(0, 0, 0), font=font)
    draw.text((LABEL_WIDTH + observed_width + bar_width + 2, 1), "imagined",
              fill=(200, 0, 0), font=font)
    for name, y in labels:
        top = HEADER_HEIGHT + y * scale
        draw.text((2, top + max(row_height // 2 - 6, 0)), name, fill=(0, 0, 0), font=font)
    return out


def _font():
    from PIL import ImageFont
    try:
        return ImageFont.load_default()
    except Exception:  # very old Pillow without a bundled font
        return None


def save_video(frames, path, fps=30, scale=3):
    """Saves uint8 frames (T, H, W, C) as MP4 when ffmpeg is available, else GIF."""
    frames = _to_rgb(frames)
    frames = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)
    base, _ = os.path.splitext(path)
    try:
        import mediapy
        mediapy.write_video(base + ".mp4", frames, fps=fps)
        return base + ".mp4"
    except Exception:  # no ffmpeg binary: fall back to a GIF
        imgs = [Image.fromarray(f) for f in frames]
        imgs[0].save(base + ".gif", save_all=True, append_images=imgs[1:],
                     duration=int(1000 / fps), loop=0)
        return base + ".gif"
