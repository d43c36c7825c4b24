"""Tests of as_model_env: the Avellaneda–Stoikov reproduction, dynamics, env API, determinism."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import as_model_env as M
from baselines import AvellanedaStoikovPolicy, FixedSpreadPolicy

# Reference: Avellaneda & Stoikov (2008), Quant. Finance 8(3), section 4 (S0=100, sigma=2,
# A=140, k=1.5, T=1, dt=0.005, gamma=0.1, 1000 paths), as reproduced in mbt_gym (Jerome et al.
# 2022, arXiv:2209.07823): inventory strategy mean PnL 64.9, std 6.7, mean spread 1.49.
REF_MEAN, REF_STD, REF_SPREAD, N_PATHS = 64.9, 6.7, 1.49, 1000


class _Const:
    """Constant depths (vectorised)."""

    action_mode = "continuous"

    def __init__(self, db: float, da: float) -> None:
        self.a = np.array([db, da])

    def reset(self) -> None:
        pass

    def act(self, obs, info):
        return np.broadcast_to(self.a, (len(info["market"]["mid"]), 2))


def test_avellaneda_stoikov_reproduces_reference():
    res = M.simulate(AvellanedaStoikovPolicy(gamma=0.1), M.ASModelConfig(), n_paths=N_PATHS, seed=2024)
    se = REF_STD / math.sqrt(N_PATHS)           # standard error of a 1000-path mean (0.21)
    tol = 3.0 * math.sqrt(2.0) * se              # both our mean and the reference are estimates
    assert abs(res.pnl.mean() - REF_MEAN) < tol, (res.pnl.mean(), tol)
    # the std of a 1000-path sample has a relative standard error of ~1/sqrt(2000) = 2.2%
    assert abs(res.pnl.std() / REF_STD - 1.0) < 0.10, res.pnl.std()
    assert abs(res.mean_spread.mean() - REF_SPREAD) < 0.005
    assert np.allclose(res.reward, res.pnl)
    # the inventory strategy keeps inventory tighter than the symmetric one (AS 2008 table)
    sym = M.simulate(FixedSpreadPolicy(REF_SPREAD / 2), M.ASModelConfig(), n_paths=N_PATHS, seed=2024)
    assert res.final_inventory.std() < 0.6 * sym.final_inventory.std()
    assert res.pnl.std() < sym.pnl.std()


def test_simulate_is_deterministic_by_seed():
    a = M.simulate(AvellanedaStoikovPolicy(), n_paths=50, seed=5)
    b = M.simulate(AvellanedaStoikovPolicy(), n_paths=50, seed=5)
    c = M.simulate(AvellanedaStoikovPolicy(), n_paths=50, seed=6)
    assert np.array_equal(a.pnl, b.pnl) and np.array_equal(a.inventory_path, b.inventory_path)
    assert not np.array_equal(a.pnl, c.pnl)


def test_hand_computable_extremes():
    cfg = M.ASModelConfig()
    # depth 10: fill probability 140 * exp(-15) * 0.005 = 2e-5 per step; with this seed no fill
    far = M.simulate(_Const(10.0, 10.0), cfg, n_paths=20, seed=0)
    assert np.all(far.n_fills == 0) and np.all(far.pnl == 0.0)
    # depth -10: both sides fill every step, inventory stays 0 and each step pays 20
    cross = M.simulate(_Const(-10.0, -10.0), cfg, n_paths=5, seed=0)
    assert np.all(cross.n_fills == 2 * cfg.n_steps)
    assert np.allclose(cross.pnl, -20.0 * cfg.n_steps)
    assert np.all(cross.inventory_path == 0)


def test_fill_rate_matches_intensity():
    cfg = M.ASModelConfig()
    delta = 1.0
    res = M.simulate(_Const(delta, 50.0), cfg, n_paths=2000, seed=1)  # ask never fills
    p = cfg.A * math.exp(-cfg.k * delta) * cfg.dt
    n = 2000 * cfg.n_steps
    assert abs(res.n_fills.sum() / n - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_cartea_jaimungal_reward_and_inventory_bound():
    cfg = M.ASModelConfig(per_step_inventory_aversion=0.5, terminal_inventory_aversion=2.0, max_inventory=3)
    res = M.simulate(_Const(0.2, 3.0), cfg, n_paths=200, seed=3)      # buys far more than sells
    q = res.inventory_path.astype(float)
    expected = res.pnl - 0.5 * (q[:-1] ** 2).sum(axis=0) * cfg.dt - 2.0 * q[-1] ** 2
    assert np.allclose(res.reward, expected)
    assert q.max() == 3 and q.min() >= -3


def test_gym_env_registered_checks_and_episode():
    env = gym.make("AvellanedaStoikov-v0")
    check_env(env.unwrapped, skip_render_check=True)
    env = M.AvellanedaStoikovEnv(sigma=2.0)
    obs, info = env.reset(seed=7)
    assert obs.tolist() == [0.0, 1.0] and info["market"]["action_units"] == "depth"
    pol = AvellanedaStoikovPolicy()
    total, steps, terminated = 0.0, 0, False
    while not terminated:
        obs, r, terminated, truncated, info = env.step(pol.act(obs, info))
        assert not truncated
        total += r
        steps += 1
    assert steps == 200 and math.isclose(total, info["episode"]["pnl"], abs_tol=1e-9)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))
    # same seed, same episode
    env2 = M.AvellanedaStoikovEnv()
    o1, i1 = env2.reset(seed=7)
    a = env2.step(np.array([0.5, 0.5]))
    env2.reset(seed=7)
    b = env2.step(np.array([0.5, 0.5]))
    assert a[1] == b[1] and a[4]["market"]["mid"] == b[4]["market"]["mid"]


@pytest.mark.parametrize("kw", [{"sigma": -1.0}, {"n_steps": 0}, {"A": 1e6}, {"max_inventory": 0},
                                {"per_step_inventory_aversion": -0.1}])
def test_config_validation(kw):
    with pytest.raises(ValueError):
        M.ASModelConfig(**kw)
    with pytest.raises(ValueError, match="unknown"):
        M.AvellanedaStoikovEnv(sigmaa=1.0)


def test_bad_action():
    env = M.AvellanedaStoikovEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="dimension of 2"):
        env.step(np.array([1.0, 1.0, 1.0]))


# ----------------------------------------------------------------- Cartea–Jaimungal closed form
# (closed_form_cj_policy: the optimum of the criterion set in ASModelConfig)


def _cj_depths(policy, q, time_left):
    d = policy.act(None, {"market": {"inventory": np.asarray(q), "time_left": time_left}})
    return d[..., 0], d[..., 1]


def test_cj_without_aversion_is_the_risk_neutral_optimum():
    cfg = M.ASModelConfig()
    pol = M.closed_form_cj_policy(cfg)
    q = np.arange(-10, 11)
    for time_left in (1.0, 0.5, 0.0):
        bid, ask = _cj_depths(pol, q, time_left)
        # omega(t, q) = exp(2 A/e (T - t)) on an unbounded grid: h does not depend on q
        np.testing.assert_allclose(bid, 1 / cfg.k, atol=1e-4)
        np.testing.assert_allclose(ask, 1 / cfg.k, atol=1e-4)
    # value h(0, 0) = 2 A / (k e) T: the risk-neutral expected PnL
    assert math.isclose(pol.value(0, 1.0), 2 * cfg.A / (cfg.k * math.e) * cfg.terminal_time, rel_tol=1e-6)
    rn = M.simulate(FixedSpreadPolicy(1 / cfg.k), cfg, n_paths=2000, seed=4)
    cj = M.simulate(pol, cfg, n_paths=2000, seed=4)
    # the same quotes (up to the grid-edge effect above), so the same fills on the same paths
    assert np.array_equal(cj.n_fills, rn.n_fills)
    np.testing.assert_allclose(cj.pnl, rn.pnl, atol=0.01)


def test_cj_terminal_quotes_and_symmetry_by_hand():
    phi, alpha = 0.3, 0.05
    cfg = M.ASModelConfig(per_step_inventory_aversion=phi, terminal_inventory_aversion=alpha)
    pol = M.closed_form_cj_policy(cfg)
    q = np.arange(-6, 7)
    # at T, h(T, q) = -alpha q^2: delta_bid = 1/k + alpha (2q + 1), delta_ask = 1/k + alpha (1 - 2q)
    bid, ask = _cj_depths(pol, q, 0.0)
    np.testing.assert_allclose(bid, 1 / cfg.k + alpha * (2 * q + 1), atol=1e-12)
    np.testing.assert_allclose(ask, 1 / cfg.k + alpha * (1 - 2 * q), atol=1e-12)
    for time_left in (1.0, 0.3):
        bid, ask = _cj_depths(pol, q, time_left)
        np.testing.assert_allclose(bid, ask[::-1], atol=1e-9)        # delta_bid(q) = delta_ask(-q)
        assert np.all(np.diff(bid) > 0) and np.all(np.diff(ask) < 0)  # long: sell cheaper, buy dearer


def test_cj_h_table_edges_and_large_aversion():
    cfg = M.ASModelConfig(per_step_inventory_aversion=50.0, terminal_inventory_aversion=5.0)
    h = M.cj_h_table(cfg, max_inventory=40)
    assert h.shape == (cfg.n_steps + 1, 81) and np.isfinite(h).all()   # no cancellation to log(0)
    bid, ask = M.cj_depths(h[0], np.array([-40, 40, 45]), cfg.k, far=cfg.max_depth)
    assert ask[0] == cfg.max_depth and bid[1] == cfg.max_depth and bid[2] == cfg.max_depth
    with pytest.raises(ValueError, match="max_inventory"):
        M.cj_h_table(cfg, max_inventory=0)


@pytest.mark.parametrize("phi,alpha", [(0.1, 0.01), (1.0, 0.1)], ids=["phi0.1", "phi1"])
def test_cj_criterion_beats_symmetric_and_avellaneda_stoikov(phi, alpha):
    cfg = M.ASModelConfig(per_step_inventory_aversion=phi, terminal_inventory_aversion=alpha)
    policies = {"cj": M.closed_form_cj_policy(cfg), "symmetric_1/k": FixedSpreadPolicy(1 / cfg.k),
                "symmetric_AS_spread": FixedSpreadPolicy(REF_SPREAD / 2),
                "avellaneda_stoikov": AvellanedaStoikovPolicy(gamma=0.1)}
    # the same paths for every policy (same seed)
    reward = {name: M.simulate(p, cfg, n_paths=2000, seed=8).reward for name, p in policies.items()}
    se = {name: r.std(ddof=1) / math.sqrt(len(r)) for name, r in reward.items()}
    for name in ("symmetric_1/k", "symmetric_AS_spread", "avellaneda_stoikov"):
        margin = reward["cj"].mean() - reward[name].mean()
        assert margin > 3 * math.hypot(se["cj"], se[name]), (name, reward["cj"].mean(), reward[name].mean())
    # the continuous-time value h(0, 0) is within 3 % of the simulated (discrete-time) criterion
    value = M.closed_form_cj_policy(cfg).value(0, 1.0)
    assert abs(reward["cj"].mean() / value - 1) < 0.03, (value, reward["cj"].mean())
