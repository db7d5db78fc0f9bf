"""Metric sinks shared by the training stages: JSONL, TensorBoard, optional wandb.

`metrics.jsonl` is the record of a run; TensorBoard (tensorboardX) and
Weights & Biases are views of it. wandb is off by default and optional: set
`config.tracking.wandb_project` (e.g. `--config.tracking.wandb_project=ditto`)
to log there too. Images (prediction strips) and videos (agent episodes) go to
TensorBoard and wandb through `add_image` / `add_video`.
"""
import importlib.util
import math
import os

import numpy as np

from ditto_jax.core import io
from ditto_jax.errors import DittoError

WANDB_RUN_FILE = "wandb_run.json"  # the wandb run id, so a resumed run continues it


class MetricWriter:
    """Appends `{"step": s, **metrics}` lines to `metrics.jsonl` and TensorBoard.

    On resume, `truncate_after(step)` drops lines a killed run wrote after its
    last checkpoint, so the log matches an uninterrupted run.

    tracking: a mapping (e.g. `config.tracking`) with `wandb_project` (empty: off),
    optionally `wandb_entity`, `wandb_name`, `wandb_group`, `wandb_mode`.
    """

    def __init__(self, workdir, *, enabled=True, tensorboard=True, tracking=None,
                 run_config=None):
        self.enabled = enabled
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        self._wandb = None
        self._notes = set()
        if enabled:
            with io.disk_errors(workdir, "creating"):
                os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                try:
                    from tensorboardX import SummaryWriter
                    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
                except ImportError:  # TensorBoard is optional
                    self._tb = None
            self._repair_torn_tail()
            self._wandb = _start_wandb(workdir, tracking, run_config)

    def _repair_torn_tail(self):
        """Cuts a torn last line (a kill mid-append) so new lines start clean."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return
                f.seek(-1, os.SEEK_END)
                if f.read(1) == b"\n":
                    return
        except FileNotFoundError:
            return
        io.read_jsonl(self.path, what="metrics log", repair=True)

    def truncate_after(self, step):
        if not self.enabled or not os.path.exists(self.path):
            return
        rows = io.read_jsonl(self.path, what="metrics log")
        kept = [r for r in rows if int(r.get("step", 0)) <= step]
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.writelines(_dumps(r) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise io.os_error_to_ditto(e, self.path) from None

    def write(self, step, metrics):
        if not self.enabled:
            return
        record = {"step": int(step)}
        record.update({k: float(np.asarray(v)) for k, v in metrics.items()})
        io.append_jsonl(self.path, record)
        if self._tb is not None:
            with io.disk_errors(os.path.join(self.workdir, "tensorboard")):
                for k, v in record.items():
                    if k != "step" and math.isfinite(v):
                        self._tb.add_scalar(k, v, int(step))
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=int(step))

    def add_scalars(self, scalars, step):
        """Scalars into TensorBoard (and wandb) only, not metrics.jsonl: for results
        computed after training, such as `ditto eval`'s, at the policy's training step."""
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)}
        if self._tb is not None:
            with io.disk_errors(os.path.join(self.workdir, "tensorboard")):
                for k, v in scalars.items():
                    self._tb.add_scalar(k, v, int(step))
        if self._wandb is not None and scalars:
            self._wandb.log(scalars, step=int(step))

    def add_provenance(self, provenance, step):
        """The run's provenance (git SHA, packages, devices, config hash, seeds) beside its
        metrics: a TensorBoard text summary and `provenance.json` next to metrics.jsonl."""
        if not self.enabled:
            return
        import json
        io.write_json_atomic(os.path.join(self.workdir, "provenance.json"), provenance,
                             default=str)
        if self._tb is not None:
            with io.disk_errors(os.path.join(self.workdir, "tensorboard")):
                self._tb.add_text("provenance", "```\n" + json.dumps(
                    provenance, indent=1, default=str) + "\n```", int(step))
        if self._wandb is not None:
            self._wandb.config.update({"provenance": provenance}, allow_val_change=True)

    def add_image(self, tag, image, step):
        """An image (H, W, C) uint8 array, or the path of a PNG, to TensorBoard and wandb."""
        if not self.enabled:
            return
        image = _load_image(image)
        if self._tb is not None:
            with io.disk_errors(os.path.join(self.workdir, "tensorboard")):
                self._tb.add_image(tag, image, int(step), dataformats="HWC")
        if self._wandb is not None:
            self._wandb.log({tag: self._wandb_module.Image(image)}, step=int(step))

    def add_video(self, tag, frames, step, *, fps=15):
        """An episode (T, H, W, C) uint8 as a TensorBoard video (moviepy) and a wandb video.

        Without moviepy TensorBoard cannot encode videos; the frames then go in
        as one image grid (tag + "_frames") and a note says so once.
        """
        if not self.enabled or frames is None:
            return
        frames = np.asarray(frames)
        if frames.shape[-1] == 1:
            frames = np.repeat(frames, 3, axis=-1)
        frames = frames.astype(np.uint8)
        if self._tb is not None:
            with io.disk_errors(os.path.join(self.workdir, "tensorboard")):
                if has_moviepy():
                    self._tb.add_video(tag, frames.transpose(0, 3, 1, 2)[None], int(step),
                                       fps=fps)
                else:
                    self._note("moviepy is not installed, so TensorBoard gets the episode as "
                               f"a frame grid ({tag}_frames) instead of a video; "
                               "`pip install moviepy` for videos")
                    self._tb.add_image(tag + "_frames", frame_grid(frames), int(step),
                                       dataformats="HWC")
        if self._wandb is not None:
            # Encoded here as a GIF (Pillow), so wandb needs no moviepy; wandb >= 0.19
            # requires the format of in-memory video data to be named.
            video = self._wandb_module.Video(_gif_bytes(frames, fps), format="gif")
            self._wandb.log({tag: video}, step=int(step))

    def _note(self, message):
        if message not in self._notes:
            self._notes.add(message)
            io.warn(message)

    @property
    def _wandb_module(self):
        import sys
        return sys.modules["wandb"]

    def close(self):
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _dumps(record):
    import json
    return json.dumps(record)


def has_moviepy():
    return importlib.util.find_spec("moviepy") is not None


def frame_grid(frames, max_frames=16):
    """Up to `max_frames` evenly spaced frames (T, H, W, C) tiled 4 wide, (H', W', C)."""
    frames = np.asarray(frames)
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))
    picked = frames[idx]
    cols = min(4, len(picked))
    rows = -(-len(picked) // cols)
    pad = rows * cols - len(picked)
    if pad:
        picked = np.concatenate([picked, np.zeros((pad,) + picked.shape[1:], picked.dtype)])
    h, w, c = picked.shape[1:]
    return picked.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(
        rows * h, cols * w, c)


def _gif_bytes(frames, fps):
    """Frames (T, H, W, 3) uint8 as an in-memory looping GIF at `fps`."""
    from io import BytesIO

    from PIL import Image
    images = [Image.fromarray(f) for f in frames]
    out = BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)
    out.seek(0)
    return out


def _load_image(image):
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image
        with Image.open(image) as img:
            image = np.asarray(img.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image.astype(np.uint8)


def _start_wandb(workdir, tracking, run_config):
    """A wandb run when `tracking.wandb_project` is set, else None."""
    tracking = dict(tracking or {})
    project = tracking.get("wandb_project")
    if not project:
        return None
    try:
        import wandb
    except ImportError:
        raise DittoError("wandb logging is switched on but wandb is not installed; "
                         "`pip install wandb` or unset the project",
                         field="config.tracking.wandb_project", got=project) from None
    id_path = os.path.join(workdir, WANDB_RUN_FILE)
    saved = io.read_json(id_path, what="wandb run record", default={})
    run_id = saved.get("id") or _new_run_id()
    if saved.get("id") != run_id:
        io.write_json_atomic(id_path, {"id": run_id, "project": project})
    kwargs = dict(project=project, id=run_id, resume="allow", dir=workdir,
                  config=run_config)
    for key in ("entity", "name", "group", "mode"):
        if tracking.get(f"wandb_{key}"):
            kwargs[key] = tracking[f"wandb_{key}"]
    return wandb.init(**kwargs)


def _new_run_id():
    import uuid
    return uuid.uuid4().hex[:12]


def log_media(workdir, *, step=0, video=None, image=None, tag, tracking=None, fps=15,
              scalars=None):
    """One-off media and scalars (e.g. `ditto eval`'s episode video and scores, at the
    policy's training step) into a workdir's TensorBoard."""
    writer = MetricWriter(workdir, tracking=tracking)
    try:
        if scalars:
            writer.add_scalars(scalars, step)
        if video is not None:
            writer.add_video(tag, video, step, fps=fps)
        if image is not None:
            writer.add_image(tag, image, step)
    finally:
        writer.close()


def read_jsonl(path):
    """The records of a metrics log; a torn last line is dropped with a warning."""
    return io.read_jsonl(path, what="metrics log")


def first_nonfinite(metrics):
    """Name of the first metric that is NaN or inf, or None."""
    for k, v in metrics.items():
        if not np.all(np.isfinite(np.asarray(v))):
            return k
    return None
