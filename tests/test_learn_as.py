"""Tests of model_market's training path: wrapper reward by hand, tiny-budget training, determinism, CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import as_model_env as M
import model_market as MM
from ppo_agent import PPOAgent
from utils import flat_dict

REPO = Path(__file__).resolve().parent.parent
# Two envs x one 200-step episode per rollout, minibatches of 200: two updates in 800 steps.
TINY_PPO = {"n_steps": 200, "batch_size": 200, "n_epochs": 2}
TINY = MM.ASTrainingConfig(n_envs=2)


def _tiny_agent(seed: int = 0, config: M.ASModelConfig | None = None) -> PPOAgent:
    return MM.train_as_model(config or M.ASModelConfig(), MM.as_ppo_config(**TINY_PPO), 800, seed=seed,
                             training=TINY)


def test_control_variate_reward_is_spread_captured_minus_penalty():
    cfg = M.ASModelConfig(per_step_inventory_aversion=0.3, terminal_inventory_aversion=0.2)
    env = MM.MarkToMarketControlVariate(M.AvellanedaStoikovEnv(cfg))
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=11)
    q, fills, penalty, mtm_total = 0, 0, 0.0, 0.0
    for t in range(cfg.n_steps):
        db, da = rng.uniform(-0.5, 1.5, 2)
        obs, r, terminated, _, info = env.step(np.array([db, da]))
        dq, dn = info["inventory"] - q, info["n_fills"] - fills
        bid_fill = dq == 1 or dn == 2                     # +1: bid only; 0 with two fills: both
        ask_fill = dq == -1 or dn == 2
        step_penalty = 0.3 * q**2 * cfg.dt + (0.2 * info["inventory"] ** 2 if terminated else 0.0)
        expected = bid_fill * db + ask_fill * da - step_penalty
        assert math.isclose(r, expected, abs_tol=1e-9), (t, r, expected)
        q, fills = info["inventory"], info["n_fills"]
        penalty += step_penalty
        mtm_total += info["mtm_reward"]
    assert terminated and t == cfg.n_steps - 1
    # the env's own reward (kept in info) still sums to the criterion: PnL minus the penalties
    assert math.isclose(mtm_total, info["pnl"] - penalty, abs_tol=1e-6)


def test_train_evaluate_smoke_and_saved_agent(tmp_path):
    agent = _tiny_agent(seed=0)
    assert agent.num_timesteps == 800 and agent.num_updates == 2
    assert flat_dict(agent.config)["network"] == "mlp"
    assert agent.action_space.shape == (2,) and agent.action_space.high[0] == M.ASModelConfig().max_depth
    depths, _ = agent.predict(np.array([[0.0, 1.0], [3.0, 0.5]], np.float32))
    assert depths.shape == (2, 2) and np.isfinite(depths).all()
    cfg = M.ASModelConfig()
    agent.save(tmp_path / "agent")
    table = MM.evaluate_as_model({"ppo": agent, "saved": tmp_path / "agent", **MM.reference_policies(cfg)},
                                 cfg, n_paths=50, seed=123, reference="risk_neutral")
    assert list(table.index) == ["ppo", "saved", "risk_neutral", "cartea_jaimungal", "avellaneda_stoikov", "glft"]
    assert {"reward_mean", "reward_se", "final_inv_std", "reward_ratio", "inv_std_ratio"} <= set(table.columns)
    assert table.loc["ppo"].equals(table.loc["saved"])                # save/load keeps the policy
    assert table.loc["risk_neutral", "reward_ratio"] == 1.0
    assert np.isfinite(table.to_numpy()).all()
    with pytest.raises(ValueError, match="reference"):
        MM.evaluate_as_model({"a": agent}, cfg, n_paths=5, reference="b")
    with pytest.raises(TypeError, match="not a policy"):
        MM.evaluate_as_model({"a": 3}, cfg, n_paths=5)
    with pytest.raises(ValueError, match="n_envs"):
        MM.ASTrainingConfig(n_envs=0)


def test_training_is_deterministic_by_seed():
    # production settings (XLA-compiled steps); the seed fixes weights, sampling, minibatches, episodes
    cfg = M.ASModelConfig(per_step_inventory_aversion=0.01, terminal_inventory_aversion=0.001)
    a, b = _tiny_agent(3, cfg), _tiny_agent(3, cfg)
    for i, (wa, wb) in enumerate(zip(a.model.get_weights(), b.model.get_weights(), strict=True)):
        np.testing.assert_array_equal(wa, wb, err_msg=f"weight array {i}")
    ra = MM.evaluate_as_model({"ppo": a}, cfg, n_paths=100, seed=7)
    rb = MM.evaluate_as_model({"ppo": b}, cfg, n_paths=100, seed=7)
    assert ra.equals(rb)
    untrained = PPOAgent(a.observation_space, a.action_space, a.config, seed=3)
    assert not MM.evaluate_as_model({"ppo": untrained}, cfg, n_paths=100, seed=7).equals(ra)   # it learned


@pytest.mark.slow
def test_benchmark_cli_tiny_budget():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "learn_as.py"), "--seeds", "1",
                          "--timesteps", "800", "--n-envs", "4", "--eval-paths", "20"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    keys = [kv.split("=")[0] for kv in last.split()]
    assert keys == ["pnl_ratio", "cj_ratio", "inv_std_ratio", "seeds"], last
    assert last.endswith("seeds=1")
