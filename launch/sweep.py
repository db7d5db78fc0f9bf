#!/usr/bin/env python
"""Runs a grid of experiments: the same as `ditto sweep ...` (ditto_jax/sweep/command.py).

  python launch/sweep.py experiments/grids/local.py --workers 2
  python launch/sweep.py paper:games=breakout --backend slurm --partition gpu --gpus 1 \
      --time 2-00:00:00 --config.data.rlu_data_dir=/data/tfds
  python launch/sweep.py paper --dry-run
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ditto_jax.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
