"""train.py: CLI smoke run with a tiny budget (every output file and CSV column), the collapse
diagnostics in the training log and figure, Ctrl-C then --resume with the step count
continuing, one-line errors for bad flags and missing files, the NaN guard."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}

# A tiny budget: 20 s episodes of 100 ms steps (200 steps), 64-step rollouts, 1 epoch, no XLA.
TINY = ["--episode_length_s", "20", "--warmup_s", "2", "--n_steps", "64", "--batch_size", "64",
        "--n_epochs", "1", "--n_envs", "1", "--jit_compile", "false", "--no_progress",
        "--conv_filters", "4", "--lstm_units", "8", "--hidden_size", "16"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from synthetic_market import generate_file

    return generate_file(tmp_path_factory.mktemp("data") / "synth_ETHUSDT.jsonl", hours=0.1, seed=11)


def run_train(args, cwd, timeout=420):  # generous: the shared 2-core machine is often loaded
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def only_run_dir(results: Path) -> Path:
    dirs = [p for p in results.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.slow
def test_train_smoke_writes_every_file(tiny_data, tmp_path):
    import numpy as np

    import evaluation
    import train
    import utils
    from event_driven_env import EnvConfig

    r = run_train(["--data_path", str(tiny_data), "--total_timesteps", "256", "--eval_interval", "2",
                   "--eval_episodes", "1", "--checkpoint_interval", "2", "--final_eval_episodes", "2",
                   "--plot_interval", "1", "--run_name", "smoke", "--seed", "3",
                   "--results_dir", str(tmp_path / "results"), *TINY], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run_dir(tmp_path / "results")
    assert run.name.startswith("smoke_")
    params = orjson.loads((run / "params.json").read_bytes())
    for key in ("env_config", "ppo_config", "train_settings", "data", "versions", "device", "seed",
                "total_timesteps", "command", "eval_env_config"):
        assert key in params, key
    # train / validation (selects best_model) / test (final evaluation only), disjoint
    assert params["data"]["train"]["time_range"] == [0.0, 0.6]
    assert params["data"]["validation"]["time_range"] == [0.6, 0.7]
    assert params["data"]["test"]["time_range"] == [0.7, 1.0]
    assert len(params["data"]["train"]["files"][0]["sha256"]) == 64
    assert params["ppo_config"]["n_steps"] == 64 and params["env_config"]["episode_length_s"] == 20.0
    for model in ("best_model", "final_model"):
        for f in ("agent.json", "model.weights.h5", "env_config.json"):
            assert (run / "models" / model / f).is_file(), (model, f)
    latest = orjson.loads((run / "checkpoints" / "latest.json").read_bytes())
    assert (run / "checkpoints" / latest["checkpoint"] / "optimizer.npz").is_file()
    log = pd.read_csv(run / "training_log.csv")
    assert list(log.columns) == list(train.LOG_COLUMNS)
    assert list(log["update"]) == [1, 2, 3, 4] and list(log["timesteps"]) == [64, 128, 192, 256]
    assert log["eval_pnl_mean"].notna().sum() == 2  # updates 2 and 4
    assert log["policy_loss"].notna().all()
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    ev = run / "evaluation"
    summary = pd.read_csv(ev / "evaluation_summary.csv")
    horizons = utils.get_flat(EnvConfig(), "markout_horizons_ms")
    assert list(summary.columns) == list(evaluation.summary_columns(horizons))
    # the agent, its untrained self (models/initial_model) as the reference row, five baselines
    assert summary["policy"].tolist()[:2] == ["agent", "initial_agent"] and len(summary) == 7
    assert (run / "models" / "initial_model" / "agent.json").is_file()
    eps = pd.read_csv(ev / "episodes.csv")
    assert len(eps) == 14
    assert np.allclose(eps["pnl_before_liquidation"] - eps["liquidation_cost"], eps["pnl"], atol=1e-6)
    for col in ("policy", "episode", "start_ts", *evaluation.episode_columns(horizons), "max_drawdown"):
        assert col in eps.columns, col
    # every policy ran on the very same start times
    assert eps.groupby("policy")["start_ts"].apply(tuple).nunique() == 1
    for png in ("evaluation_comparison.png", "episode_first_agent.png", "episode_first_glft.png"):
        assert (ev / png).read_bytes()[:4] == b"\x89PNG", png
    assert "pnl_mean" in r.stdout and "annualisation" in r.stdout and "sharpe/ep" in r.stdout
    # the paired agent − baseline table, from the same code path as evaluate.py
    paired = pd.read_csv(ev / "paired_differences.csv")
    assert list(paired.columns) == list(evaluation.PAIRED_COLUMNS) and len(paired) == 6
    assert "paired difference agent - baseline" in r.stdout and "wilcoxon_p" in r.stdout
    assert eps.loc[eps["policy"] == "agent", "model"].unique().tolist() == [f"{run.name}-final_model"]
    # collapse diagnostics: every update has them; the periodic evaluation adds its own
    assert log["diag/quoted_bid_share"].notna().all() and log["diag/action_hold"].notna().all()
    assert log["eval/quoted_bid_share"].notna().sum() == 2


@pytest.mark.slow
def test_sigint_saves_checkpoint_and_resume_continues(tiny_data, tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "train.py"), "--data_path", str(tiny_data), "--total_timesteps",
           "100000", "--eval_interval", "0", "--checkpoint_interval", "1000", "--run_name", "intr",
           "--results_dir", str(results), *TINY]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 180
    log_file = None
    while time.time() < deadline:
        runs = list(results.glob("intr_*/training_log.csv")) if results.exists() else []
        if runs and len(pd.read_csv(runs[0])) >= 2:
            log_file = runs[0]
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    assert log_file is not None, "training never logged two updates"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "--resume" in err
    run = log_file.parent
    latest = orjson.loads((run / "checkpoints" / "latest.json").read_bytes())
    stopped_at = latest["num_timesteps"]
    n_rows = len(pd.read_csv(log_file))
    assert stopped_at == 64 * n_rows  # the checkpoint holds the last logged update
    assert (run / "training_curves.png").is_file()
    assert not (run / "models" / "final_model").exists()
    # resume with a budget of two more updates
    r = run_train(["--resume", str(run), "--total_timesteps", str(stopped_at + 128), "--no_progress",
                   "--final_eval", "false"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    log = pd.read_csv(log_file)
    assert list(log["timesteps"]) == [64 * (i + 1) for i in range(n_rows + 2)]
    assert list(log["update"]) == list(range(1, n_rows + 3))
    final = orjson.loads((run / "models" / "final_model" / "agent.json").read_bytes())
    assert final["num_timesteps"] == stopped_at + 128
    params = orjson.loads((run / "params.json").read_bytes())
    assert params["resumed"][0]["num_timesteps"] == stopped_at


def test_bad_flag_is_one_line_error(tmp_path):
    r = run_train(["--learning_rate", "fast"], tmp_path, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    # (TensorFlow's C++ start-up chatter may precede it; our message is one line)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("train.py:")]
    assert len(lines) == 1 and "--learning_rate" in lines[0] and "invalid float value" in lines[0]
    assert r.stderr.strip().splitlines()[-1] == lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data_path", "no/such/file.jsonl"], "data file not found: no/such/file.jsonl"),
        (["--data_path", "no/such/*.jsonl"], "matches no file"),
        (["--train_range", "0", "0.8", "--eval_range", "0.7", "1"], "overlap"),
        (["--eval_range", "0.9", "0.2"], "0 <= start < end <= 1"),
        (["--n_steps", "0"], "n_steps must be > 0"),
        (["--num_episodes", "0"], "num_episodes must be >= 1"),
        (["--resume", "no/such/run"], "no params.json"),
    ],
    ids=["missing-file", "empty-glob", "overlap", "bad-range", "bad-ppo", "bad-settings", "bad-resume"],
)
def test_user_errors_are_one_line(tiny_data, tmp_path, capsys, args, message):
    import train

    if args[0] != "--data_path" and args[0] != "--resume":
        args = ["--data_path", str(tiny_data), *args]
    rc = train.main([*args, "--results_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err, err
    assert err.startswith("train.py: error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    import train

    class FakeAgent:
        num_updates, num_timesteps = 3, 192

    (tmp_path / "checkpoints" / "update_000002").mkdir(parents=True)
    (tmp_path / "checkpoints" / "update_000002" / "agent.json").write_bytes(b"{}")  # a saved agent (no manifest: read as saved before manifests)
    (tmp_path / "checkpoints" / "latest.json").write_bytes(orjson.dumps({"checkpoint": "update_000002"}))
    mon = train.TrainingMonitor(tmp_path, train.TrainSettings(), {}, None, 1000, progress=False)
    try:
        keep = mon(FakeAgent(), {"train/policy_loss": 0.1, "train/value_loss": math.nan})
    finally:
        mon.close()
    assert keep is False
    assert "train/value_loss" in mon.stopped_by_nan and "update_000002" in mon.stopped_by_nan
    assert not (tmp_path / "training_log.csv").exists()  # the bad update is not logged
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()] == ["update_000002"]


def test_help_lists_every_config_field(capsys):
    import train
    import utils
    from event_driven_env import EnvConfig
    from ppo_agent import PPOConfig

    parser, maps = train.build_parser()
    text = parser.format_help()
    for cls in (EnvConfig, PPOConfig, train.TrainSettings):
        for leaf in utils.flat_field_paths(cls):  # nested configs' fields included
            if leaf in ("data_path", "symbol", "time_range", "seed"):
                continue
            assert f"--{leaf}" in text or f"--ppo_{leaf}" in text, leaf
    # the network architecture is a nested config, flattened into the same flags as before
    assert {"network", "hidden_size", "lstm_units"} <= set(maps["ppo"].values())
    assert "PPO (PPOConfig): net (NetworkConfig)" in text


def test_train_ppo_defaults_reach_the_config_and_the_help(tiny_data):
    import train
    from ppo_agent import PPOConfig

    parser, maps = train.build_parser()
    args = parser.parse_args(["--data_path", str(tiny_data), "--n_epochs", "3"])
    run = train._resolve_new_run(args, maps)
    cfg = run["ppo"]
    assert cfg.n_epochs == 3  # a flag wins over the train.py default
    for name, value in train.TRAIN_PPO_DEFAULTS.items():
        if name != "n_epochs":
            assert getattr(cfg, name) == value, name
    # the fields not overridden keep PPOConfig's defaults
    assert cfg.learning_rate == PPOConfig().learning_rate
    text = " ".join(parser.format_help().split())
    assert "(default: 128; PPOConfig default: 2048)" in text
    assert "(default: True; PPOConfig default: False)" in text


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_resume_reads_params_written_nested_or_flat(tiny_data, tmp_path, layout):
    """A run's params.json as this version writes it (nested configs) or as older versions did (flat)."""
    import train
    import utils
    from event_driven_env import EnvConfig
    from ppo_agent import PPOConfig

    env_cfg = utils.from_flat(EnvConfig, data_path=str(tiny_data), time_range=(0.0, 0.7), episode_length_s=20.0)
    ppo_cfg = utils.from_flat(PPOConfig, network="mlp", hidden_size=16, n_steps=64, normalize_reward=True)
    settings = train.TrainSettings(n_envs=2, eval_interval=0)
    dump = utils.dataclass_to_dict if layout == "nested" else utils.flat_dict
    files = [{"path": str(tiny_data)}]
    params = {"env_config": dump(env_cfg), "ppo_config": dump(ppo_cfg),
              "train_settings": utils.dataclass_to_dict(settings),
              "data": {"train": {"files": files, "time_range": [0.0, 0.7]},
                       "eval": {"files": files, "time_range": [0.7, 1.0]}}}
    if layout == "flat":
        assert "hidden_size" in params["ppo_config"] and "net" not in params["ppo_config"]
    (tmp_path / "params.json").write_bytes(orjson.dumps(params))
    parser, maps = train.build_parser()
    _, run, _ = train._resume_run(parser.parse_args(["--resume", str(tmp_path), "--total_timesteps", "999"]),
                                  maps)
    assert run["env"] == env_cfg and run["ppo"] == ppo_cfg
    assert run["settings"] == train.TrainSettings(n_envs=2, eval_interval=0, total_timesteps=999)
    assert run["eval_range"] == (0.7, 1.0)
    with pytest.raises(utils.CliError, match="cannot change"):
        train._resume_run(parser.parse_args(["--resume", str(tmp_path), "--hidden_size", "8"]), maps)


@pytest.mark.parametrize("action_mode", ["discrete", "continuous"])
def test_diagnostics_reach_the_training_log_and_figure(tiny_data, tmp_path, action_mode):
    import numpy as np

    import train
    import utils
    from event_driven_env import EnvConfig
    from ppo_agent import PPOAgent, PPOConfig

    cfg = utils.from_flat(EnvConfig, data_path=str(tiny_data), time_range=(0.0, 0.7), episode_length_s=20.0,
                          warmup_s=2.0, action_mode=action_mode)
    envs = train.make_vector_env(cfg, 1, "sync")
    ppo = utils.from_flat(PPOConfig, n_steps=64, batch_size=64, n_epochs=1, jit_compile=False, network="mlp",
                          hidden_size=16)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, ppo, seed=0)
    settings = train.TrainSettings(n_envs=1, eval_interval=0, plot_interval=1000, checkpoint_interval=1000)
    mon = train.TrainingMonitor(tmp_path, settings, {}, None, 256, progress=False,
                                diagnostics=train._diagnostics_fn(cfg))
    try:
        agent.learn(envs, 256, callback=mon)
    finally:
        mon.close()
        envs.close()
    mon.plot()
    log = pd.read_csv(tmp_path / "training_log.csv")
    assert list(log.columns) == list(train.LOG_COLUMNS) and len(log) == 4
    for col in ("diag/quoted_bid_share", "diag/quoted_ask_share", "diag/fills_per_episode"):
        assert log[col].ge(0).all(), col  # nan fails too
    assert log[["diag/quoted_bid_share", "diag/quoted_ask_share"]].le(1).all().all()
    assert log["n_fills"].notna().sum() == 1  # one 200-step episode finished in 256 steps
    groups = [f"diag/action_{g}" for g in train.ACTION_GROUPS]
    offsets = [f"diag/{side}_offset_{k}" for side in ("bid", "ask") for k in ("mean", "q10", "q50", "q90")]
    if action_mode == "discrete":
        assert np.allclose(log[groups].sum(axis=1), 1.0)
        assert log["diag/entropy_uniform"].eq(np.log(21)).all()  # 21 discrete actions
        # the mean offset of the quote actions taken, per side (a random policy quotes both sides)
        assert log[["diag/bid_offset_mean", "diag/ask_offset_mean"]].abs().le(2).all().all()
        assert log[[c for c in offsets if "_q" in c]].isna().all().all()
    else:
        assert log[groups].isna().all().all() and log["diag/entropy_uniform"].isna().all()
        b = log[["diag/bid_offset_q10", "diag/bid_offset_q50", "diag/bid_offset_q90"]].to_numpy()
        assert (np.diff(b, axis=1) >= 0).all() and (np.abs(b) <= cfg.continuous_max_offset).all()
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
