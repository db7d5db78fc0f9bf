"""`ditto report`: tables, IQM/CIs and plots over a synthetic sweep directory."""
import json
import os

import numpy as np
import pytest
from scipy.stats import trim_mean

from ditto_jax import cli
from ditto_jax.errors import DittoError
from ditto_jax.stages.evaluation import HUMAN_RANDOM
from ditto_jax.report.command import run_report

GAMES = {"breakout": (380.0, 1.5), "spaceinvaders": (950.0, 150.0)}  # expert, random
N_ES = (30, 125)
SEEDS = (0, 1, 2)
METHODS = ("ditto", "dbc", "dgail", "bc")
REPS = 50


def synthetic_return(game, method, n_e, seed):
    """Distinct, irregular returns so means, IQMs and plain means all differ."""
    expert, rand = GAMES[game]
    frac = {"ditto": 0.7, "dbc": 0.4, "dgail": 0.5, "bc": 0.15}[method]
    frac += 0.1 * (n_e == 125) + [0.0, 0.23, -0.11][seed] + 0.03 * (seed ** 2)
    frac += 0.05 * (game == "spaceinvaders")
    return rand + frac * (expert - rand)


def _row(method, ret, expert, rand, *, normalise=True):
    return {"method": method, "return_mean": ret, "return_se": 1.0, "episodes": 5,
            "length_mean": 100.0, "returns": [ret] * 5,
            "expert_normalized_mean_of_seed_means":
                (ret - rand) / (expert - rand) if normalise else None,
            "human_normalized": None, "expert_return": expert, "random_return": rand}


def _write(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for game, (expert, rand) in GAMES.items():
        for n_e in N_ES:
            for seed in SEEDS:
                # Breakout rows leave the normalised score null: the report must derive it
                # from the expert/random returns.
                rows = [_row(m, synthetic_return(game, m, n_e, seed), expert, rand,
                             normalise=game != "breakout") for m in METHODS]
                rows += [_row("expert", expert, expert, rand), _row("random", rand, expert, rand)]
                _write(str(root / "runs" / f"{game}_ne{n_e}_s{seed}" / "results.json"),
                       {"game": game, "seed": seed, "preset": "paper", "protocol": "ditto",
                        "expert_episodes": n_e, "horizon": 15, "reward": "maxcos",
                        "rows": rows, "stage_seconds": {"eval": 1.0}, "artefacts": {},
                        "config": {}, "wall_time_s": 1.0})
    # A horizon ablation run: its own group, never pooled with the main sweep.
    _write(str(root / "runs" / "breakout_h3" / "results.json"),
           {"game": "breakout", "seed": 0, "preset": "paper", "protocol": "ditto",
            "expert_episodes": 30, "horizon": 3, "reward": "maxcos",
            "rows": [_row("ditto", 999.0, 380.0, 1.5)]})
    bad = root / "runs" / "broken" / "results.json"
    os.makedirs(bad.parent)
    bad.write_text("{not json")
    return root


@pytest.fixture(scope="module")
def report(sweep):
    return run_report(str(sweep), reps=REPS, seed=0)


def _group(report, horizon):
    [g] = [g for g in report["groups"] if g["setting"]["horizon"] == horizon]
    assert g["setting"] == {"preset": "paper", "protocol": "ditto", "horizon": horizon,
                            "reward": "maxcos"}
    return g


def test_tables_match_seed_means(report):
    g = _group(report, 15)
    assert g["games"] == ["breakout", "spaceinvaders"]
    for game, (expert, rand) in GAMES.items():
        rows = {(r["method"], r["expert_episodes"]): r for r in g["tables"][game]["rows"]}
        assert set(rows) == {(m, n) for m in METHODS + ("expert", "random") for n in N_ES}
        for m in METHODS:
            for n_e in N_ES:
                x = np.array([synthetic_return(game, m, n_e, s) for s in SEEDS])
                r = rows[(m, n_e)]
                assert r["seeds"] == 3
                assert r["return_mean"] == pytest.approx(x.mean())
                assert r["return_se"] == pytest.approx(x.std(ddof=1) / np.sqrt(3))
                assert r["expert_normalized_mean_of_seed_means"] == pytest.approx(
                    ((x - rand) / (expert - rand)).mean())
                human, hrand = HUMAN_RANDOM[game]
                assert r["human_normalized"] == pytest.approx(
                    ((x - hrand) / (human - hrand)).mean())
    paper = {(r["method"], r["expert_episodes"]): r["paper_return"]
             for r in g["tables"]["breakout"]["rows"]}
    assert paper[("ditto", 30)] == 224 and paper[("dbc", 30)] == 45
    assert paper[("bc", 125)] == 49 and paper[("expert", 30)] is None
    assert {r["paper_return"] for r in g["tables"]["spaceinvaders"]["rows"]
            if r["method"] == "dbc"} == {None}


def test_horizon_ablation_is_a_separate_group(report):
    h = _group(report, 3)
    [row] = h["tables"]["breakout"]["rows"]
    assert row["return_mean"] == 999.0 and row["seeds"] == 1 and row["return_se"] is None
    assert row["paper_return"] is None  # the paper's numbers are for the main setting
    main = _group(report, 15)
    assert all(r["return_mean"] != 999.0 for r in main["tables"]["breakout"]["rows"])
    assert len(report["groups"]) == 2


def test_iqm_and_ci_match_direct_computation(report):
    agg = _group(report, 15)["aggregate"]
    for score in ("expert_normalized_mean", "human_normalized"):
        methods = agg[score]["methods"]
        assert set(methods) == {f"{m} N_E={n}" for m in METHODS for n in N_ES}
        for m in METHODS:
            for n_e in N_ES:
                pooled = []
                for game, (expert, rand) in GAMES.items():
                    lo, hi = (rand, expert) if score == "expert_normalized_mean" else \
                        HUMAN_RANDOM[game][::-1]
                    pooled += [(synthetic_return(game, m, n_e, s) - lo) / (hi - lo)
                               for s in SEEDS]
                pooled = np.sort(pooled)
                entry = methods[f"{m} N_E={n_e}"]
                assert entry["runs"] == 6 and entry["games"] == 2
                # 25% trimmed mean of 6 values drops one from each end.
                assert entry["iqm"] == pytest.approx(pooled[1:-1].mean())
                assert entry["iqm"] == pytest.approx(trim_mean(pooled, 0.25))
                assert entry["iqm"] != pytest.approx(pooled.mean())
                lo_ci, hi_ci = entry["ci"]
                assert lo_ci <= entry["iqm"] <= hi_ci and lo_ci < hi_ci
                assert pooled[0] <= lo_ci and hi_ci <= pooled[-1]
                profile = np.asarray(entry["profile"])
                tau = np.asarray(agg[score]["tau"])
                np.testing.assert_allclose(profile, [(pooled > t).mean() for t in tau])


def test_files_written(report, sweep):
    for g in report["groups"]:
        assert set(g["plots"]) == {"returns", "profile_expert", "profile_human"}
        for path in g["plots"].values():
            assert os.path.getsize(path) > 1000 and path.startswith(str(sweep / "plots"))
    md = (sweep / "report.md").read_text()
    assert "### breakout (paper expert ~389)" in md
    x = np.array([synthetic_return("breakout", "ditto", 30, s) for s in SEEDS])
    se = x.std(ddof=1) / np.sqrt(3)
    [line] = [ln for ln in md.splitlines()
              if ln.startswith(f"| ditto | 30 | 3 | {x.mean():.1f} ± {se:.1f} |")]
    assert line.endswith("| 224 |")
    assert "horizon=3, preset=paper, protocol=ditto, reward=maxcos" in md
    assert "broken" in md and "H=3 ~276" in md
    on_disk = json.loads((sweep / "report.json").read_text())
    assert on_disk["skipped"][0]["path"].endswith(os.path.join("broken", "results.json"))
    assert on_disk["runs"] == 13


def test_cli_json_and_warning(sweep, capsys):
    assert cli.main(["report", str(sweep), "--reps", "20", "--no-plots", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["reps"] == 20 and len(doc["groups"]) == 2
    assert "broken" in err and "skipping unreadable" in err


def test_single_run_directory(sweep, tmp_path, capsys):
    run = sweep / "runs" / "breakout_ne30_s0"
    assert cli.main(["report", str(run), "--reps", "10", "--no-plots",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| ditto | 30 | 1 |" in out
    assert (tmp_path / "report.json").exists()


def test_empty_directory_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DittoError, match="No results.json found") as e:
        run_report(str(empty), reps=10)
    assert str(empty) in str(e.value)
    assert cli.main(["report", str(empty)]) == 2
    assert "No results.json found" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------- `ditto run` with several N_E
def _ne_row(method, ne, returns_by_seed, agreement):
    """A `ditto run` results.json row (results.aggregate_row's fields that the N_E
    section and `ditto report` read)."""
    from ditto_jax.report.stats import iqm_ci
    returns = [x for rs in returns_by_seed for x in rs]
    iqm, ci = iqm_ci(returns_by_seed, reps=200)
    norm = [[(x + 20.0) / 40.0 for x in rs] for rs in returns_by_seed]   # random -20, expert 20
    niqm, nci = iqm_ci(norm, reps=200)
    per_seed = [{"seed": s, "return_mean": float(np.mean(rs)),
                 "expert_normalized_mean": float(np.mean(n)), "human_normalized": None,
                 "expert_agreement": a}
                for s, (rs, n, a) in enumerate(zip(returns_by_seed, norm, agreement))]
    return {"method": f"{method}-ne{ne}" if ne else method, "base_method": method,
            "label": method, "rule": "sample", "checkpoint": "final",
            "expert_episodes": ne, "seeds": list(range(len(returns_by_seed))),
            "episodes": len(returns), "returns": returns, "return_mean": float(np.mean(returns)),
            "iqm": iqm, "iqm_ci": ci,
            "expert_normalized_mean_of_seed_means": float(np.mean(norm)),
            "expert_normalized_iqm": niqm, "expert_normalized_ci": nci,
            "expert_agreement": float(np.mean(agreement)), "per_seed": per_seed}


@pytest.fixture(scope="module")
def ne_rows():
    # DITTO beats D-BC at N_E = 1 (all its returns higher) and ties D-BC at N_E = 2
    # (identical returns).
    rows = [_ne_row("ditto", 1, [[5, 6], [7, 8]], [0.8, 0.9]),
            _ne_row("dbc", 1, [[-3, -2], [-1, 0]], [0.6, 0.7]),
            _ne_row("bc", 1, [[-19, -18], [-17, -16]], [0.4, 0.5]),
            _ne_row("ditto", 2, [[1, 2], [3, 4]], [0.85, 0.95]),
            _ne_row("dbc", 2, [[1, 2], [3, 4]], [0.7, 0.8]),
            _ne_row("bc", 2, [[1, 2], [3, 3]], [0.5, 0.6])]
    return ([_ne_row("expert", None, [[20, 20]], [1.0])] + rows
            + [_ne_row("random", None, [[-20, -20]], [0.0])])


def test_ne_tables_probability_of_improvement_against_hand_values(ne_rows):
    from ditto_jax.report.run_results import ne_tables
    tables = ne_tables(ne_rows)
    assert list(tables) == [1, 2]
    one = {e["base_method"]: e for e in tables[1]}
    assert one["ditto"]["improvement_over"]["dbc"]["p"] == 1.0     # every X > every Y
    assert one["ditto"]["improvement_over"]["dbc"]["ci"] == [1.0, 1.0]
    assert one["dbc"]["improvement_over"]["bc"]["p"] == 1.0
    assert one["bc"]["improvement_over"]["dbc"]["p"] == 0.0
    assert "bc" not in one["bc"]["improvement_over"]                # not against itself
    two = {e["base_method"]: e for e in tables[2]}
    assert two["ditto"]["improvement_over"]["dbc"]["p"] == 0.5      # identical returns
    # D-BC [1,2,3,4] vs BC [1,2,3,3], 16 pairs by hand: x=1 ties 1; x=2 wins 1, ties 1;
    # x=3 wins 2, ties 2; x=4 wins 4 -> (7 wins + 4 ties / 2) / 16.
    assert two["dbc"]["improvement_over"]["bc"]["p"] == pytest.approx(9 / 16)
    lo, hi = two["dbc"]["improvement_over"]["bc"]["ci"]
    assert 0.0 <= lo <= 9 / 16 <= hi <= 1.0


def test_ne_markdown_and_curve(ne_rows, tmp_path):
    from ditto_jax.report.plots import plot_ne_curve
    from ditto_jax.report.run_results import ne_markdown
    md = "\n".join(ne_markdown(ne_rows))
    assert "### N_E = 1" in md and "### N_E = 2" in md
    assert "| P(X > D-BC) [95% CI] | P(X > BC (pixels)) [95% CI] |" in md
    assert "| ditto | sample | 6.50 [" in md and "| 1.00 [1.00, 1.00] |" in md
    assert ne_markdown([r for r in ne_rows if r["expert_episodes"] in (None, 1)]) == []
    path = plot_ne_curve(ne_rows, str(tmp_path / "ne_curve.png"), title="t")
    assert os.path.getsize(path) > 10_000


def test_report_reads_a_multi_ne_run_per_row_and_per_seed(ne_rows, tmp_path):
    """`ditto report` on a `ditto run` results.json with several N_E: a cell per method x
    N_E, the seeds of each row as runs, the references at every N_E."""
    _write(str(tmp_path / "run" / "results.json"),
           {"game": "pong", "seed": 0, "preset": "ne", "protocol": "ditto",
            "expert_episodes": [1, 2], "rows": ne_rows})
    rep = run_report(str(tmp_path / "run"), reps=REPS, seed=0, plots=False)
    [g] = rep["groups"]
    rows = {(r["method"], r["expert_episodes"]): r for r in g["tables"]["pong"]["rows"]}
    assert set(rows) == {(m, n) for m in ("ditto", "dbc", "bc", "expert", "random")
                         for n in (1, 2)}
    assert rows[("ditto", 1)]["seeds"] == 2
    assert rows[("ditto", 1)]["return_mean"] == pytest.approx(6.5)    # mean of 5.5, 7.5
    assert rows[("ditto", 1)]["return_se"] == pytest.approx(1.0)      # std 1.414 / sqrt 2
    assert rows[("expert", 2)]["return_mean"] == 20.0
def test_schema_2_results_are_read_under_todays_names(tmp_path):
    """Schema 1-2 called the mean of per-seed means `expert_normalized`; it is read as
    `expert_normalized_mean_of_seed_means`, never mistaken for the IQM."""
    from ditto_jax.report.command import load_runs
    from ditto_jax.report.run_results import SCHEMA_VERSION, upgrade
    row = {"method": "ditto", "return_mean": -10.0, "expert_normalized": 0.289,
           "expert_normalized_iqm": 0.219, "per_seed": [{"expert_normalized": 0.3}]}
    doc = {"schema_version": 2, "game": "pong", "expert_episodes": 11, "rows": [row]}
    _write(str(tmp_path / "results.json"), doc)
    [record], skipped = load_runs([str(tmp_path / "results.json")])
    assert not skipped and record["expert_normalized_mean"] == pytest.approx(0.289)
    up = upgrade(json.loads(json.dumps(doc)))
    assert up["schema_version"] == SCHEMA_VERSION == 3
    [r] = up["rows"]
    assert "expert_normalized" not in r and r["expert_normalized_iqm"] == 0.219
    assert r["expert_normalized_mean_of_seed_means"] == 0.289
    assert r["per_seed"] == [{"expert_normalized_mean": 0.3}]


def _committed_results():
    import glob
    from tests.conftest import REPO
    return sorted(glob.glob(os.path.join(REPO, "benchmarks", "results", "**", "results.json"),
                            recursive=True))


def test_every_committed_results_md_is_rendered_from_its_results_json():
    """`ditto report benchmarks/results --results-md` rewrote them; a hand edit or a json
    updated without its table (the pixel-BC rows once missing) fails here."""
    from ditto_jax.report.run_results import results_markdown, upgrade
    paths = _committed_results()
    assert len(paths) >= 6
    rendered = 0
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        if results.get("schema_version") is None:  # schema 1: kept as its commit wrote it
            assert "anecdote-5cea740" in path, path
            continue
        with open(os.path.join(os.path.dirname(path), "results.md")) as f:
            assert f.read() == results_markdown(upgrade(results)), path
        rendered += 1
    assert rendered == len(paths) - 1


def test_committed_folders_say_which_preset_and_seeds(tmp_path):
    import shutil

    from tests.conftest import run_cli
    for path in _committed_results():
        with open(path) as f:
            results = json.load(f)
        folder = os.path.basename(os.path.dirname(path))
        seeds = results.get("seeds") or [results["seed"]]
        span = (f"s{seeds[0]}" if len(seeds) == 1 else f"s{seeds[0]}-{seeds[-1]}")
        assert folder.startswith(f"{results['game']}_{results['preset']}_"), folder
        assert f"_{span}" in folder, (folder, seeds)
    # The command itself, on a copy: it rebuilds a deleted results.md byte for byte.
    src = next(p for p in _committed_results() if "confirm_l2_ext" in p)
    dst = tmp_path / "run"
    dst.mkdir()
    shutil.copy(src, dst / "results.json")
    proc = run_cli("report", str(tmp_path), "--results-md")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(os.path.dirname(src), "results.md")) as f:
        assert (dst / "results.md").read_text() == f.read()
    text = (dst / "results.md").read_text()
    assert "| BC (pixels) | sample |" in text and "| BC (pixels) | greedy |" in text


def test_ne_combine_joins_single_ne_runs_and_refuses_other_differences(ne_rows, tmp_path):
    """benchmarks/ne_combine.py: runs that differ only in N_E make one multi-N_E result
    (the same tables as one run with a list); any other difference is refused."""
    import importlib.util

    from ditto_jax.errors import DittoError
    from ditto_jax.report.run_results import ne_tables
    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(
        "ne_combine", os.path.join(REPO, "benchmarks", "ne_combine.py"))
    combine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(combine)
    refs = [r for r in ne_rows if r["expert_episodes"] is None]
    base = {"schema_version": 3, "game": "pong", "preset": "ne", "protocol": "ditto",
            "max_steps": 27000, "seeds": [0, 1], "episodes_per_seed": 2,
            "config": {"paths": {"wm": str(tmp_path / "wm")}}}
    for ne in (2, 1):
        rows = refs + [dict(r, expert_episodes=None) for r in ne_rows
                       if r["expert_episodes"] == ne]
        _write(str(tmp_path / f"ne{ne}" / "results.json"), dict(base, expert_episodes=ne,
                                                               rows=rows))
    out = combine.combine([str(tmp_path / "ne2"), str(tmp_path / "ne1")])
    assert out["expert_episodes"] == [1, 2]
    assert ne_tables(out["rows"]) == ne_tables(ne_rows)
    assert [r["base_method"] for r in out["rows"]][0] == "expert"
    # Another seed list, or another world model, is refused with the field named.
    doc = json.loads((tmp_path / "ne2" / "results.json").read_text())
    _write(str(tmp_path / "bad" / "results.json"), dict(doc, seeds=[0, 1, 2]))
    with pytest.raises(DittoError) as e:
        combine.combine([str(tmp_path / "ne1"), str(tmp_path / "bad")])
    assert e.value.field == "seeds"
    _write(str(tmp_path / "bad" / "results.json"),
           dict(doc, config={"paths": {"wm": str(tmp_path / "other_wm")}}))
    with pytest.raises(DittoError, match="different world models"):
        combine.combine([str(tmp_path / "ne1"), str(tmp_path / "bad")])
    with pytest.raises(DittoError, match="each a different one"):
        combine.combine([str(tmp_path / "ne1"), str(tmp_path / "ne1")])


def test_every_curve_of_a_figure_gets_its_own_colour():
    """ditto_bctr once drew in D-BC's orange: a method without a fixed colour took
    tab10's i-th colour, which the fixed ones already use."""
    from ditto_jax.report.plots import _color
    names = ["ditto", "ditto_bcinit", "ditto_bctr", "dgail", "dbc", "bc", "my_method"]
    colours = [_color(m, i) for i, m in enumerate(names)]
    assert len(set(colours)) == len(names), colours


def test_budget_compare_pairs_budgets_and_refuses_other_differences(tmp_path):
    """benchmarks/budget_compare.py: P(later budget > first) and P(X > D-BC) at the same
    budget over episode returns; runs differing in more than the budget are refused."""
    import importlib.util

    from ditto_jax.errors import DittoError
    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(
        "budget_compare", os.path.join(REPO, "benchmarks", "budget_compare.py"))
    bc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bc)

    def run(name, steps, ditto, dbc, seeds=(0, 1, 2)):
        rows = [{"base_method": m, "rule": "sample", "checkpoint": "final", "returns": r,
                 "iqm": float(np.mean(r)), "iqm_ci": [min(r), max(r)],
                 "return_mean": float(np.mean(r)),
                 "expert_agreement": 0.7} for m, r in (("ditto", ditto), ("dbc", dbc))]
        doc = {"game": "pong", "protocol": "ditto", "max_steps": 27000, "seeds": list(seeds),
               "episodes_per_seed": 2, "expert_episodes": 1, "rows": rows,
               "config": {"policy": {"steps": steps}, "paths": {"wm": str(tmp_path / "wm")}}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(doc))
        return f"{name}={tmp_path / name}"

    a = run("a", 1000, [-20.0, -18.0], [-19.0, -19.0])
    b = run("b", 5000, [-10.0, -12.0], [-21.0, -21.0])
    res = bc.compare([a, b], "ditto", "dbc", reps=50)
    first, later = res["rules"]["sample"]["rows"]
    assert (first["policy_steps"], later["policy_steps"]) == (1000, 5000)
    assert first["p_over_first"]["p"] == 0.5 and later["p_over_first"]["p"] == 1.0
    assert first["p_over_reference"]["p"] == 0.5     # -20, -18 against -19, -19
    assert later["p_over_reference"]["p"] == 1.0     # against D-BC at 5k, not at 1k
    assert later["reference_from"] == "b" and later["reference_iqm"] == -21.0
    c = run("c", 5000, [-10.0, -12.0], [-21.0, -21.0], seeds=(3, 4, 5))
    with pytest.raises(DittoError, match="more than the policy budget"):
        bc.compare([a, c], "ditto", "dbc", reps=50)


def _imagine_run(tmp_path, name, tag, matmul, seed_offset=0):
    """A workdir for benchmarks/bf16_imagination.py: a committed run's results.json (its
    seeds shifted by `seed_offset`) and, per policy, a config.json saying which
    imagine_matmul trained it and a metrics.jsonl with logged speeds."""
    from tests.conftest import REPO
    src = os.path.join(REPO, "benchmarks", "results", f"pong_ne_imagine_{tag}_s0-2",
                       "results.json")
    with open(src) as f:
        doc = json.load(f)
    doc["seeds"] = [s + seed_offset for s in doc["seeds"]]
    for row in doc["rows"]:
        for s in row.get("per_seed") or []:
            s["seed"] += seed_offset
    run = tmp_path / name
    run.mkdir()
    (run / "results.json").write_text(json.dumps(doc))
    for ne in (2, 11):
        for suffix in ("", "-s1", "-s2"):
            d = run / "policies" / f"ditto-ne{ne}{suffix}"
            d.mkdir(parents=True)
            cfg = {} if matmul is None else {"imagine_matmul": matmul}
            (d / "config.json").write_text(json.dumps({"config": cfg}))
            (d / "metrics.jsonl").write_text(
                "\n".join(json.dumps({"step": i, "steps_per_s": float(i)}) for i in (1, 2, 3)))
    return doc, str(run)


def test_bf16_imagination_pools_seeds_and_refuses_a_mislabelled_run(tmp_path):
    """benchmarks/bf16_imagination.py: one run per precision reproduces each run's own
    IQM; two runs of disjoint seeds pool into one row per cell over 6 seeds; a workdir
    whose policies were not trained with the precision it is given as, or precisions
    over other seeds, are refused by name."""
    import importlib.util

    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(
        "bf16_imagination", os.path.join(REPO, "benchmarks", "bf16_imagination.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    f32_doc, f32 = _imagine_run(tmp_path, "f32", "f32", "float32")
    bf16_doc, bf16 = _imagine_run(tmp_path, "bf16", "bf16", "bfloat16")
    res = tool.compare({"float32": [f32], "bfloat16": [bf16]})
    assert {(r["expert_episodes"], r["rule"]) for r in res["rows"]} == {
        (2, "sample"), (2, "greedy"), (11, "sample"), (11, "greedy")}
    for r in res["rows"]:
        for k, doc in (("float32", f32_doc), ("bfloat16", bf16_doc)):
            [want] = [x for x in doc["rows"] if x.get("base_method") == "ditto"
                      and x["expert_episodes"] == r["expert_episodes"]
                      and x["rule"] == r["rule"]]
            assert r[k]["iqm"] == pytest.approx(want["iqm"])
            assert r[k]["iqm_ci"] == pytest.approx(want["iqm_ci"])
            assert r[k]["expert_agreement"] == pytest.approx(want["expert_agreement"])
        assert 0 <= r["p_bf16_over_f32"]["p"] <= 1 and r["float32"]["seeds"] == [0, 1, 2]
    # Seeds 3-5 of each precision pool with seeds 0-2.
    _, f32b = _imagine_run(tmp_path, "f32b", "f32", "float32", seed_offset=3)
    _, bf16b = _imagine_run(tmp_path, "bf16b", "bf16", "bfloat16", seed_offset=3)
    pooled = tool.compare({"float32": [f32, f32b], "bfloat16": [bf16, bf16b]})
    row = pooled["rows"][0]
    assert row["float32"]["seeds"] == [0, 1, 2, 3, 4, 5]
    assert row["float32"]["seeds_x_episodes"] == [6, 10]
    assert row["float32"]["seed_return_means"][:3] == row["float32"]["seed_return_means"][3:]
    # Refused: a "bfloat16" run whose policies say float32 (or predate the option), and
    # precisions over other seeds.
    _, old = _imagine_run(tmp_path, "old", "f32", None)
    with pytest.raises(DittoError, match="not trained with the imagine_matmul") as e:
        tool.compare({"float32": [f32], "bfloat16": [old]})
    assert e.value.expected == "bfloat16" and e.value.got == "float32"
    with pytest.raises(DittoError, match="other seeds"):
        tool.compare({"float32": [f32, f32b], "bfloat16": [bf16]})


def test_bf16_acting_pairs_each_policy_and_pools_its_seeds():
    """benchmarks/bf16_acting.py's summary: evaluations group by the policy folder's name
    (METHOD-neN-sK), a seed counts only once both precisions played it, the IQM is that of
    its seeds' episodes, and the paired-episode figures compare episode i with episode i."""
    import importlib.util

    from ditto_jax.report.stats import iqm_ci
    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(
        "bf16_acting", os.path.join(REPO, "benchmarks", "bf16_acting.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool._group("/r/policies/ditto-ne11-s4") == ("ditto", 11, 4)
    assert tool._group("/r/policies/ditto-ne2/") == ("ditto", 2, 0)
    assert tool._group("/r/policies/dbc-s1") == ("dbc", None, 1)
    rng = np.random.default_rng(0)
    evals, per_seed = {}, {"float32": [], "bfloat16": []}
    for seed in range(3):
        base = rng.integers(-21, -10, 10).astype(float)
        for p, shift in (("float32", 0.0), ("bfloat16", 1.0)):
            returns = list(base + shift * (np.arange(10) % 2))   # half the episodes +1
            per_seed[p].append(returns)
            w = f"/r/policies/ditto-ne2{'-s%d' % seed if seed else ''}"
            evals[f"{w}|sample|{p}"] = {"workdir": w, "rule": "sample", "act_matmul": p,
                                        "wall_s": 10.0 if p == "float32" else 7.0,
                                        "returns": returns, "expert_agreement": 0.5}
    # A seed played in one precision only is left out.
    evals["/r/policies/ditto-ne2-s9|sample|float32"] = dict(
        evals["/r/policies/ditto-ne2|sample|float32"], workdir="/r/policies/ditto-ne2-s9")
    [row] = tool.summarize(evals)
    assert (row["method"], row["expert_episodes"], row["rule"]) == ("ditto", 2, "sample")
    assert row["seeds"] == [0, 1, 2] and row["episodes"] == 30
    for p in tool.PRECISIONS:
        iqm, ci = iqm_ci(per_seed[p])
        assert row[p]["iqm"] == pytest.approx(iqm) and row[p]["iqm_ci"] == pytest.approx(ci)
    assert row["same_return_share"] == pytest.approx(0.5)
    assert row["wall_ratio_bf16_over_f32"] == pytest.approx(0.7)
    assert row["p_bf16_over_f32"]["p"] > 0.5
    with pytest.raises(DittoError, match="both precisions"):
        tool.summarize({k: v for k, v in evals.items() if k.endswith("float32")})
