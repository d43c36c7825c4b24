"""The Conv1D+LSTM network in the model market: ``ModelMarketWindow`` observations.

The window is built twice, by the training wrapper (``WindowedModelObservation``, one gym
env) and by ``AgentPolicy`` inside the vectorised ``simulate`` (the evaluation): both must
give the agent the same observations on the same path, or the evaluation would score a
policy the agent never was. Then ``train.py --env as_model --network conv_lstm`` end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import orjson
import pandas as pd
import pytest

import model_market as MM
from as_model_env import ASModelConfig, AvellanedaStoikovEnv, simulate

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def test_window_rows_are_the_causal_history():
    """Row j of the window is step t_j: q, time left, mid change, inventory change, previous depths."""
    env = MM.WindowedModelObservation(AvellanedaStoikovEnv(ASModelConfig()), window=4)
    obs, info = env.reset(seed=11)
    assert env.observation_space.contains(obs)
    history = [(0.0, 1.0, info["market"]["mid"], None)]
    for t in range(6):
        depths = np.array([0.1 * (t + 1), 0.05 * (t + 2)], np.float32)
        obs, _, _, _, info = env.step(depths)
        history.append((float(info["inventory"]), float(info["market"]["time_left"]), info["market"]["mid"], depths))
    for j in range(4):                                     # the last 4 steps, oldest first
        q, tl, mid, depths = history[-4 + j]
        q_prev, _, mid_prev, _ = history[-5 + j]
        np.testing.assert_allclose(obs["features"][j], [q, tl, mid - mid_prev, q - q_prev], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(obs["book"][j, :, 0], depths, rtol=1e-6)
    np.testing.assert_allclose(obs["agent"], [history[-1][0], history[-1][1]], rtol=1e-6)


def test_first_step_window_is_padded_with_the_first_row():
    w = MM.ModelMarketWindow(3, n=2)
    o = w.reset(np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([100.0, 100.0]))
    assert o["features"].shape == (2, 3, 4) and o["book"].shape == (2, 3, 2, 1) and o["agent"].shape == (2, 2)
    np.testing.assert_array_equal(o["features"][:, :, 1], 1.0)         # time left repeated
    np.testing.assert_array_equal(o["features"][:, :, 2:], 0.0)        # no changes yet
    np.testing.assert_array_equal(o["book"], 0.0)                      # nothing quoted yet


@pytest.mark.parametrize("window", [-1, MM.MAX_OBS_WINDOW + 1, 2.5])
def test_bad_window_is_refused(window):
    with pytest.raises(ValueError, match="obs_window must be an integer"):
        MM.ASTrainingConfig(obs_window=window)


def test_simulate_gives_the_agent_the_observations_of_the_training_env():
    """An untrained conv_lstm agent on one path: the wrapped gym env and simulate agree step by step."""
    from ppo_agent import PPOAgent

    cfg = ASModelConfig()
    space = MM.ModelMarketWindow.space(5)
    agent = PPOAgent(space, gym.spaces.Box(-cfg.max_depth, cfg.max_depth, (2,), np.float32),
                     MM.as_ppo_config(network="conv_lstm", log_std_init=0.0), seed=4)
    seen: list[dict[str, np.ndarray]] = []
    predict = agent.predict

    def recording_predict(obs, deterministic=True):
        seen.append({k: np.array(v) for k, v in obs.items()})
        return predict(obs, deterministic=deterministic)

    agent.predict = recording_predict
    env = MM.WindowedModelObservation(AvellanedaStoikovEnv(cfg), window=5)
    obs, info = env.reset(seed=21)
    total, done, env_obs = 0.0, False, []
    while not done:
        env_obs.append(obs)
        action, _ = predict({k: v[None] for k, v in obs.items()}, deterministic=True)
        obs, reward, done, _, info = env.step(action[0])
        total += reward
    result = simulate(MM.AgentPolicy(agent), cfg, n_paths=1, seed=21)
    assert len(seen) == len(env_obs) == cfg.n_steps
    for t, (a, b) in enumerate(zip(env_obs, seen, strict=True)):
        for k in a:
            np.testing.assert_allclose(b[k][0], a[k], rtol=1e-6, atol=1e-6, err_msg=f"step {t}, {k}")
    assert result.reward[0] == pytest.approx(total, rel=1e-6)
    assert int(result.final_inventory[0]) == info["inventory"]


def test_agent_policy_resets_between_batches():
    """A second simulate call starts a fresh window (same seed, same numbers)."""
    from ppo_agent import PPOAgent

    cfg = ASModelConfig()
    agent = PPOAgent(MM.ModelMarketWindow.space(3), gym.spaces.Box(-cfg.max_depth, cfg.max_depth, (2,), np.float32),
                     MM.as_ppo_config(network="conv_lstm"), seed=0)
    policy = MM.AgentPolicy(agent)
    a = simulate(policy, cfg, n_paths=20, seed=3)
    b = simulate(policy, cfg, n_paths=20, seed=3)
    np.testing.assert_array_equal(a.reward, b.reward)


@pytest.mark.slow
def test_train_and_evaluate_conv_lstm_in_the_model_market(tmp_path):
    args = ["--env", "as_model", "--network", "conv_lstm", "--n_envs", "2", "--n_steps", "200", "--batch_size",
            "200", "--n_epochs", "1", "--eval_interval", "0", "--total_timesteps", "400",
            "--final_eval_episodes", "20", "--no_progress", "--seed", "1", "--results_dir", str(tmp_path / "r")]
    r = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = next((tmp_path / "r").iterdir())
    params = orjson.loads((run / "params.json").read_bytes())
    assert params["ppo_config"]["net"]["network"] == "conv_lstm"
    assert params["as_training_config"]["obs_window"] == MM.CONV_LSTM_WINDOW
    from ppo_agent import PPOAgent

    agent = PPOAgent.load(run / "models" / "final_model")
    assert agent.observation_space["book"].shape == (MM.CONV_LSTM_WINDOW, 2, 1)
    r2 = subprocess.run([sys.executable, str(REPO / "evaluate.py"), "--model_path", str(run), "--num_paths", "20",
                         "--out_dir", str(tmp_path / "ev"), "--no_progress"], cwd=tmp_path, env=ENV,
                        capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    # the same 20 held-out paths: evaluate.py reproduces the run's own final evaluation
    final = pd.read_csv(run / "evaluation" / "evaluation_summary.csv")
    again = pd.read_csv(next((tmp_path / "ev").iterdir()) / "evaluation_summary.csv")
    pd.testing.assert_frame_equal(final, again)
