"""train.py --env as_model and evaluate.py on its models: a tiny-budget run writes every file
(params.json with the resolved model config), the model reloads and is the one
``model_market.train_as_model`` trains with the same seed, evaluate.py scores it against the
closed forms on the same paths (identical numbers for the same seed, the numbers of the run's
own final evaluation), --resume continues, bad flags are one-line errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}

# Two envs x one 200-step episode per rollout, minibatches of 200: two updates in 800 steps.
TINY = ["--env", "as_model", "--n_envs", "2", "--n_steps", "200", "--batch_size", "200", "--n_epochs", "2",
        "--eval_interval", "1", "--eval_episodes", "20", "--checkpoint_interval", "1", "--no_progress"]
REFERENCES = ["risk_neutral", "cartea_jaimungal", "avellaneda_stoikov", "glft"]


def run_script(script, args, cwd, timeout=300):
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def as_run(tmp_path_factory):
    """A tiny cj run (sigma changed by a flag) with a 50-path final evaluation."""
    tmp = tmp_path_factory.mktemp("as_run")
    r = run_script("train.py", [*TINY, "--as_setting", "cj", "--as_sigma", "2.5", "--total_timesteps", "800",
                                "--final_eval_episodes", "50", "--seed", "3", "--run_name", "asm",
                                "--results_dir", str(tmp / "results")], tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [p for p in (tmp / "results").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0], r


@pytest.mark.slow
def test_train_as_model_writes_the_run_and_the_model_reloads(as_run):
    import model_market as MM
    import model_market_cli as MMC
    import train
    from as_model_env import ASModelConfig
    from ppo_agent import PPOAgent

    run, r = as_run
    assert run.name.startswith("asm_")
    params = orjson.loads((run / "params.json").read_bytes())
    assert params["env"] == "as_model" and params["as_setting"] == "cj" and params["seed"] == 3
    cfg = ASModelConfig(sigma=2.5, per_step_inventory_aversion=0.01, terminal_inventory_aversion=0.001)
    assert params["as_model_config"] == {k: getattr(cfg, k) for k in params["as_model_config"]}
    assert params["as_training_config"] == {"n_envs": 2, "control_variate": True, "obs_window": 0}
    assert params["ppo_config"]["net"]["network"] == "mlp"                      # AS_PPO_DEFAULTS reached the run
    assert params["ppo_config"]["net"]["log_std_init"] == MM.AS_PPO_DEFAULTS["log_std_init"]
    assert params["ppo_config"]["gamma"] == 1.0 and params["ppo_config"]["n_steps"] == 200
    assert params["total_timesteps"] == 800 and params["steps_per_episode"] == 200
    for model in ("best_model", "final_model"):
        for f in ("agent.json", "model.weights.h5", "env_config.json"):
            assert (run / "models" / model / f).is_file(), (model, f)
        meta = orjson.loads((run / "models" / model / "env_config.json").read_bytes())
        assert MMC.is_as_model(meta) and MMC.as_config_of(meta) == cfg
    latest = orjson.loads((run / "checkpoints" / "latest.json").read_bytes())
    assert (run / "checkpoints" / latest["checkpoint"] / "optimizer.npz").is_file()
    log = pd.read_csv(run / "training_log.csv")
    assert list(log.columns) == list(train.LOG_COLUMNS)
    assert list(log["timesteps"]) == [400, 800] and log["eval_pnl_mean"].notna().all()
    assert log["diag/bid_offset_q50"].notna().all()                             # the quoted depths
    assert (run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    # the final evaluation on the held-out paths, against every closed form
    summary = pd.read_csv(run / "evaluation" / "evaluation_summary.csv")
    assert list(summary.columns) == list(MM.SUMMARY_COLUMNS)
    assert summary["policy"].tolist() == ["agent", *REFERENCES] and (summary["n_paths"] == 50).all()
    assert "paired difference agent - reference" in r.stdout and "cartea_jaimungal" in r.stdout
    # the saved model reloads: 2-d observation [inventory, time_left], depths out; it is the
    # agent model_market.train_as_model trains with the same seed and settings
    agent = PPOAgent.load(run / "models" / "final_model")
    assert agent.observation_space.shape == (2,) and agent.action_space.shape == (2,)
    same = MM.train_as_model(cfg, MM.as_ppo_config(n_steps=200, batch_size=200, n_epochs=2), 800, seed=3,
                             training=MM.ASTrainingConfig(n_envs=2))
    for i, (wa, wb) in enumerate(zip(agent.model.get_weights(), same.model.get_weights(), strict=True)):
        np.testing.assert_array_equal(wa, wb, err_msg=f"weight array {i}")


@pytest.mark.slow
def test_evaluate_on_the_run_is_deterministic_and_matches_the_final_evaluation(as_run, tmp_path, capsys):
    import evaluate
    import model_market as MM

    run, _ = as_run
    outs = []
    for k in range(2):
        rc = evaluate.main(["--model_path", str(run), "--num_paths", "50", "--out_dir", str(tmp_path / f"e{k}"),
                            "--no_progress"])
        assert rc == 0
        outs.append(next((tmp_path / f"e{k}").iterdir()))
    printed = capsys.readouterr().out
    assert "ratio = over the optimum, cartea_jaimungal" in printed and "wilcoxon_p" in printed
    first, second = (pd.read_csv(o / "evaluation_summary.csv") for o in outs)
    assert first["policy"].tolist() == ["agent", *REFERENCES]
    pd.testing.assert_frame_equal(first, second)                               # same seed, same numbers
    # default seed = model_market.EVAL_SEED: the numbers of train.py's own final evaluation
    pd.testing.assert_frame_equal(first, pd.read_csv(run / "evaluation" / "evaluation_summary.csv"))
    assert first.set_index("policy").loc["cartea_jaimungal", "ratio_to_optimum"] == 1.0
    paired = pd.read_csv(outs[0] / "paired_differences.csv")
    assert list(paired.columns) == list(MM.PAIRED_COLUMNS)
    assert paired["baseline"].tolist() == REFERENCES * 2 and set(paired["metric"]) == {"criterion", "pnl"}
    assert (paired["n_episodes"] == 50).all()
    paths = pd.read_csv(outs[0] / "paths.csv")
    assert list(paths.columns) == list(MM.PATH_COLUMNS) and len(paths) == 5 * 50
    meta = orjson.loads((outs[0] / "evaluation_meta.json").read_bytes())
    assert meta["seed"] == MM.EVAL_SEED and meta["optimum"] == "cartea_jaimungal"
    # another seed: other paths
    rc = evaluate.main(["--model_path", str(run), "--num_paths", "50", "--seed", "7",
                        "--out_dir", str(tmp_path / "e7")])
    assert rc == 0
    other = pd.read_csv(next((tmp_path / "e7").iterdir()) / "evaluation_summary.csv")
    assert not other["criterion_mean"].equals(first["criterion_mean"])
    # flags of market evaluations are refused, in one line
    rc = evaluate.main(["--model_path", str(run), "--episode_length_s", "10", "--out_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "['episode_length_s'] do not apply to model-market models" in err


@pytest.mark.slow
def test_resume_continues_an_as_model_run(tmp_path, capsys):
    import train

    results = tmp_path / "results"
    assert train.main([*TINY, "--total_timesteps", "400", "--final_eval", "false", "--run_name", "res",
                       "--results_dir", str(results)]) == 0
    run = next(results.iterdir())
    rc = train.main(["--resume", str(run), "--as_sigma", "3"])
    assert rc == 2 and "cannot change ['as_sigma']" in capsys.readouterr().err
    assert train.main(["--resume", str(run), "--total_timesteps", "800", "--final_eval", "false",
                       "--no_progress"]) == 0
    log = pd.read_csv(run / "training_log.csv")
    assert list(log["timesteps"]) == [400, 800] and list(log["update"]) == [1, 2]
    final = orjson.loads((run / "models" / "final_model" / "agent.json").read_bytes())
    assert final["num_timesteps"] == 800
    params = orjson.loads((run / "params.json").read_bytes())
    assert params["env"] == "as_model" and params["resumed"][0]["num_timesteps"] == 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "as_model", "--as_sigma", "-1"], "ASModelConfig.sigma must be a positive finite number"),
        (["--env", "as_model", "--as_n_steps", "10"], "is not a probability"),
        (["--env", "as_model", "--as_obs_window", "100"], "obs_window must be an integer in 0..64"),
        (["--env", "as_model", "--episode_length_s", "20"], "['episode_length_s'] do not apply to --env as_model"),
        (["--env", "as_model", "--vector_env", "async"], "async is not supported with --env as_model"),
        (["--env", "as_model", "--seed", "1000000"], "use a smaller --seed"),
        (["--as_sigma", "2"], "['as_sigma'] apply to --env as_model only"),
    ],
    ids=["bad-sigma", "bad-steps", "bad-window", "market-flag", "async", "seed-overlap", "as-flag-on-market"],
)
def test_bad_as_flags_are_one_line_errors(tmp_path, capsys, args, message):
    import train

    rc = train.main([*args, "--results_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err, err
    assert err.startswith("train.py: error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_as_setting_is_argparse_one_line_error(tmp_path):
    r = run_script("train.py", ["--env", "as_model", "--as_setting", "mbt"], tmp_path, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("train.py:")]
    assert len(lines) == 1 and "--as_setting" in lines[0] and "invalid choice" in lines[0]
