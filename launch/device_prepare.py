"""Prepares the GPU shot (issue #17) here, on a CPU: launch/device_prepare.sh runs this.

  launch/device_prepare.sh [--games "pong breakout"] [--expert-episodes 32] ...
      [--no-record] [--no-wheels] [--tiny] [--json]

1. Records (or reuses) each game's datasets as the study preset records them (`ditto run
   --preset study --stages data`: the tracker expert, epsilon-0.3 tracker, random play, at
   most 5,000 steps an episode) into RLDS_DIR/GAME. A game without a tracker expert
   (ditto_jax.experts TRACKERS) is skipped and said so.
2. Exports each dataset to DATA_DIR/GAME/{expert,noisy,random}.npz
   (ditto_jax.data.export: read on the GPU host with numpy, no TensorFlow).
3. Downloads the wheels the host lacks (CPython 3.12, manylinux x86_64, the versions
   installed here) into WHEEL_DIR, by /work/.library/device/README.md's recipe.
4. Checks the payload: git-tracked files + untracked files git does not ignore + shared/ +
   the carried folders must stay under --limit-mib (64 MiB).
5. Prints the device call: command (<= 2000 characters), carry, timeout_s.
A failed check exits with status 2 and a message naming what is wrong.
"""
import argparse
import glob
import importlib.metadata as md
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Missing on the GPU host (KINDS.md's package list): name -> why. Carried at the version
# installed here, --no-deps; their own requirements are on the host except those listed.
WHEELS = {
    "ml_collections": "configs (absl-py, PyYAML: on the host)",
    "gymnasium": "Atari environments (cloudpickle, numpy, typing-extensions: on the host)",
    "farama-notifications": "gymnasium's one requirement the host lacks",
    "ale-py": "the Arcade Learning Environment, ROMs included",
    "rliable": "IQM (rliable.metrics needs only numpy and scipy; its `arch` requirement is "
               "for bootstraps this project does in numpy, so it is not carried)",
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
LIMIT_MIB = 64.0
COMMAND_MAX = 2000
TIMEOUT_S = 480        # the study's deadline is 420 s; a 600-s command limit stays above
DATASETS = ("expert", "noisy", "random")


def fail(msg):
    print(f"device_prepare: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def games_with_trackers(games):
    from ditto_jax.experts.registry import TRACKERS
    return [g for g in games if g in TRACKERS], [g for g in games if g not in TRACKERS]


def record(game, rlds_dir, args):
    cmd = [sys.executable, "-m", "ditto_jax.cli", "run", "--preset",
           "smoke" if args.tiny else "study", "--stages", "data", "--workdir",
           os.path.join(rlds_dir, game), f"--config.game={game}",
           "--config.data.expert_policy=tracker",
           f"--config.data.expert_episodes={args.expert_episodes}",
           f"--config.data.noisy_episodes={args.noisy_episodes}",
           f"--config.data.random_episodes={args.random_episodes}"]
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=ROOT)
    if p.returncode:
        fail(f"recording {game} failed (exit code {p.returncode}): {' '.join(cmd)}")


def export(game, rlds_dir, data_dir):
    from ditto_jax.data.export import export_npz
    out = {}
    for name in DATASETS:
        src = os.path.join(rlds_dir, game, "data", name)
        dst = os.path.join(data_dir, game, f"{name}.npz")
        info = os.path.join(src, "dataset_info.json")
        if not os.path.isfile(info):
            fail(f"no recorded dataset at {src} (run without --no-record)")
        if os.path.isfile(dst) and os.path.getmtime(dst) >= os.path.getmtime(info):
            out[name] = {"path": dst, "bytes": os.path.getsize(dst), "reused": True}
            continue
        out[name] = export_npz(src, dst)
        print(f"exported {src} -> {dst}: {out[name]['episodes']} episodes, "
              f"{out[name]['bytes'] / 2**20:.1f} MiB", flush=True)
    return out


def download_wheels(wheel_dir):
    os.makedirs(wheel_dir, exist_ok=True)
    for name in WHEELS:
        version = md.version(name)
        stem = name.replace("-", "_").lower()
        have = [p for p in glob.glob(os.path.join(wheel_dir, "*.whl"))
                if os.path.basename(p).lower().startswith(stem + "-")]
        keep = [p for p in have if os.path.basename(p).split("-")[1] == version]
        for p in have:  # one version of each: two stop the whole install
            if p not in keep:
                os.remove(p)
        if keep:
            continue
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp"]
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        cmd += ["-d", wheel_dir, f"{name}=={version}"]
        print("+ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode:
            # No wheel on the index (rliable 1.2.0 is an sdist only): build it here, and
            # keep it only if it is pure Python (py3-none-any), which runs anywhere.
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheel_dir,
                   f"{name}=={version}"]
            print("+ " + " ".join(cmd), flush=True)
            built = subprocess.run(cmd).returncode == 0 and [
                p for p in glob.glob(os.path.join(wheel_dir, f"{stem}-{version}-*.whl"))]
            if not built:
                fail(f"could not download or build the wheel {name}=={version}")
            if not built[0].endswith("-py3-none-any.whl"):
                os.remove(built[0])
                fail(f"{name}=={version} has no CPython 3.12 manylinux wheel, and the one "
                     f"built here is not pure Python: {os.path.basename(built[0])}")


def _git_files(*args):
    out = subprocess.run(["git", "ls-files", "-z", *args], cwd=ROOT, capture_output=True,
                         check=True).stdout
    return [f for f in out.decode().split("\0") if f]


def _size(path):
    if os.path.isfile(path) and not os.path.islink(path):
        return os.path.getsize(path)
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def payload_size(carry):
    """{part: bytes} of what a device call sends (README 'Limits': the working tree)."""
    tracked = sum(_size(os.path.join(ROOT, f)) for f in _git_files()
                  if os.path.isfile(os.path.join(ROOT, f)))
    untracked = sum(_size(os.path.join(ROOT, f))
                    for f in _git_files("--others", "--exclude-standard"))
    shared = _size(os.path.join(ROOT, "shared")) if os.path.isdir(
        os.path.join(ROOT, "shared")) else 0
    sizes = {"tracked": tracked, "untracked": untracked, "shared": shared}
    for c in carry:
        sizes[c] = _size(os.path.join(ROOT, c))
    return sizes


def device_call(carry, timeout_s=TIMEOUT_S):
    """The device tool's arguments for the shot; carry = [wheel folder, data folder]."""
    wheels, data = carry
    command = (
        "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; "
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
        f"--upgrade --target /tmp/site {wheels}/*.whl && export PYTHONPATH=/tmp/site:$PWD "
        f"|| exit; PYTHON=python3 DEVICE_STUDY_DATA=$PWD/{data} "
        "DEVICE_STUDY_WORK=/tmp/ditto_device_study launch/device_study.sh")
    return {"command": command, "carry": list(carry), "timeout_s": int(timeout_s)}


def check_call(call):
    """Problems with a device call (an empty list when it is valid)."""
    problems = []
    if len(call["command"]) > COMMAND_MAX:
        problems.append(f"command has {len(call['command'])} characters (> {COMMAND_MAX})")
    if not 1 <= call["timeout_s"] <= 600:
        problems.append(f"timeout_s {call['timeout_s']} not in 1..600")
    if len(call["carry"]) > 8:
        problems.append(f"{len(call['carry'])} carry paths (> 8)")
    for c in call["carry"]:
        if os.path.isabs(c) or c.startswith("..") or len(c) > 200:
            problems.append(f"carry path {c!r} is not relative to the repository")
        elif not os.path.exists(os.path.join(ROOT, c)):
            problems.append(f"carry path {c!r} does not exist")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", default=os.environ.get("DEVICE_GAMES", "pong breakout"),
                   help="games to record (those with a tracker expert); the shot studies "
                        "the first (DEVICE_STUDY_GAME, default pong)")
    p.add_argument("--expert-episodes", type=int, default=None, help="default 32 (--tiny 4)")
    p.add_argument("--noisy-episodes", type=int, default=None, help="default 16 (--tiny 1)")
    p.add_argument("--random-episodes", type=int, default=None, help="default 8 (--tiny 1)")
    p.add_argument("--tiny", action="store_true",
                   help="the smoke preset's short episodes (tests, the --tiny shot)")
    p.add_argument("--rlds-dir", default=".device/rlds", help="recordings (not carried)")
    p.add_argument("--data-dir", default=".device/data", help="exports (carried)")
    p.add_argument("--wheel-dir", default=".whl", help="wheels (carried)")
    p.add_argument("--no-record", action="store_true",
                   help="use the exports already in --data-dir")
    p.add_argument("--no-wheels", action="store_true",
                   help="do not download wheels (use what --wheel-dir holds)")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    p.add_argument("--timeout-s", type=int, default=TIMEOUT_S)
    p.add_argument("--json", action="store_true", help="print the call as one JSON line last")
    args = p.parse_args(argv)
    for name, full, tiny in (("expert_episodes", 32, 4), ("noisy_episodes", 16, 1),
                             ("random_episodes", 8, 1)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    carry = []
    for flag, d in (("--wheel-dir", args.wheel_dir), ("--data-dir", args.data_dir)):
        rel = os.path.relpath(os.path.abspath(os.path.join(ROOT, d)), ROOT)
        if rel.startswith(".."):
            fail(f"{flag} {d} is outside the repository; the device call carries only "
                 "paths inside it")
        carry.append(rel)
    wheel_rel, data_rel = carry
    data_dir, rlds_dir = os.path.join(ROOT, data_rel), os.path.join(ROOT, args.rlds_dir)

    games, skipped = games_with_trackers(args.games.split())
    for g in skipped:
        print(f"{g}: skipped (no tracker expert in ditto_jax.experts)", flush=True)
    if not games:
        fail(f"no game with a tracker expert among {args.games!r}")
    summary = {}
    for g in games:
        if not args.no_record:
            record(g, rlds_dir, args)
            summary[g] = export(g, rlds_dir, data_dir)
        else:
            missing = [n for n in DATASETS
                       if not os.path.isfile(os.path.join(data_dir, g, f"{n}.npz"))]
            if missing:
                fail(f"--no-record, but {os.path.join(data_dir, g)} lacks "
                     f"{', '.join(n + '.npz' for n in missing)}")
    if not args.no_wheels:
        download_wheels(os.path.join(ROOT, wheel_rel))
    if not glob.glob(os.path.join(ROOT, wheel_rel, "*.whl")):
        # Enough for a GPU host of one's own (README "On a GPU host"); the lent host
        # needs the wheels, so no call is printed.
        print(f"exports ready in {data_rel}; no wheels in {wheel_rel}, so no device call "
              "(the lent GPU host needs them: run without --no-wheels)")
        return 0

    sizes = payload_size(carry)
    total = sum(sizes.values())
    for k, v in sizes.items():
        print(f"payload {k}: {v / 2**20:.2f} MiB")
    print(f"payload total: {total / 2**20:.2f} MiB (limit {args.limit_mib:g} MiB)")
    if total > args.limit_mib * 2**20:
        fail(f"the payload is {total / 2**20:.2f} MiB, over the {args.limit_mib:g} MiB a "
             "device call carries: record fewer episodes (--expert-episodes ...) or games")
    call = device_call(carry, args.timeout_s)
    problems = check_call(call)
    if problems:
        fail("; ".join(problems))
    print("\nThe shot, on the GPU host (the device tool's `run`; one rerun fits in a "
          "15-minute lease):")
    print(f"  command   ({len(call['command'])} characters): {call['command']}")
    print(f"  carry     {json.dumps(call['carry'])}")
    print(f"  timeout_s {call['timeout_s']}")
    if args.json:
        print(json.dumps(dict(call, payload_bytes=total, payload=sizes, games=games)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
