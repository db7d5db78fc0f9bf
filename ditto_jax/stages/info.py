"""`ditto info`: summarise an RLDS dataset, local or by TFDS name."""
import json

import numpy as np
from ditto_jax.data.reader import dataset_summary


def add_arguments(p):
    p.add_argument("source", help="dataset directory, or a TFDS name such as "
                                  "rlu_atari_checkpoints_ordered/Pong_run_1")
    p.add_argument("--data-dir", default=None,
                   help="TFDS data directory for a TFDS name (default: ~/tensorflow_datasets)")
    p.add_argument("--split", default=None,
                   help="TFDS split expression, e.g. train, 'train[:10]', 'train[10%%:]', "
                        "'train[-5:]', 'a+b', or checkpoint_40:checkpoint_49 (default: "
                        "train, else every split)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def format_summary(s):
    lines = [f"source:        {s.get('source')}"]
    for key in ("game", "protocol", "policy"):
        if s.get(key) is not None:
            lines.append(f"{key + ':':<15}{s[key]}")
    lines += [
        f"episodes:      {s['episodes']}",
        f"steps:         {s['steps']}",
        f"return:        min {s['return_min']:.2f}  mean {s['return_mean']:.2f}  "
        f"max {s['return_max']:.2f}",
        f"observation:   {tuple(s['obs_shape'])} {s['obs_dtype']}",
        "actions:",
    ]
    hist = s.get("action_histogram") or {}
    meanings = s.get("action_meanings") or []
    total = max(sum(int(v) for v in hist.values()), 1)
    for a, count in sorted(hist.items(), key=lambda kv: int(kv[0])):
        name = meanings[int(a)] if int(a) < len(meanings) else ""
        lines.append(f"  {int(a):>3} {name:<16} {int(count):>9}  {100 * int(count) / total:5.1f}%")
    return "\n".join(lines)


def main(args):
    summary = dataset_summary(args.source, data_dir=args.data_dir, split=args.split)
    summary.setdefault("source", args.source)
    if args.json:
        print(json.dumps(_jsonable(summary)))
    else:
        print(format_summary(summary))
    return 0
