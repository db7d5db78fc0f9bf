"""Faults: corrupt checkpoints and state files, NaN, two writers, changed configs, full disk.

Each fault must end in a DittoError that names the file (and field), a non-zero
exit without a traceback from the CLI, and no loss of what was already written.
Most cases run in-process on tiny pytrees; the few CLI cases share one
2-step tiny world model.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from ditto_jax.core import io
from ditto_jax.errors import DittoError
from tests.conftest import REPO, run_cli

WM_CONFIG = os.path.join(REPO, "experiments/configs/wm.py:tiny")


# ------------------------------------------------------------------ checkpoints
def _tree(scale=1.0):
    import jax.numpy as jnp
    return {"w": jnp.ones((3,)) * scale, "b": {"k": jnp.zeros((2, 2)) + scale}}


def _checkpoints(directory, steps=(1, 2)):
    from ditto_jax.engine.checkpoint import Checkpointer
    ckpt = Checkpointer(directory, save_every=1, keep=5)
    for s in steps:
        ckpt.save(s, _tree(s), {"step": s})
    ckpt.close()


def _garble(step_dir, how):
    if how == "meta":
        with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
            f.write('{"step": ')
    elif how == "arrays":  # damage deep inside the array store: only a restore finds it
        for root, _, files in os.walk(os.path.join(step_dir, "state")):
            if os.path.basename(root) == "d":
                for name in files:
                    with open(os.path.join(root, name), "wb") as f:
                        f.write(b"\0" * 7)
    elif how == "missing":
        shutil.rmtree(os.path.join(step_dir, "state"))


@pytest.mark.parametrize("how", ["meta", "arrays", "missing"])
def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path, capsys, how):
    from ditto_jax.engine.checkpoint import Checkpointer
    directory = str(tmp_path / "checkpoints")
    _checkpoints(directory)
    _garble(os.path.join(directory, "2"), how)
    # Read-only (the next stage loading a model): falls back, moves nothing.
    ckpt = Checkpointer(directory, read_only=True)
    state, meta = ckpt.restore(_tree())
    ckpt.close()
    assert ckpt.restored_step == 1 and meta == {"step": 1}
    np.testing.assert_allclose(state["w"], 1.0)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and os.path.join(directory, "2") in warnings[0], err
    assert "using step 1" in warnings[0]
    assert os.path.isdir(os.path.join(directory, "2"))
    # Writable (resuming training): the corrupt step is moved aside, then saved anew.
    ckpt = Checkpointer(directory, save_every=1, keep=5)
    if how != "arrays":
        assert ckpt.latest_step() == 1  # obvious damage: found without reading arrays
    ckpt.read_meta()
    ckpt.restore(_tree())
    assert ckpt.restored_step == 1
    kept = tmp_path / "checkpoints.corrupt" / "2"
    assert kept.is_dir()  # nothing deleted
    ckpt.save(2, _tree(5.0), {"step": 2})
    ckpt.close()
    state, _ = Checkpointer(directory, read_only=True).restore(_tree())
    np.testing.assert_allclose(state["w"], 5.0)


def test_no_readable_checkpoint_names_the_directory(tmp_path):
    from ditto_jax.engine.checkpoint import Checkpointer
    directory = str(tmp_path / "checkpoints")
    _checkpoints(directory)
    for s in ("1", "2"):
        _garble(os.path.join(directory, s), "meta")
    ckpt = Checkpointer(directory, save_every=1)
    with pytest.raises(DittoError, match="No readable checkpoint") as e:
        ckpt.read_meta()
    assert directory in str(e.value)
    assert sorted(os.listdir(directory)) == ["1", "2"]  # nothing moved or lost
    ckpt.close()


def test_restore_failing_on_every_step_touches_nothing(tmp_path):
    import jax.numpy as jnp
    from ditto_jax.engine.checkpoint import Checkpointer
    directory = str(tmp_path / "checkpoints")
    _checkpoints(directory)
    wrong = {"w": jnp.ones((5,)), "b": {"k": jnp.zeros((2, 2))}}  # another shape
    ckpt = Checkpointer(directory, save_every=1)
    with pytest.raises(DittoError, match="could be restored") as e:
        ckpt.restore(wrong)
    assert directory in str(e.value)
    ckpt.close()
    assert sorted(os.listdir(directory)) == ["1", "2"]
    assert not (tmp_path / "checkpoints.corrupt").exists()


def test_only_reads_orphaned_by_a_failed_restore_are_silenced(monkeypatch):
    """A failed restore leaves Orbax read coroutines behind; when the garbage collector
    closes them they report through `sys.unraisablehook`. Exactly those are dropped, and
    only once a restore has failed; anything else still reaches the previous hook."""
    from ditto_jax.engine import checkpoint
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(checkpoint, "_FAILED_RESTORES", [0])
    checkpoint._quiet_orphaned_reads()

    def coroutine(filename):
        namespace = {}
        exec(compile("async def read():\n    pass\n", filename, "exec"), namespace)
        return namespace["read"]()

    orbax_read = coroutine(os.path.join("site-packages", "orbax", "serialization.py"))
    ours = coroutine(os.path.join("ditto_jax", "engine.py"))
    lost = types.SimpleNamespace(exc_value=Exception("Encountered error while reading"),
                                 object=orbax_read)
    mine = types.SimpleNamespace(exc_value=Exception("a real bug"), object=ours)
    loop = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"), object=None)
    try:
        sys.unraisablehook(lost)  # no restore has failed yet: reported
        sys.unraisablehook(loop)  # always an orphan: dropped
        checkpoint._FAILED_RESTORES[0] = 1
        sys.unraisablehook(lost)  # now an orphan: dropped
        sys.unraisablehook(mine)  # not Orbax's: reported
        sys.unraisablehook(types.SimpleNamespace(exc_value=ValueError("x"), object=None))
    finally:
        orbax_read.close()
        ours.close()
    assert [u.exc_value.args[0] for u in seen] == [
        "Encountered error while reading", "a real bug", "x"]


def test_save_refuses_a_nonfinite_state_and_names_the_last_good_step(tmp_path):
    import jax.numpy as jnp
    from ditto_jax.engine.checkpoint import Checkpointer
    directory = str(tmp_path / "checkpoints")
    ckpt = Checkpointer(directory, save_every=1, keep=5)
    ckpt.save(1, _tree(), {})
    ckpt.save(2, _tree(2.0), {})
    bad = {"w": jnp.array([1.0, jnp.nan, 0.0]), "b": {"k": jnp.zeros((2, 2))}}
    with pytest.raises(DittoError) as e:
        ckpt.save(3, bad, {})
    msg = str(e.value)
    assert "after step 3" in msg and "['w']" in msg and "not saved" in msg
    assert "last good checkpoint is step 2" in msg and "resume from step 2" in msg
    ckpt.close()
    assert sorted(d for d in os.listdir(directory) if d.isdigit()) == ["1", "2"]


def test_nan_metric_advice_does_not_loop(tmp_path):
    """The metrics of update N come from the parameters after N-1: that checkpoint is
    poisoned too, and the advice must lead past it, not back to it."""
    from ditto_jax.engine.checkpoint import Checkpointer, fetch_checked_metrics
    directory = str(tmp_path / "checkpoints")
    ckpt = Checkpointer(directory, save_every=1, keep=5)
    for s in (2, 4):
        ckpt.save(s, _tree(s), {})
    with pytest.raises(DittoError) as e:
        fetch_checked_metrics({"loss": np.float32(np.nan)}, 5, ckpt, str(tmp_path),
                              change="lower config.optim.lr (now 1.0)")
    msg = str(e.value)
    assert "at step 5" in msg and "after step 4" in msg
    assert "would diverge again" in msg and "resume from step 2" in msg
    assert "config.optim.lr (now 1.0)" in msg
    with pytest.raises(DittoError) as e:  # a checkpoint two steps back is not condemned
        fetch_checked_metrics({"loss": np.inf}, 6, ckpt, str(tmp_path))
    assert "last good checkpoint is step 4" in str(e.value)
    assert "would diverge again" not in str(e.value)
    ckpt.close()


def test_checkpoint_full_disk_is_a_ditto_error(tmp_path):
    from ditto_jax.engine.checkpoint import Checkpointer
    directory = str(tmp_path / "checkpoints")
    ckpt = Checkpointer(directory, save_every=1, keep=5)
    ckpt.save(1, _tree(), {})
    ckpt.wait()

    def full(*a, **k):
        raise RuntimeError("save failed") from OSError(errno.ENOSPC, "No space left on device")

    ckpt.manager.save = full
    with pytest.raises(DittoError, match="No space left on device") as e:
        ckpt.save(2, _tree(), {})
    assert os.path.join(directory, "2") in str(e.value)
    ckpt.close()
    assert "1" in os.listdir(directory)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs) to fill: needs root and `mount`."""
    where = tmp_path / "small_disk"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {proc.stderr.strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _noise(megabytes, seed=0):
    """Incompressible parameters (Orbax compresses constant arrays to nothing)."""
    import jax
    return {"w": jax.random.normal(jax.random.key(seed), (megabytes * 256, 1024)),
            "b": jax.numpy.zeros(3)}


def test_checkpoint_save_on_a_real_full_disk_stops_with_a_clear_error(small_disk):
    """TensorStore reports ENOSPC from its writer threads as a ValueError; it must become
    a DittoError at once, and the step saved before must stay readable."""
    from ditto_jax.engine.checkpoint import Checkpointer
    directory = str(small_disk / "checkpoints")
    ckpt = Checkpointer(directory, save_every=1, keep=5)
    ckpt.save(1, _tree(), {"step": 1})
    t0 = time.perf_counter()
    with pytest.raises(DittoError) as e:
        ckpt.save(2, _noise(4), {"step": 2})  # 4 MiB into the 1 MiB disk
        ckpt.close()
    assert time.perf_counter() - t0 < 30
    msg = str(e.value)
    assert msg.startswith("No space left on device while saving checkpoint") and \
        directory in msg and "\n" not in msg
    ckpt.close()  # a second close after the failure neither hangs nor raises again
    again = Checkpointer(directory, read_only=True)
    state, meta = again.restore(_tree(0.0))
    assert again.restored_step == 1 and meta == {"step": 1}
    np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(3))
    again.close()


def test_a_checkpoint_save_past_its_deadline_is_an_error_not_a_hang(tmp_path, monkeypatch):
    """The wait on Orbax's writer threads has a deadline; past it the save is abandoned
    (the CLI then exits without joining those threads)."""
    from ditto_jax.engine import checkpoint as ckpt_lib
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), save_every=1, keep=5)
    monkeypatch.setattr(ckpt_lib, "SAVE_DEADLINE_S", 1e-4)
    ckpt.manager.save(1, args=ckpt_lib.ocp.args.Composite(   # a real 16 MiB async save
        state=ckpt_lib.ocp.args.StandardSave(_noise(16)), meta=ckpt_lib.ocp.args.JsonSave({})))
    with pytest.raises(DittoError, match=r"did not finish within 0.0001 s") as e:
        ckpt.wait()
    assert e.value.path == str(tmp_path / "checkpoints")
    assert "DITTO_CHECKPOINT_DEADLINE_S" in str(e.value)
    ckpt.close()  # returns at once: Orbax's close would wait on the abandoned save
    for waiter in list(ckpt_lib._ABANDONED):  # let the real save end before the next test
        waiter.join(60)
        ckpt_lib._ABANDONED.remove(waiter)
    assert not ckpt_lib.abandoned_saves()


def test_a_full_disk_while_finalising_a_recording_keeps_the_episodes(small_disk):
    """TFDS's writer fails with a TF error; it is one clear DittoError, the staged
    episodes stay, and finalising again with space works."""
    from ditto_jax.data.reader import load_episodes
    from ditto_jax.data.writer import EpisodeWriter
    from tests.test_rlds import ACTIONS, make_episode
    out = str(small_disk / "ds")
    rng = np.random.default_rng(0)
    w = EpisodeWriter(out, obs_shape=(64, 64, 1), action_meanings=ACTIONS)
    for i in range(4):  # ~0.16 MiB of half-noise frames each: staged fits, a copy doesn't
        w.write_episode(make_episode(rng, 80, shape=(64, 64, 1)), {"episode_id": i})
    with pytest.raises(DittoError) as e:
        w.finalize()
    msg = str(e.value)
    assert msg.startswith("No space left on device while finalising the recorded dataset")
    assert out in msg and "Traceback" not in msg and "\n" not in msg
    assert w.num_staged == 4 and not os.path.exists(os.path.join(out, "dataset_info.json"))
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    w.finalize()
    assert [e.metadata["episode_id"] for e in load_episodes(out)] == [0, 1, 2, 3]


# ------------------------------------------------------------------ JSON state
def test_json_atomic_write_and_corrupt_read(tmp_path):
    path = str(tmp_path / "eval" / "ditto.json")
    io.write_json_atomic(path, {"return_mean": 1.5})
    assert io.read_json(path) == {"return_mean": 1.5}
    assert not [p for p in os.listdir(tmp_path / "eval") if ".tmp" in p]
    with open(path, "w") as f:
        f.write('{"return_mean": 1.')
    with pytest.raises(DittoError) as e:
        io.read_json(path, what="evaluation result")
    assert path in str(e.value) and "corrupt" in str(e.value)
    assert io.read_json(path, default=None, tolerate=True) is None  # caches: rebuilt
    assert io.read_json(str(tmp_path / "absent.json"), default={}) == {}


def test_json_write_on_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "stage_seconds.json")
    io.write_json_atomic(path, {"wm": 1.0})

    def full(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DittoError, match="No space left on device") as e:
        io.write_json_atomic(path, {"wm": 2.0})
    monkeypatch.undo()
    assert path in str(e.value)
    assert io.read_json(path) == {"wm": 1.0}
    assert os.listdir(tmp_path) == ["stage_seconds.json"]


def test_jsonl_torn_last_line_is_dropped_and_repaired(tmp_path, capsys):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        f.write('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in io.read_jsonl(path)] == [1, 2]
    assert "torn last line" in capsys.readouterr().err
    with open(path) as f:
        assert f.read().endswith('"lo')  # reading alone changes nothing
    io.read_jsonl(path, repair=True)
    with open(path) as f:
        assert f.read() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
    with open(path, "w") as f:
        f.write('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(DittoError, match="line 2") as e:
        io.read_jsonl(path)
    assert path in str(e.value)


def test_metric_writer_survives_a_torn_log_and_a_full_disk(tmp_path, monkeypatch):
    from ditto_jax.engine.metrics import MetricWriter, read_jsonl
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n{"step": 3, "lo')
    writer = MetricWriter(str(tmp_path), tensorboard=False)
    writer.truncate_after(2)
    writer.write(3, {"loss": 0.5})
    assert [r["step"] for r in read_jsonl(str(path))] == [1, 2, 3]
    before = path.read_bytes()

    def full(fd, data):
        os.ftruncate(fd, os.fstat(fd).st_size + 3)  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(DittoError, match="No space left on device") as e:
        writer.write(4, {"loss": 0.25})
    monkeypatch.undo()
    assert str(path) in str(e.value)
    assert path.read_bytes() == before  # no torn line, nothing lost
    writer.close()


# ----------------------------------------------------------------- workdir lock
def _hold_lock(workdir):
    code = ("import sys, time; from ditto_jax.core.io import lock_workdir; "
            "l = lock_workdir(sys.argv[1], 'test holder'); print('held', flush=True); "
            "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(workdir)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_and_a_dead_holder_does_not_block(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        with pytest.raises(DittoError) as e:
            io.lock_workdir(tmp_path, "test")
        msg = str(e.value)
        assert str(tmp_path) in msg and f"PID {holder.pid}" in msg
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: the kernel drops its lock
        holder.wait()
    lock = io.lock_workdir(tmp_path, "test")
    with open(tmp_path / ".lock") as f:
        assert f"PID {os.getpid()}" in f.read()
    lock.release()
    with io.lock_workdir(tmp_path, "again"):
        pass


# -------------------------------------------------------------- compatibility
def test_check_compatible_names_every_changed_field():
    from ditto_jax.engine.checkpoint import check_compatible
    saved = {"optim": {"lr": 1e-3, "eps": 1e-5}, "train": {"batch_size": 8, "seed": 0},
             "loss": {"beta": 0.1}}
    now = {"optim": {"lr": 3e-4, "eps": 1e-5}, "train": {"batch_size": 16, "seed": 1},
           "loss": {"beta": 0.1}}
    with pytest.raises(DittoError) as e:
        check_compatible(saved, now, ("loss", "optim", "train"), path="/x/checkpoints",
                         what="world-model checkpoint")
    msg = str(e.value)
    for field in ("optim.lr", "train.batch_size", "train.seed"):
        assert field in msg
    assert "loss" not in msg.split("different")[1].split("(")[0]
    assert "/x/checkpoints" in msg


# ------------------------------------------------------------- tracking, media
def _wandb_records(run_dir, timeout_s=30.0):
    """The records of an offline wandb run (its `run-<id>.wandb` file), once complete.

    wandb 0.31 ships no Python reader for this file: it is a LevelDB-style log (a 7-byte
    ":W&B" header, 32 KiB blocks, 7-byte record headers: crc32, length, type) of the
    `wandb_internal_pb2.Record` protobufs that wandb itself defines. `wandb.finish()`
    returns before wandb's service process has flushed the log (about 1 close in 6 here
    found only the header, complete 0.2 s later), so this waits, up to `timeout_s`, for
    the run's last record (`exit`).
    """
    import time
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(_read_wandb_log(run_dir))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"no exit record in {run_dir} after {timeout_s} s: "
                                 f"{[r.WhichOneof('record_type') for r in records]}")
        time.sleep(0.1)


def _read_wandb_log(run_dir):
    import glob
    import struct
    from wandb.proto import wandb_internal_pb2
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    pos, block, chunk = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def _wandb_history(run_dir):
    rows = []
    for record in _wandb_records(run_dir):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def test_wandb_logging_offline_with_the_real_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import glob
    from PIL import Image
    from ditto_jax.engine.metrics import MetricWriter
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = str(tmp_path / "run")
    tracking = {"wandb_project": "ditto-test", "wandb_mode": "offline", "wandb_name": ""}
    writer = MetricWriter(workdir, tensorboard=False, tracking=tracking,
                          run_config={"lr": 1e-3})
    writer.write(5, {"loss": np.float32(1.5)})
    writer.add_image("world_model/open_loop", np.zeros((4, 6, 1), np.uint8), 5)
    frames = np.random.default_rng(0).integers(0, 255, (3, 4, 6, 3), np.uint8)
    writer.add_video("eval/episode", frames, 5, fps=10)
    writer.close()
    (run_dir,) = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
    history = _wandb_history(run_dir)
    logged = {k: v for row in history for k, v in row.items()}
    assert logged["loss"] == 1.5 and logged["_step"] == 5
    assert logged["world_model/open_loop/_type"] == "image-file"
    assert logged["eval/episode/_type"] == "video-file"
    video = os.path.join(run_dir, "files", logged["eval/episode/path"])
    assert video.endswith(".gif")
    with Image.open(video) as gif:  # the episode itself: 3 frames at 10 fps
        assert gif.n_frames == 3 and gif.size == (6, 4) and gif.info["duration"] == 100
    runs = [r.run for r in _wandb_records(run_dir) if r.WhichOneof("record_type") == "run"]
    assert runs[0].project == "ditto-test"
    config = {item.key: item.value_json for item in runs[0].config.update}
    assert json.loads(config["lr"]) == 1e-3
    # A resumed run continues the same wandb run id.
    run_id = runs[0].run_id
    assert io.read_json(os.path.join(workdir, "wandb_run.json"))["id"] == run_id
    MetricWriter(workdir, tensorboard=False, tracking=tracking).close()
    # The run id from each run directory's own records: wandb names a resumed run's
    # directory offline-run-TIME-ID, plus "-1" when TIME is the first run's second.
    run_dirs = glob.glob(os.path.join(workdir, "wandb", "offline-run-*"))
    assert len(run_dirs) == 2, run_dirs
    ids = [next(r.run.run_id for r in _wandb_records(d) if r.WhichOneof("record_type") == "run")
           for d in run_dirs]
    assert ids == [run_id, run_id]


def test_wandb_off_by_default_and_missing_wandb_is_a_clear_error(tmp_path, monkeypatch):
    from ditto_jax.core.config import load_config
    from ditto_jax.engine.metrics import MetricWriter
    config = load_config(WM_CONFIG)
    assert config.tracking.wandb_project == ""
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails
    MetricWriter(str(tmp_path), tensorboard=False, tracking=config.tracking.to_dict()).close()
    with pytest.raises(DittoError, match="wandb is not installed"):
        MetricWriter(str(tmp_path), tensorboard=False, tracking={"wandb_project": "p"})


def _event_bytes(workdir):
    out = b""
    for root, _, files in os.walk(os.path.join(workdir, "tensorboard")):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out += f.read()
    return out


def test_images_and_videos_go_to_tensorboard(tmp_path, monkeypatch, capsys):
    from ditto_jax.engine import metrics
    from ditto_jax.engine.metrics import MetricWriter
    writer = MetricWriter(str(tmp_path))
    writer.add_image("world_model/open_loop", np.zeros((8, 12, 3), np.uint8), 3)
    monkeypatch.setattr(metrics, "has_moviepy", lambda: False)
    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 1), np.uint8)
    writer.add_video("eval/ditto_episode", frames, 3)
    writer.add_video("eval/ditto_episode", frames, 4)
    writer.close()
    events = _event_bytes(str(tmp_path))
    assert b"world_model/open_loop" in events and b"eval/ditto_episode_frames" in events
    notes = [line for line in capsys.readouterr().err.splitlines() if "moviepy" in line]
    assert len(notes) == 1  # said once
    grid = metrics.frame_grid(np.zeros((5, 8, 8, 3), np.uint8))
    assert grid.shape == (16, 32, 3)


def test_prediction_strip_is_labelled(tmp_path):
    from PIL import Image
    from ditto_jax.core import viz
    truth = np.full((2, 6, 16, 16, 1), 128, np.uint8)
    png = viz.save_prediction_strip(truth, truth, str(tmp_path / "strip"), context=2)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    scale = 2
    strip_h = (2 * 2 * 16 + 2 * 2) * scale
    assert img.shape[0] == strip_h + viz.HEADER_HEIGHT
    assert img.shape[1] == (6 * 16 + 2) * scale + viz.LABEL_WIDTH
    margin = img[viz.HEADER_HEIGHT:, :viz.LABEL_WIDTH]
    header = img[:viz.HEADER_HEIGHT, viz.LABEL_WIDTH:]
    # Text drawn on white: dark pixels next to each row and above both column groups.
    for row in range(4):
        band = margin[row * 16 * scale + row // 2 * 2 * scale:][:16 * scale]
        assert (band.sum(-1) < 200).any(), row
    observed, imagined = header[:, :2 * 16 * scale], header[:, (2 * 16 + 2) * scale:]
    assert (observed.sum(-1) < 200).any() and (imagined[..., 0] > imagined[..., 1] + 100).any()
    assert os.path.exists(tmp_path / "strip.gif")


# --------------------------------------------------------------- the CLI, end to end
def _train(data, workdir, steps, *extra):
    return run_cli("train-wm", "--config", WM_CONFIG, "--data", data, "--workdir", workdir,
                   "--steps", steps, "--quiet", "--config.train.log_every=1",
                   "--config.train.save_every=1", "--config.train.keep_checkpoints=3",
                   "--config.train.strip_every=0", "--config.train.eval_every=0", *extra)


@pytest.fixture(scope="module")
def two_step_wm(pong_dataset, tmp_path_factory):
    """A tiny world model with checkpoints at steps 1 and 2 (copied by each test)."""
    workdir = tmp_path_factory.mktemp("wm2") / "wm"
    proc = _train(pong_dataset, workdir, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def _fails_cleanly(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr[-3000:])


def test_cli_resumes_past_a_corrupt_newest_checkpoint(two_step_wm, pong_dataset, tmp_path):
    workdir = tmp_path / "wm"
    shutil.copytree(two_step_wm, workdir)
    _garble(str(workdir / "checkpoints" / "2"), "arrays")
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # and a torn metrics line from the "crash"
    proc = _train(pong_dataset, workdir, 3, "--config.train.log_every=2")  # loop settings
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "resumed from step 1" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "checkpoint" in line and
                "unreadable" in line]
    assert len(warnings) == 1 and str(workdir / "checkpoints" / "2") in warnings[0]
    assert (workdir / "checkpoints.corrupt" / "2").is_dir()
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert sorted(d for d in os.listdir(workdir / "checkpoints") if d.isdigit()) == \
        ["1", "2", "3"]


def test_cli_refuses_changed_objective(two_step_wm, pong_dataset, tmp_path):
    # (Changed loop settings are accepted: see the corrupt-checkpoint resume above.)
    workdir = tmp_path / "wm"
    shutil.copytree(two_step_wm, workdir)
    before = sorted(os.listdir(workdir / "checkpoints"))
    proc = _train(pong_dataset, workdir, 3, "--config.optim.lr=0.5",
                  "--config.train.batch_size=16", "--config.loss.beta=0.5",
                  "--config.train.seed=3")
    _fails_cleanly(proc, "optim.lr", "train.batch_size", "loss.beta", "train.seed",
                   str(workdir / "checkpoints"))
    assert sorted(os.listdir(workdir / "checkpoints")) == before


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_cli_second_writer_gets_the_pid(tmp_path, pong_dataset):
    workdir = tmp_path / "wm"
    holder = _hold_lock(workdir)
    try:
        t0 = time.time()
        proc = _train(pong_dataset, workdir, 1)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    _fails_cleanly(proc, f"PID {holder.pid}", str(workdir))
    assert not (workdir / "checkpoints").exists()
    assert time.time() - t0 < 120


def test_cli_sigterm_keeps_the_checkpoints_and_says_where(tmp_path, pong_dataset):
    """SIGTERM used to end `ditto train-wm` silently; now the checkpoint saves finish,
    the lock is released and one line names the workdir, the newest checkpoint and how to
    resume; the exit code is 143 (128 + SIGTERM).

    The signal is sent while a save is in flight (its Orbax tmp directory exists). A
    SIGTERM inside `CheckpointManager.save` used to lose that step (its tmp directory was
    left behind in 6 of 6 tries) and, in 1 of 6, print Orbax writer-thread tracebacks at
    exit; the save now runs with signals held, and the step it was writing is kept."""
    from ditto_jax.engine.checkpoint import Checkpointer
    workdir = tmp_path / "wm"
    cmd = [sys.executable, "-m", "ditto_jax.cli", "train-wm", "--config", WM_CONFIG,
           "--data", pong_dataset, "--workdir", str(workdir), "--steps", "100000", "--quiet",
           "--config.train.log_every=1", "--config.train.save_every=2",
           "--config.train.strip_every=0", "--config.train.eval_every=0"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    # (No proc.communicate() in an assert message: without a timeout it waits for all
    # 100000 steps; that hung the suite once.)
    try:
        deadline = time.time() + 300
        while not (workdir / "checkpoints" / "2").is_dir():
            assert proc.poll() is None, "train-wm exited early"
            assert time.time() < deadline, "no checkpoint after 300 s"
            time.sleep(0.5)
        # A save's tmp directory lives for milliseconds: poll without sleeping, and signal
        # anyway after 60 s (then only what holds for any SIGTERM is asserted below).
        in_flight, catch_until = False, time.time() + 60
        while not in_flight and time.time() < catch_until:
            assert proc.poll() is None, "train-wm exited early"
            in_flight = any("tmp" in e.name for e in os.scandir(workdir / "checkpoints"))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    [line] = [line for line in err.splitlines() if "terminated" in line]
    assert line.startswith("ditto train-wm: terminated (SIGTERM); what was written is kept "
                           f"in {workdir} (newest checkpoint: {workdir}/checkpoints/")
    assert line.endswith("; run the same command again to resume")
    ckpt = Checkpointer(str(workdir / "checkpoints"), read_only=True)
    step = ckpt.latest_step()
    ckpt.close()
    assert f"checkpoints/{step})" in line
    assert step >= (4 if in_flight else 2)  # a save in flight was kept
    left = [p.name for p in (workdir / "checkpoints").iterdir() if "tmp" in p.name]
    assert not left, f"interrupted saves left behind: {left}"
    rows = io.read_jsonl(str(workdir / "metrics.jsonl"), what="metrics log")
    assert [r["step"] for r in rows if "loss" in r][:2] == [1, 2]
    lock = io.lock_workdir(str(workdir), "test")  # released: a resume could start
    lock.release()


def test_interruptions_held_delivers_the_signal_after_the_block():
    """A SIGTERM (or Ctrl-C) inside `interruptions_held` lets the block finish, then
    reaches the command's handler once; the handlers are restored either way."""
    from ditto_jax.errors import Terminated, interruptions_held

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    # Python's own Ctrl-C handler, whatever this process inherited (a suite started in
    # the background by a non-interactive shell starts with SIGINT ignored).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(Terminated):
            with interruptions_held():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGINT)
                done.append("the block ran to its end")
        assert done == ["the block ran to its end"]
        assert signal.getsignal(signal.SIGTERM) is terminate
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with interruptions_held():
            pass  # nothing held: nothing delivered
        with pytest.raises(KeyboardInterrupt) as caught:
            with interruptions_held():
                signal.raise_signal(signal.SIGINT)
        assert not isinstance(caught.value, Terminated)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
