"""One process of a two-process `jax.distributed` world-model run (CPU, gloo).

Usage: distributed_worker.py COORDINATOR PROCESS_ID DATA WORKDIR. Prints the
parameter sums this host ends with, as JSON, so the test can compare hosts.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(coordinator, process_id, data, workdir):
    import jax
    import numpy as np
    from ditto_jax.core import parallel
    from ditto_jax.core.config import load_config
    from ditto_jax.stages.train_wm import train_world_model

    parallel.initialize_distributed(coordinator, 2, int(process_id))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = load_config(os.path.join(repo, "experiments/configs/wm.py:tiny"),
                         ["--config.train.log_every=1", "--config.train.strip_every=0",
                          "--config.train.eval_every=0"])
    state = train_world_model(config, data=data, workdir=workdir, steps=3, progress=False,
                              log=lambda *a: None)
    # Params are replicated: each host holds a full copy in its addressable shard.
    sums = [float(np.asarray(x.addressable_data(0), np.float64).sum())
            for x in jax.tree.leaves(state.params)]
    loss = float(np.asarray(state.step.addressable_data(0)))  # placeholder, replaced below
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics_path):
        rows = [json.loads(l) for l in open(metrics_path) if '"loss"' in l]
        loss = rows[-1]["loss"] if rows else float("nan")
    print(json.dumps({"process_index": jax.process_index(),
                      "process_count": jax.process_count(), "param_sums": sums,
                      "loss": loss}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
