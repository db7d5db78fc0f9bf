"""`ditto run --preset smoke` end to end, stage skipping, resume, bad input, the notebook."""
import json
import math
import os
import time

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

METHODS = ("ditto", "dbc", "dgail", "bc")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("pipeline") / "pong_smoke")
    t0 = time.perf_counter()
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return workdir, proc, time.perf_counter() - t0


def _results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def test_smoke_results_have_a_finite_row_per_method(smoke_run):
    workdir, proc, seconds = smoke_run
    assert seconds < 300, f"smoke preset took {seconds:.0f} s; the budget is 5 minutes"
    results = _results(workdir)
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == set(METHODS) | {"expert", "random"}
    for name, row in rows.items():
        for key in ("return_mean", "return_se", "length_mean",
                    "expert_normalized_mean_of_seed_means", "expert_normalized_iqm"):
            assert math.isfinite(row[key]), (name, key, row[key])
        assert row["protocol"] == "ditto"
        if name != "expert":  # the expert row is its recorded demonstrations
            assert row["episodes"] >= 10 and len(row["returns"]) == row["episodes"]
        if name in METHODS:  # every learner is asked in its own states (tracker expert)
            for key in ("expert_agreement", "expert_prob_on_policy",
                        "argmax_agreement_on_policy"):
                assert 0.0 <= row[key] <= 1.0, (name, key, row[key])
    # Normalisation is against this table's own expert and random rows.
    assert rows["expert"]["expert_normalized_mean_of_seed_means"] == pytest.approx(1.0)
    assert rows["random"]["expert_normalized_mean_of_seed_means"] == pytest.approx(0.0)
    with open(os.path.join(workdir, "results.md")) as f:
        md = f.read()
    for label in ("DITTO", "D-BC", "D-GAIL", "BC (pixels)", "Expert", "Random"):
        assert f"| {label} |" in md
    d = rows["ditto"]
    assert (f"| {d['expert_agreement']:.3f} | {d['expert_prob_on_policy']:.3f} / "
            f"{d['argmax_agreement_on_policy']:.3f} |") in md
    for rel in results["artefacts"].values():
        assert os.path.getsize(os.path.join(workdir, rel)) > 0, rel
    assert set(results["artefacts"]) == {"bar_chart", "learning_curves", "video",
                                         "dream_vs_real"}


def test_rerun_skips_completed_stages(smoke_run):
    workdir, _, _ = smoke_run
    ckpts = os.path.join(workdir, "wm", "checkpoints")
    before = sorted(os.listdir(ckpts))
    eval_mtime = os.path.getmtime(os.path.join(workdir, "eval", "ditto.json"))
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("data/expert: done", "wm: done", *(f"policy/{m}: done" for m in METHODS),
                 *(f"eval/{m}: done" for m in METHODS)):
        assert line in proc.stdout, line
    assert "train-wm" not in proc.stderr and "record pong" not in proc.stderr
    assert sorted(os.listdir(ckpts)) == before
    assert os.path.getmtime(os.path.join(workdir, "eval", "ditto.json")) == eval_mtime


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_missing_evaluation_is_redone_alone(smoke_run):
    workdir, _, _ = smoke_run
    os.remove(os.path.join(workdir, "eval", "dbc.json"))
    os.remove(os.path.join(workdir, "results.json"))
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--stages", "eval,report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval/dbc: return" in proc.stdout and "eval/ditto: done" in proc.stdout
    assert {r["method"] for r in _results(workdir)["rows"]} >= set(METHODS)


def test_bad_arguments_are_named(tmp_path):
    proc = run_cli("run", "--preset", "smoke", "--workdir", tmp_path / "w",
                   "--config.methods=ditto,gaill")
    assert proc.returncode == 2
    assert "config.methods" in proc.stderr and "gaill" in proc.stderr
    proc = run_cli("run", "--preset", "smoke", "--workdir", tmp_path / "w", "--stages",
                   "data,trian")
    assert proc.returncode == 2 and "--stages" in proc.stderr and "trian" in proc.stderr
    proc = run_cli("run", "--preset", "smoke", "--workdir", tmp_path / "w",
                   "--config.data.source=atari_zoo")
    assert proc.returncode == 2 and "config.data.source" in proc.stderr
    # RL Unplugged data that is not there is reported by the data stage, with the knob.
    proc = run_cli("run", "--preset", "paper", "--workdir", tmp_path / "w", "--stages", "data",
                   f"--config.data.rlu_data_dir={tmp_path / 'tfds'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Breakout_run_1" in proc.stderr and "config.data.rlu_data_dir" in proc.stderr


def test_quickstart_notebook_executes(smoke_run):
    """The Colab notebook, run on the smoke workdir (so its pipeline cell skips stages)."""
    import nbformat
    from nbclient import NotebookClient
    workdir, _, _ = smoke_run
    nb = nbformat.read(os.path.join(REPO, "notebooks", "quickstart.ipynb"), as_version=4)
    os.environ["DITTO_NOTEBOOK_WORKDIR"] = workdir
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": REPO}}).execute()
    finally:
        del os.environ["DITTO_NOTEBOOK_WORKDIR"]
    text = json.dumps(nb)
    assert "DITTO" in text and "image/png" in text


def test_ditto_eval_and_results_give_the_same_normalised_score(smoke_run):
    """`ditto eval` measures its own expert and random references with the pipeline's
    seeds, protocol and cap, so both report one expert-normalised score."""
    workdir, _, _ = smoke_run
    row = {r["method"]: r for r in _results(workdir)["rows"]}["dbc"]
    proc = run_cli("eval", "--workdir", os.path.join(workdir, "policies", "dbc"),
                   "--episodes", "10", "--envs", "5", "--max-steps", "120", "--seed", "12345",
                   "--no-video", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["return_mean"] == pytest.approx(row["per_seed"][0]["return_mean"])
    assert result["expert_normalized_mean"] == pytest.approx(
        row["per_seed"][0]["expert_normalized_mean"])
    # Smoke episodes are capped at 120 steps: the full-game human score is meaningless.
    assert result["human_normalized"] is None and row["human_normalized"] is None
    assert 0.0 <= result["expert_agreement"] <= 1.0
    assert result["rule"] == "sample" and result["act_matmul"] == "float32"


def test_ditto_eval_with_bf16_acting_is_labelled_and_kept_apart(smoke_run):
    """`ditto eval --act-matmul bfloat16` (opt-in) records its precision, writes its own
    eval_PROTOCOL-bf16.json beside the float32 one instead of over it, and says so in its
    report (pixel BC's refusal: tests/test_acting.py)."""
    workdir, _, _ = smoke_run
    policy = os.path.join(workdir, "policies", "ditto")
    args = ("--episodes", "4", "--envs", "4", "--max-steps", "120", "--no-agreement",
            "--no-video")
    f32_path = os.path.join(policy, "eval_ditto.json")
    if not os.path.exists(f32_path):   # a float32 result that must survive (any content)
        with open(f32_path, "w") as f:
            json.dump({"act_matmul": "float32", "note": "written by this test"}, f)
    with open(f32_path) as f:
        before = f.read()
    proc = run_cli("eval", "--workdir", policy, *args, "--act-matmul", "bfloat16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bfloat16 acting products" in proc.stdout
    with open(os.path.join(policy, "eval_ditto-bf16.json")) as f:
        bf16 = json.load(f)
    with open(f32_path) as f:
        assert f.read() == before
    assert bf16["act_matmul"] == "bfloat16" and bf16["episodes"] == 4


def _tensorboard_events(logdir):
    """(step, tag, value or None) of every summary in a TensorBoard log directory."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2
    out = []
    for root, _, files in os.walk(logdir):
        for name in sorted(files):
            for record in tf.data.TFRecordDataset(os.path.join(root, name)):
                event = event_pb2.Event.FromString(record.numpy())
                for v in event.summary.value:
                    out.append((event.step, v.tag, v.simple_value
                                if v.WhichOneof("value") == "simple_value" else None))
    return out


def test_ditto_eval_of_a_run_policy_uses_the_runs_reference_and_names_it(smoke_run):
    """Issue #19 item 9: with another seed and episode count, `ditto eval` used to measure
    its own expert and random references (expert-normalised -0.20 where the run's rows
    gave 0.00). It now uses the run's rows, and both outputs name that reference."""
    workdir, _, _ = smoke_run
    results = _results(workdir)
    [ref] = results["reference"]
    rows = {r["method"]: r for r in results["rows"]}
    assert ref["expert"] == pytest.approx(rows["expert"]["return_mean"])
    assert ref["random"] == pytest.approx(rows["random"]["return_mean"])
    assert "eval/expert.json" in ref["source"] and "eval/random.json" in ref["source"]
    policy = os.path.join(workdir, "policies", "dbc")
    proc = run_cli("eval", "--workdir", policy, "--episodes", "3", "--envs", "3",
                   "--max-steps", "120", "--seed", "7", "--no-agreement", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["reference"] == {k: ref[k] for k in ("expert", "random", "source")}
    assert result["expert_normalized_mean"] == pytest.approx(
        (result["return_mean"] - ref["random"]) / (ref["expert"] - ref["random"]))
    # Item 10: its scores and its episode go to TensorBoard at the policy's training step.
    step = result["checkpoint"]["step"]
    assert step == 20
    events = _tensorboard_events(os.path.join(policy, "tensorboard"))
    last = {}
    for s, tag, value in events:
        last[tag] = (s, value)
    assert last["eval/ditto/sample/return_mean"] == (step, pytest.approx(
        result["return_mean"], abs=1e-5))
    assert last["eval/ditto/sample/expert_normalized_mean"] == (step, pytest.approx(
        result["expert_normalized_mean"], abs=1e-5))
    assert last["eval/ditto/sample/length_mean"][0] == step
    videos = [s for s, tag, _ in events if tag.startswith("eval/ditto_episode")]
    assert videos and set(videos) == {step}
    # Another cap: the run's rows do not apply; measured here, and said so.
    proc = run_cli("eval", "--workdir", os.path.join(workdir, "policies", "dbc"),
                   "--episodes", "2", "--envs", "2", "--max-steps", "60", "--no-video",
                   "--no-agreement", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads(proc.stdout.strip().splitlines()[-1])["reference"]
    assert other["source"].startswith("measured by ditto eval") and "60 steps" in other["source"]


def test_results_carry_seeds_cis_diagnostics_and_provenance(smoke_run):
    workdir, _, _ = smoke_run
    results = _results(workdir)
    assert results["schema_version"] >= 2 and results["seeds"] == [0]
    prov = results["provenance"]
    assert len(prov["git"]["sha"]) == 40 and "jax" in prov["packages"]
    for package in ("tensorflow", "rliable", "ditto_jax"):  # rliable defines the IQM
        assert prov["packages"][package], package
    assert prov["device"]["device_count"] >= 1 and prov["config_hash"]
    for row in results["rows"]:
        assert row["seeds"] == [0] and len(row["iqm_ci"]) == 2
        assert row["iqm_ci"][0] <= row["iqm"] <= row["iqm_ci"][1]
    ditto = {r["method"]: r for r in results["rows"]}["ditto"]
    # Read from what ran: the policy's own saved config.
    assert ditto["ran"]["horizon"] == results["horizon"] == 5
    assert ditto["heldout_action_accuracy"] is not None and ditto["final_entropy"] > 0
    assert "improvement_over" in ditto and "bc" in ditto["improvement_over"]


def test_best_checkpoint_rows_are_selected_offline_and_labelled(smoke_run):
    """eval.checkpoint=both adds a row per latent method for the checkpoint with the best
    held-out E[pi(a_E)]; pixel BC (no held-out signal) keeps its final row only."""
    workdir, _, _ = smoke_run
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--stages", "eval,report", "--config.methods=dbc,bc",
                   "--config.eval.checkpoint=both")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval/dbc: done" in proc.stdout and "eval/dbc-best: return" in proc.stdout
    rows = {r["method"]: r for r in _results(workdir)["rows"]}
    assert set(rows) == {"dbc", "dbc-best", "bc", "expert", "random"}
    best = rows["dbc-best"]
    assert best["label"] == "D-BC [best held-out ckpt]" and best["checkpoint"] == "best"
    metrics = [json.loads(line) for line in
               open(os.path.join(workdir, "policies", "dbc", "metrics.jsonl"))]
    probs = [(m["heldout_expert_prob"], -m["step"]) for m in metrics
             if "heldout_expert_prob" in m]
    step = -max(probs)[1]
    assert best["checkpoint_steps"] == [step] and rows["dbc"]["checkpoint_steps"] == [20]
    assert best["heldout_expert_prob"] == pytest.approx(max(probs)[0])
    with open(os.path.join(workdir, "results.md")) as f:
        md = f.read()
    assert "| D-BC [best held-out ckpt] | sample |" in md
    assert f"D-BC [best held-out ckpt]: [{step}]" in md


def test_changed_policy_config_retrains_and_relabels_truthfully(smoke_run):
    workdir, _, _ = smoke_run
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--config.policy.horizon=3", "--config.methods=ditto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "policy/ditto: trained under another config (policy.horizon: 5 -> 3)" \
        in proc.stdout, proc.stdout[-3000:]
    assert "eval/ditto: return" in proc.stdout  # its evaluation is redone too
    assert [d for d in os.listdir(os.path.join(workdir, "policies"))
            if d.startswith("ditto.stale-")]
    results = _results(workdir)
    assert results["horizon"] == 3
    assert {r["method"]: r for r in results["rows"]}["ditto"]["ran"]["horizon"] == 3
    # A loop-only change (more logging) reuses the stage.
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--stages", "policy", "--config.policy.horizon=3",
                   "--config.methods=ditto", "--config.policy.log_every=2")
    assert proc.returncode == 0 and "policy/ditto: done" in proc.stdout


def test_world_model_fields_decide_reuse(tmp_path):
    """A world model trained under other model fields is moved aside, naming them."""
    from ditto_jax.core.config import load_config
    from ditto_jax.core.provenance import STAMP
    from ditto_jax.pipeline.plan import wm_fields
    from ditto_jax.pipeline.run import DEFAULT_CONFIG, _reuse_or_move_aside, _stamp_finished
    config = load_config(f"{DEFAULT_CONFIG}:smoke")
    wm = str(tmp_path / "wm")
    _reuse_or_move_aside(wm, "wm", wm_fields(config), print)
    assert not os.path.exists(wm)  # nothing is stamped before the stage has produced output
    os.makedirs(wm)
    open(os.path.join(wm, "marker"), "w").close()
    _stamp_finished(wm, "wm", wm_fields(config))
    assert os.path.exists(os.path.join(wm, STAMP))
    config.wm.train.steps = 99  # a loop setting: same stage
    _reuse_or_move_aside(wm, "wm", wm_fields(config), print)
    assert os.path.exists(os.path.join(wm, "marker"))
    config.wm.model.deter = 32
    logs = []
    _reuse_or_move_aside(wm, "wm", wm_fields(config), logs.append)
    assert "wm.model.deter: 16 -> 32" in logs[0]
    assert not os.path.exists(os.path.join(wm, "marker"))
    [moved] = [d for d in os.listdir(tmp_path) if d.startswith("wm.stale-")]
    assert os.path.exists(os.path.join(tmp_path, moved, "marker"))
    assert not os.path.exists(wm)  # the vacated folder is left for the stage to create
    # A folder holding only a stamp (written before its stage produced anything, by an
    # older version) is cleared instead of blocking the stage's writer.
    os.makedirs(wm)
    open(os.path.join(wm, STAMP), "w").write("{}")
    _reuse_or_move_aside(wm, "wm", wm_fields(config), print)
    assert not os.path.exists(wm)


def _copy_run(smoke_run, dest, *parts):
    """A copy of the smoke run's `parts` (folders) to change without touching the fixture."""
    import shutil
    workdir, _, _ = smoke_run
    for part in parts:
        shutil.copytree(os.path.join(workdir, part), os.path.join(dest, part),
                        ignore=shutil.ignore_patterns("*.stale-*", ".lock"))
    return str(dest)


def test_a_changed_data_setting_rerecords_and_keeps_the_old_data(smoke_run, tmp_path):
    """Stamps go onto finished outputs only: the vacated folder is not stamped before the
    recorder runs, so the recorder is not refused (before: "Use another --out")."""
    workdir = _copy_run(smoke_run, tmp_path / "run", "data")
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--stages", "data", "--config.data.size=48")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "data/expert: trained under another config (size: 64 -> 48)" in proc.stdout
    data = os.path.join(workdir, "data")
    for name in ("expert", "noisy", "random"):
        [old] = [d for d in os.listdir(data) if d.startswith(f"{name}.stale-")]
        with open(os.path.join(data, old, "ditto_stage.json")) as f:
            assert json.load(f)["fields"]["size"] == 64  # the old data, kept aside
        with open(os.path.join(data, name, "ditto_stage.json")) as f:
            assert json.load(f)["fields"]["size"] == 48
        info = json.loads(run_cli("info", os.path.join(data, name), "--json").stdout)
        assert info["obs_shape"][:2] == [48, 48]
    # The same setting again reuses what was recorded.
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--stages", "data", "--config.data.size=48")
    assert proc.returncode == 0 and "data/expert: done" in proc.stdout, proc.stderr[-2000:]


def test_a_shorter_budget_retrains_instead_of_relabelling(smoke_run, tmp_path):
    """wm.train.steps=15 on a 30-update world model: the 30-update one is moved aside and a
    15-update one trained, so results.json, pipeline_config.json and every row agree."""
    workdir = _copy_run(smoke_run, tmp_path / "run", "data", "wm", "eval")
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet",
                   "--config.wm.train.steps=15", "--config.methods=dbc")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "wm: holds 30 updates, more than the 15 asked for; retraining 15" in proc.stdout
    assert "(15 steps)" not in proc.stdout.split("wm: holds")[0]  # no relabelled "done"
    assert [d for d in os.listdir(workdir) if d.startswith("wm.stale-30steps")]
    results = _results(workdir)
    with open(os.path.join(workdir, "pipeline_config.json")) as f:
        assert json.load(f)["wm"]["train"]["steps"] == 15
    assert results["config"]["wm"]["train"]["steps"] == 15
    [dbc] = [r for r in results["rows"] if r["method"] == "dbc"]
    assert dbc["ran"]["world_model_step"] == 15
    # The policy budget is held to the same rule: fewer updates than trained retrain too.
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet", "--stages",
                   "policy", "--config.wm.train.steps=15", "--config.methods=dbc",
                   "--config.policy.steps=10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "policy/dbc: holds 20 updates, more than the 10 asked for" in proc.stdout
    with open(os.path.join(workdir, "policies", "dbc", "metrics.jsonl")) as f:
        assert max(json.loads(line)["step"] for line in f) == 10
    # A world model that does not match the budget is never trained on by --stages policy.
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet", "--stages",
                   "policy", "--config.methods=dbc")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "Field: config.wm.train.steps. Expected: 15. Got: 30" in proc.stderr


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_a_copied_run_evaluates_after_the_original_is_deleted(smoke_run, tmp_path):
    import shutil
    workdir, _, _ = smoke_run
    original = tmp_path / "original"
    shutil.copytree(workdir, original, ignore=shutil.ignore_patterns("*.stale-*", ".lock"))
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    proc = run_cli("eval", "--workdir", moved / "policies" / "dbc", "--episodes", "2",
                   "--envs", "2", "--max-steps", "60", "--no-video", "--no-agreement")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "return" in proc.stdout
    # The world model can also be given explicitly; a wrong one is refused by name.
    proc = run_cli("eval", "--workdir", moved / "policies" / "dbc", "--episodes", "1",
                   "--max-steps", "30", "--no-video", "--no-agreement",
                   "--wm", tmp_path / "nowhere")
    assert proc.returncode == 2 and "--wm" in proc.stderr and "Traceback" not in proc.stderr


def test_readme_python_api_snippet_runs(smoke_run):
    """The README's Python snippet, run as written on the smoke run's DITTO policy."""
    import re
    workdir, _, _ = smoke_run
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    [snippet] = re.findall(r"```python\n(from ditto_jax import load_policy.*?)```", readme,
                           re.S)
    code = snippet.replace("runs/pong_demo", workdir)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    assert isinstance(scope["action"], int) and scope["policy"].method == "ditto"


def test_a_deleted_torn_policy_config_is_rebuilt_as_the_advice_says(smoke_run, tmp_path):
    """A torn policy config.json is refused with "delete it to have ditto rebuild it";
    deleting it used to leave it missing, and the results row lost horizon, reward and
    world_model_step. Now it is rebuilt from the checkpoint's meta + provenance.json."""
    # A copy: other tests rerun the shared run with other methods and settings.
    workdir = _copy_run(smoke_run, tmp_path / "run", "data", "wm", "policies", "eval")
    path = os.path.join(workdir, "policies", "dbc", "config.json")
    with open(path) as f:
        original = json.load(f)
    args = ("run", "--preset", "smoke", "--workdir", workdir, "--quiet", "--stages",
            "policy,report", "--config.methods=dbc")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = {r["method"]: r for r in _results(workdir)["rows"]}["dbc"]["ran"]
    assert before["horizon"] and before["reward"] and before["world_model_step"]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
    proc = run_cli(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "policy config.json is corrupt" in proc.stderr and path in proc.stderr
    assert "delete it to have ditto rebuild it" in proc.stderr
    os.remove(path)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "policy/dbc: done" in proc.stdout and f"rebuilt {path}" in proc.stderr
    with open(path) as f:
        assert json.load(f) == original
    after = {r["method"]: r for r in _results(workdir)["rows"]}["dbc"]["ran"]
    assert after == before
def test_python_api_loads_and_acts_without_printing_to_stderr(smoke_run):
    """Issue #19 item 10: loading used to print three absl warnings. Silenced at the
    source (TF_CPP_MIN_LOG_LEVEL and absl's level, set before TF is imported); a real
    error still prints."""
    import subprocess
    import sys
    workdir, _, _ = smoke_run
    code = ("import numpy as np\n"
            "from ditto_jax import load_policy\n"
            f"policy = load_policy({os.path.join(workdir, 'policies', 'ditto')!r})\n"
            "print('ACTION', policy.act(np.zeros(policy.obs_shape, np.uint8)))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ACTION" in proc.stdout
    assert proc.stderr == ""
    proc = subprocess.run([sys.executable, "-c", "import ditto_jax.api\n"
                           "from absl import logging\nlogging.error('a real error')\n"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert "a real error" in proc.stderr


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_policies_on_an_older_world_model_are_retrained(smoke_run):
    """Runs last: it trains the smoke workdir's world model further (2 more updates)."""
    workdir, _, _ = smoke_run
    proc = run_cli("run", "--preset", "smoke", "--workdir", workdir, "--quiet", "--stages",
                   "wm,policy", "--config.wm.train.steps=32", "--config.methods=dbc")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the world model moved on (step 30 -> 32)" in proc.stdout
    assert os.path.isdir(os.path.join(workdir, "policies", "dbc.stale-wm30"))
    with open(os.path.join(workdir, "policies", "dbc", "config.json")) as f:
        assert json.load(f)["world_model"]["step"] == 32


def test_ne_preset_shares_the_study_data_and_world_model():
    """`--preset ne` reuses a study run's data and world model: the stamps are equal."""
    from ditto_jax.core.config import load_config
    from ditto_jax.core.provenance import config_hash
    from ditto_jax.pipeline.plan import data_fields, expert_episode_counts, wm_fields
    from ditto_jax.pipeline.run import DEFAULT_CONFIG
    study, ne = (load_config(f"{DEFAULT_CONFIG}:{p}") for p in ("study", "ne"))
    assert data_fields(ne) == data_fields(study)
    assert config_hash(wm_fields(ne)) == config_hash(wm_fields(study))
    assert expert_episode_counts(ne) == [1, 2, 4, 11]
    assert (ne.seeds, ne.methods, ne.eval.episodes, ne.eval.policy, ne.eval.agreement) == (
        "0,1,2", "ditto,ditto_bcinit,dbc,bc", 10, "sample", True)


def test_expert_episodes_axis_nests_and_reuses_finished_cells(smoke_run, tmp_path):
    """`--config.expert_episodes=1,2`: a cell per method x N_E on the smoke run's data and
    world model (reused through paths.*, not retrained); the N_E = 1 cells of an earlier
    `=1` run are reused, untouched; nested subsets, one held-out episode for all."""
    workdir, _, _ = smoke_run
    out = tmp_path / "ne"
    common = ("run", "--preset", "smoke", "--quiet", "--workdir", out,
              f"--config.paths.data={workdir}/data", f"--config.paths.wm={workdir}/wm",
              "--config.methods=ditto,dbc", "--config.eval.episodes=2",
              "--config.eval.envs=2", "--config.eval.video=false")
    proc = run_cli(*common, "--config.expert_episodes=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wm: done" in proc.stdout and "data/expert: done" in proc.stdout
    ckpts = out / "policies" / "dbc" / "checkpoints"
    before = {p.name: p.stat().st_mtime for p in ckpts.iterdir()}
    eval_mtime = (out / "eval" / "dbc.json").stat().st_mtime
    proc = run_cli(*common, "--config.expert_episodes=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for m in ("ditto", "dbc"):
        assert f"policy/{m}-ne1: reused {m} (same settings, N_E = 1)" in proc.stdout
        assert f"policy/{m}-ne1: done" in proc.stdout and f"eval/{m}-ne1: done" in proc.stdout
        assert f"policy/{m}-ne2: training 20 updates on N_E = 2" in proc.stdout
    ckpts = out / "policies" / "dbc-ne1" / "checkpoints"
    assert {p.name: p.stat().st_mtime for p in ckpts.iterdir()} == before
    assert (out / "eval" / "dbc-ne1.json").stat().st_mtime == eval_mtime
    ids = {n: json.loads((out / "policies" / f"ditto-ne{n}" / "config.json").read_text())
           ["expert_episode_ids"] for n in (1, 2)}
    assert ids == {1: {"train": [0], "heldout": [2]}, 2: {"train": [0, 1], "heldout": [2]}}
    rows = {(r["base_method"], r["expert_episodes"]): r for r in _results(out)["rows"]}
    assert set(rows) == {("expert", None), ("random", None), ("ditto", 1), ("dbc", 1),
                         ("ditto", 2), ("dbc", 2)}
    for (m, n), r in rows.items():
        assert r["seeds"] == [0] and len(r["iqm_ci"]) == 2
        if m == "ditto":  # compared with D-BC at the same N_E
            dbc = rows[("dbc", n)]["returns"]
            assert r["improvement_over"]["dbc"]["p"] == pytest.approx(np.mean(
                [(x > y) + 0.5 * (x == y) for x in r["returns"] for y in dbc]))
    # More N_E than recorded training episodes (3 recorded, 1 held out): refused up front.
    proc = run_cli(*common, "--config.expert_episodes=1,3")
    assert proc.returncode == 2 and "fewer episodes than requested" in proc.stderr
    assert "config.expert_episodes" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "results.json").exists()
