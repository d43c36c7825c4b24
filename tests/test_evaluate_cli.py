"""evaluate.py: CLI smoke (every file and CSV column), same episodes for every policy,
determinism, several models (seeds) on the same episodes with the paired table, refusal of
models with different settings, the too-few-episodes warning, a synthetic-trained model on a
real recording, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evaluation

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
REAL = "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"


def _default_horizons():
    import utils
    from event_driven_env import EnvConfig

    return utils.get_flat(EnvConfig(), "markout_horizons_ms")


DEFAULT_HORIZONS = _default_horizons()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from synthetic_market import generate_file

    return generate_file(tmp_path_factory.mktemp("data") / "synth_ETHUSDT.jsonl", hours=0.1, seed=5)


def _save_tiny_model(path: Path, data: Path, seed: int, **env_leaves) -> Path:
    """An (untrained) agent saved the way train.py saves it, with its env config."""
    import cli
    import utils
    from event_driven_env import EnvConfig
    from ppo_agent import PPOAgent, PPOConfig

    leaves = {"episode_length_s": 20.0, "warmup_s": 2.0, **env_leaves}
    cfg = utils.from_flat(EnvConfig, data_path=str(data), time_range=(0.0, 0.7), **leaves)
    env = cli.make_env(cfg)
    agent = PPOAgent(env.observation_space, env.action_space,
                     utils.from_flat(PPOConfig, jit_compile=False, conv_filters=4, lstm_units=8, hidden_size=16),
                     seed=seed)
    env.close()
    cli.save_model(agent, path, cli.model_metadata(cfg, [data], (0.7, 1.0)))
    return path


@pytest.fixture(scope="module")
def model_dir(tiny_data, tmp_path_factory) -> Path:
    """An (untrained) agent saved the way train.py saves it, with its env config."""
    return _save_tiny_model(tmp_path_factory.mktemp("run") / "models" / "final_model", tiny_data, seed=1)


@pytest.fixture(scope="module")
def two_runs(tiny_data, tmp_path_factory) -> Path:
    """Two run folders (``results/seed1_x``, ``results/seed2_x``) of two tiny agents, as two training seeds leave them."""
    results = tmp_path_factory.mktemp("results")
    for seed in (1, 2):
        _save_tiny_model(results / f"seed{seed}_x" / "models" / "final_model", tiny_data, seed=seed)
    return results


def _flatten_saved_model(src: Path, dst: Path) -> Path:
    """A copy of a saved model with agent.json and env_config.json written flat, as before the nesting."""
    import shutil

    import orjson

    import utils
    from event_driven_env import EnvConfig
    from ppo_agent import PPOConfig

    shutil.copytree(src, dst)
    meta = orjson.loads((dst / "agent.json").read_bytes())
    ppo = utils.dataclass_from_dict(PPOConfig, meta["config"])
    meta["config"] = utils.flat_dict(ppo)
    (dst / "agent.json").write_bytes(orjson.dumps(meta))
    env_meta = orjson.loads((dst / "env_config.json").read_bytes())
    env_meta["env_config"] = utils.flat_dict(utils.dataclass_from_dict(EnvConfig, env_meta["env_config"]))
    (dst / "env_config.json").write_bytes(orjson.dumps(env_meta))
    (dst / "manifest.json").unlink()  # those versions wrote no manifest (manifest.py)
    return dst


def run_eval(args, cwd, timeout=240):
    return subprocess.run([sys.executable, str(REPO / "evaluate.py"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_evaluate_smoke_writes_every_file(model_dir, tmp_path):
    r = run_eval(["--model_path", str(model_dir), "--num_episodes", "2", "--visualize_first",
                  "--out_dir", str(tmp_path / "ev"), "--no_progress", "--seed", "4"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (out,) = list((tmp_path / "ev").iterdir())
    assert "-final_model_" in out.name
    summary = pd.read_csv(out / "evaluation_summary.csv")
    assert list(summary.columns) == list(evaluation.summary_columns(DEFAULT_HORIZONS))
    assert summary["policy"].tolist() == ["agent", "random", "fixed_spread", "join_best",
                                          "avellaneda_stoikov", "glft"]
    assert (summary["n_episodes"] == 2).all()
    eps = pd.read_csv(out / "episodes.csv")
    assert len(eps) == 12
    # same start times for every policy, in the held-out 30 % of the data
    assert eps.groupby("policy")["start_ts"].apply(tuple).nunique() == 1
    for png in ["evaluation_comparison.png"] + [f"episode_first_{p}.png" for p in summary["policy"]]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    assert (out / "evaluation_meta.json").is_file()
    # the table is printed, with the annualisation stated
    assert "agent" in r.stdout and "sqrt(1.5768e+06)" in r.stdout  # 365*86400/20
    assert "sharpe/ep" in r.stdout and "not annualised" in r.stdout


def test_same_seed_same_results_and_summary_formulas(tiny_data):
    import baselines
    import cli
    import utils
    from event_driven_env import EnvConfig

    cfg = utils.from_flat(EnvConfig, data_path=str(tiny_data), time_range=(0.7, 1.0), episode_length_s=10.0,
                          warmup_s=2.0, action_mode="continuous")
    env = cli.make_env(cfg)
    with pytest.warns(UserWarning, match="no intensity fit"):
        pols = baselines.make_baselines(env, seed=0)
    env.close()
    chosen = {"fixed_spread": pols["fixed_spread"], "join_best": pols["join_best"]}
    a, steps_a, _ = evaluation.evaluate_policies(chosen, cfg, 3, seed=2, progress=False)
    b, steps_b, _ = evaluation.evaluate_policies(chosen, cfg, 3, seed=2, progress=False)
    pd.testing.assert_frame_equal(a.drop(columns="wall_s"), b.drop(columns="wall_s"))
    c, _, _ = evaluation.evaluate_policies(chosen, cfg, 3, seed=3, progress=False)
    assert list(c["start_ts"]) != list(a["start_ts"])
    # step PnL adds up to the episode PnL
    for name in chosen:
        assert steps_a[name].sum() == pytest.approx(a.loc[a["policy"] == name, "pnl"].sum(), abs=1e-6)
    s = evaluation.summarise(a, steps_a, cfg, seed=0)  # 10 s episodes, 100 ms steps
    row = s[s["policy"] == "join_best"].iloc[0]
    pnl = a.loc[a["policy"] == "join_best", "pnl"].to_numpy()
    assert row["pnl_mean"] == pytest.approx(pnl.mean())
    assert row["pnl_std"] == pytest.approx(pnl.std(ddof=1))
    if pnl.std() > 0:
        assert row["sharpe_episode"] == pytest.approx(pnl.mean() / pnl.std(ddof=1))
        assert row["sharpe_episode_ann"] == pytest.approx(pnl.mean() / pnl.std(ddof=1) * np.sqrt(3153600))
    downside = np.sqrt(np.mean(np.minimum(pnl, 0.0) ** 2))
    if downside > 0:
        assert row["sortino_episode"] == pytest.approx(pnl.mean() / downside)
    assert row["pnl_ci95_low"] <= row["pnl_mean"] <= row["pnl_ci95_high"]


def test_model_saved_nested_or_flat_evaluates_the_same(model_dir, tmp_path, capsys):
    import evaluate

    flat = _flatten_saved_model(model_dir, tmp_path / "old_run" / "models" / "final_model")
    args = ["--num_episodes", "1", "--baselines", "join_best", "--no_progress", "--seed", "1"]
    summaries = []
    for i, model in enumerate((model_dir, flat)):
        assert evaluate.main(["--model_path", str(model), "--out_dir", str(tmp_path / f"ev{i}"), *args]) == 0
        (out,) = list((tmp_path / f"ev{i}").iterdir())
        summaries.append(pd.read_csv(out / "evaluation_summary.csv"))
    capsys.readouterr()
    assert summaries[0]["policy"].tolist() == ["agent", "join_best"]
    pd.testing.assert_frame_equal(summaries[0], summaries[1])


def test_markout_columns_follow_the_configured_horizons(tiny_data):
    import baselines
    import cli
    import utils
    from event_driven_env import EnvConfig

    cfg = utils.from_flat(EnvConfig, data_path=str(tiny_data), time_range=(0.7, 1.0), episode_length_s=10.0,
                          warmup_s=2.0, action_mode="continuous", markout_horizons_ms=(100.0, 1500.0),
                          adverse_selection_horizon_ms=100.0, realised_spread_horizon_ms=1500.0)
    env = cli.make_env(cfg)
    with pytest.warns(UserWarning, match="no intensity fit"):
        policy = baselines.make_baselines(env, seed=0)["join_best"]
    eps, steps, _ = evaluation.evaluate_policies({"join_best": policy}, cfg, 2, seed=0, progress=False,
                                                 env_cache={"continuous": env})
    summary = evaluation.summarise(eps, steps, cfg)
    assert list(summary.columns) == list(evaluation.summary_columns((100.0, 1500.0)))
    assert "markout_bps_1.5s" in summary.columns and "markout_bps_1s" not in summary.columns
    assert eps["n_fills"].sum() > 0
    assert np.isfinite(summary["markout_bps_1.5s"]).all()
    assert "mkout_100ms" in evaluation.format_table(summary)
    # the episode figure gets the env's markouts (one per horizon) instead of recomputing them
    busy = eps.loc[eps["n_fills"].idxmax()]
    _, _, trace = evaluation.run_episode(env, policy, int(busy["start_ts"]), int(busy["seed"]), record_trace=True)
    env.close()
    assert trace["markout_horizons_ms"] == [100.0, 1500.0]
    assert len(trace["fills"]) == busy["n_fills"]
    assert all(len(f["markouts_bps"]) == 2 for f in trace["fills"])


@pytest.mark.slow
def test_synthetic_model_on_real_recording(model_dir, shared_data, tmp_path):
    r = run_eval(["--model_path", str(model_dir), "--data_path", str(shared_data / REAL), "--symbol",
                  "ETHUSDT", "--episode_length_s", "10", "--warmup_s", "5", "--num_episodes", "2",
                  "--baselines", "join_best", "--visualize_first", "--out_dir", str(tmp_path),
                  "--no_progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (out,) = list(tmp_path.glob("*final_model_*"))
    summary = pd.read_csv(out / "evaluation_summary.csv")
    assert summary["policy"].tolist() == ["agent", "join_best"]
    assert (out / "episode_first_agent.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model_path", "no/such/model"], "model folder not found: no/such/model"),
        (["--data_path", "missing.jsonl", "--baselines", "join_best"], "data file not found: missing.jsonl"),
        (["--baselines", "nope"], "unknown baseline(s) ['nope']"),
        (["--eval_range", "0.5", "0.4"], "0 <= start < end <= 1"),
        (["--num_episodes", "0"], "--num_episodes must be >= 1"),
        (["--baselines"], "nothing to evaluate"),
    ],
    ids=["missing-model", "missing-data", "unknown-baseline", "bad-range", "zero-episodes", "nothing"],
)
def test_user_errors_are_one_line(tiny_data, tmp_path, capsys, args, message):
    import evaluate

    if "--data_path" not in args:
        args = [*args, "--data_path", str(tiny_data)]
    rc = evaluate.main([*args, "--out_dir", str(tmp_path), "--no_progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err, err
    assert err.startswith("evaluate.py: error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_bad_flag_subprocess_has_no_traceback(tmp_path):
    r = run_eval(["--num_episodes", "many"], tmp_path, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("evaluate.py: error: argument --num_episodes")


TWO_MODEL_ARGS = ["--num_episodes", "3", "--baselines", "fixed_spread", "join_best", "--no_progress",
                  "--seed", "2"]


def _only_dir(parent: Path) -> Path:
    (out,) = [p for p in parent.iterdir() if p.is_dir()]
    return out


def test_two_models_share_episodes_and_write_the_paired_table(two_runs, tmp_path, capsys):
    import orjson

    import evaluate

    # run folders (results/<run> = its models/final_model), given as a glob
    assert evaluate.main(["--model_path", str(two_runs / "seed*_x"), "--out_dir", str(tmp_path),
                          *TWO_MODEL_ARGS]) == 0
    printed = capsys.readouterr().out
    out = _only_dir(tmp_path)
    assert out.name.startswith("seed1_x-final_model_and_1_more_")
    eps = pd.read_csv(out / "episodes.csv")
    # one row per model, policy and episode; the baselines ran once (no model)
    assert eps.groupby(["policy", eps["model"].fillna("-")]).size().to_dict() == {
        ("agent", "seed1_x-final_model"): 3, ("agent", "seed2_x-final_model"): 3,
        ("fixed_spread", "-"): 3, ("join_best", "-"): 3}
    # every model and baseline on the very same episodes: start times and env seeds
    assert eps.groupby(["policy", eps["model"].fillna("-")])[["start_ts", "seed"]].apply(
        lambda g: tuple(map(tuple, g.to_numpy()))).nunique() == 1
    paired = pd.read_csv(out / "paired_differences.csv")
    assert list(paired.columns) == list(evaluation.PAIRED_COLUMNS)
    assert paired["baseline"].tolist() == ["fixed_spread", "join_best"]
    assert (paired["n_models"] == 2).all() and (paired["n_episodes"] == 3).all()
    assert (paired["metric"] == "pnl").all()
    for _, r in paired.iterrows():
        ag = eps[eps["policy"] == "agent"].groupby("episode")["pnl"].mean()
        base = eps[eps["policy"] == r["baseline"]].set_index("episode")["pnl"]
        assert r["diff_mean"] == pytest.approx(float((ag - base).mean()))
        assert r["diff_ci_lo"] <= r["diff_mean"] <= r["diff_ci_hi"]
    summary = pd.read_csv(out / "evaluation_summary.csv")
    agent_row = summary[summary["policy"] == "agent"].iloc[0]
    assert agent_row["n_models"] == 2 and agent_row["n_episodes"] == 3
    assert agent_row["pnl_mean"] == pytest.approx(eps.loc[eps["policy"] == "agent", "pnl"].mean())
    meta = orjson.loads((out / "evaluation_meta.json").read_bytes())
    assert meta["models"] == ["seed1_x-final_model", "seed2_x-final_model"]
    # no overlap or repeated-start warning (a baseline that never fills may be flagged zero_variance)
    assert not [w for w in meta["warnings"] if "non-overlapping" in w or "distinct start" in w]
    assert (out / "evaluation_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "paired difference agent - baseline" in printed and "2 model(s)" in printed


def test_two_models_same_seed_identical_episodes_and_paired_table(two_runs, tmp_path, capsys):
    import evaluate

    finals = [str(two_runs / f"seed{s}_x" / "models" / "final_model") for s in (1, 2)]
    outs = []
    for i, spec in enumerate(([str(two_runs / "seed*_x")], finals)):  # a glob, then the two folders
        assert evaluate.main(["--model_path", *spec, "--out_dir", str(tmp_path / f"ev{i}"), *TWO_MODEL_ARGS]) == 0
        outs.append(_only_dir(tmp_path / f"ev{i}"))
    capsys.readouterr()
    a, b = (pd.read_csv(o / "episodes.csv").drop(columns="wall_s") for o in outs)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_csv(outs[0] / "paired_differences.csv"),
                                  pd.read_csv(outs[1] / "paired_differences.csv"))
    # the two models are different policies (else the test would not test the pairing)
    ag = a[a["policy"] == "agent"]
    assert ag["model"].nunique() == 2


def test_models_with_different_settings_are_refused(two_runs, tiny_data, tmp_path, capsys):
    import evaluate

    odd = _save_tiny_model(tmp_path / "odd" / "models" / "final_model", tiny_data, seed=3, episode_length_s=10.0)
    rc = evaluate.main(["--model_path", str(two_runs / "seed1_x"), str(odd), "--out_dir", str(tmp_path / "ev"),
                        *TWO_MODEL_ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "differ in episode_length_s (20.0 vs 10.0)" in err and "odd-final_model" in err
    assert not (tmp_path / "ev").exists()


def test_too_few_episodes_fit_warns_in_log_and_meta(tiny_data, tmp_path, capsys, caplog):
    import orjson

    import evaluate

    # 0.1 h of data, held-out 30 % = 108 s: five 20 s episodes fit, six are asked for
    args = ["--data_path", str(tiny_data), "--eval_range", "0.7", "1", "--episode_length_s", "20",
            "--warmup_s", "2", "--baselines", "join_best", "--num_episodes", "6", "--no_progress",
            "--out_dir", str(tmp_path)]
    with caplog.at_level("WARNING", logger="evaluation"):
        assert evaluate.main(args) == 0
    assert "fits only 5 non-overlapping episode(s) of 20 s, but 6 were requested" in caplog.text
    meta = orjson.loads((_only_dir(tmp_path) / "evaluation_meta.json").read_bytes())
    assert meta["episodes_that_fit"] == 5
    assert len(meta["warnings"]) == 1 and "fits only 5" in meta["warnings"][0]
    assert "warning: the evaluation range" in capsys.readouterr().out


def test_evaluating_on_the_training_data_is_called_in_sample(model_dir, tiny_data, tmp_path, capsys):
    """--data_path naming the model's own training file, whole range: a warning, not a silent result."""
    import evaluate

    base = ["--model_path", str(model_dir), "--data_path", str(tiny_data), "--num_episodes", "1", "--baselines",
            "join_best", "--no_progress", "--seed", "1"]
    with pytest.warns(UserWarning, match=r"overlaps the training range \(0.0, 0.7\).*in-sample"):
        assert evaluate.main([*base, "--out_dir", str(tmp_path / "a")]) == 0
    assert "the result is in-sample" in capsys.readouterr().out
    # the held-out part of the same file: no warning
    assert evaluate.main([*base, "--eval_range", "0.7", "1", "--out_dir", str(tmp_path / "b")]) == 0
    assert "in-sample" not in capsys.readouterr().out


def test_agent_lockstep_batches_give_the_one_at_a_time_episodes(model_dir, tiny_data, monkeypatch):
    """``run_episodes`` (the agent's episodes in lockstep, padded batches) = ``run_episode`` one by one.

    Five episodes in batches of 2 (2 + 2 + 1, the last padded) and in batches of 1: the same
    rows (metrics, fills, start times) and the same per-step PnL. Baselines carry state from
    step to step and are never batched.
    """
    import baselines
    import cli
    import utils
    from event_driven_env import EnvConfig

    agent, _ = cli.load_model(model_dir)
    cfg = utils.from_flat(EnvConfig, data_path=str(tiny_data), time_range=(0.7, 1.0), episode_length_s=20.0,
                          warmup_s=2.0)
    models = {"m": evaluation.AgentPolicy(agent, utils.get_flat(cfg, "action_mode"))}
    out = {}
    for batch in (1, 2):
        monkeypatch.setattr(evaluation, "EVAL_BATCH", batch)
        out[batch] = evaluation.evaluate_policies({}, cfg, 5, seed=4, progress=False, models=models)
    (a, steps_a, _), (b, steps_b, _) = out[1], out[2]
    assert len(a) == 5 and a["n_fills"].sum() > 0  # the untrained agent trades: the comparison means something
    pd.testing.assert_frame_equal(a.drop(columns="wall_s"), b.drop(columns="wall_s"))
    np.testing.assert_array_equal(steps_a["agent"], steps_b["agent"])
    assert not any(hasattr(c, "act_batch") for c in vars(baselines).values() if isinstance(c, type))
