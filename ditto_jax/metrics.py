"""Metric sinks shared by the training stages: JSONL, TensorBoard and a progress bar."""
import json
import math
import os

import numpy as np


class MetricWriter:
    """Appends `{"step": s, **metrics}` lines to `metrics.jsonl` and TensorBoard.

    On resume, `truncate_after(step)` drops lines a killed run wrote after its
    last checkpoint, so the log matches an uninterrupted run.
    """

    def __init__(self, workdir, *, enabled=True, tensorboard=True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                try:
                    from tensorboardX import SummaryWriter
                    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
                except ImportError:  # TensorBoard is optional
                    self._tb = None

    def truncate_after(self, step):
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write(self, step, metrics):
        if not self.enabled:
            return
        record = {"step": int(step)}
        record.update({k: float(np.asarray(v)) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and math.isfinite(v):
                    self._tb.add_scalar(k, v, int(step))

    def close(self):
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def first_nonfinite(metrics):
    """Name of the first metric that is NaN or inf, or None."""
    for k, v in metrics.items():
        if not np.all(np.isfinite(np.asarray(v))):
            return k
    return None
