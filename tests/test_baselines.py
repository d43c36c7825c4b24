"""Tests of baselines: formulas, action conversion, intensity calibration, runs on real and synthetic books."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import as_model_env as M
import baselines as B

REAL_BYBIT = "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"


def test_as_formulas_hand_computed():
    # r = 100 - 2 * 0.1 * 4 * 0.5 = 99.6 ; spread = 0.1*4*0.5 + 20*ln(1 + 0.1/1.5)
    assert B.as_reservation_price(100.0, 2, 0.1, 2.0, 0.5) == pytest.approx(99.6)
    spread = 0.2 + 20.0 * math.log(1.0 + 0.1 / 1.5)
    assert B.as_optimal_spread(0.1, 2.0, 1.5, 0.5) == pytest.approx(spread)
    bid, ask = B.as_quotes(100.0, 2, 0.1, 2.0, 1.5, 0.5)
    assert (bid, ask) == pytest.approx((99.6 - spread / 2, 99.6 + spread / 2))


def test_glft_symmetry_skew_and_bounds():
    b0, a0 = B.glft_quotes(100.0, 0, 0.1, 2.0, 140.0, 1.5)
    assert 100.0 - b0 == pytest.approx(a0 - 100.0)
    b1, a1 = B.glft_quotes(100.0, 2, 0.1, 2.0, 140.0, 1.5)
    assert b1 < b0 and a1 < a0                   # long inventory: both quotes move down
    skew = (b0 - b1) / 2
    c2 = math.sqrt(0.1 / (2 * 140 * 1.5) * (1 + 0.1 / 1.5) ** (1.5 / 0.1 + 1))
    assert skew == pytest.approx(2.0 * c2)       # sigma * c2 per unit of inventory
    b, a = B.glft_quotes(100.0, np.array([-3, 0, 3]), 0.1, 2.0, 140.0, 1.5, max_inventory=3)
    assert np.isnan(b[2]) and not np.isnan(b[1]) and np.isnan(a[0]) and not np.isnan(a[1])


def test_offsets_conversion_on_book_env_market():
    market = {"ts": 0, "mid": 100.005, "best_bid": 100.0, "best_ask": 100.01, "tick_size": 0.01,
              "inventory": 0.0, "time_left": 1.0, "sigma": 0.0}
    pol = B.FixedSpreadPolicy(2.0)
    # bid 99.985 -> 99.98 (2 ticks behind 100.00); ask 100.025 -> 100.03 (2 behind 100.01)
    assert pol.act(None, {"market": market}).tolist() == [2.0, 2.0]
    assert B.JoinBestPolicy().act(None, {"market": market}).tolist() == [0.0, 0.0]
    # a target through the opposite best is clipped to one tick inside it
    assert pol.to_action(market, 100.5, 99.0).tolist() == [-0.0, 0.0]
    # bounded by the action space; a nan (no quote) goes to the furthest offset
    space = type("S", (), {"low": np.array([-5.0, -5.0]), "high": np.array([5.0, 5.0])})()
    assert B.FixedSpreadPolicy(50.0, action_space=space).act(None, {"market": market}).tolist() == [5.0, 5.0]
    assert B.FixedSpreadPolicy(0.0, action_space=space).to_action(market, float("nan"), 100.01).tolist() == [5.0, 0.0]


def test_as_policy_skews_with_inventory_on_book_env():
    pol = B.AvellanedaStoikovPolicy(gamma=0.05, k=0.5, sigma=1.0, horizon_s=60.0, order_size=0.01)
    base = {"ts": 0, "mid": 100.005, "best_bid": 100.0, "best_ask": 100.01, "tick_size": 0.01,
            "time_left": 1.0, "sigma": 0.0}
    flat = pol.act(None, {"market": {**base, "inventory": 0.0}})
    long = pol.act(None, {"market": {**base, "inventory": 0.05}})
    assert flat[0] == flat[1]
    assert long[0] > flat[0] and long[1] < flat[1]   # long: bid further, ask closer


def test_online_volatility_recovers_brownian_sigma():
    rng = np.random.default_rng(0)
    v = B.OnlineVolatility(halflife_s=3000.0)
    mid = 100.0
    for i in range(20000):
        mid += 0.3 * math.sqrt(0.1) * rng.standard_normal()
        v.update(i * 100.0, mid)
    assert v.sigma == pytest.approx(0.3, rel=0.1)


def test_calibration_recovers_known_A_and_k_from_as_model_flow():
    """Tolerance: 10 % on A and k (measured errors at this size are about 1-3 %)."""
    for A, k, seed in ((140.0, 1.5, 3), (50.0, 0.8, 4)):
        cfg = M.ASModelConfig(A=A, k=k)
        flow = M.sample_market_orders(cfg, duration=30.0, seed=seed)  # ~2 * A * 30 orders
        fit = B.calibrate_intensity(flow["ts"], flow["price"], flow["side"], flow["mid_ts"], flow["mid"])
        assert fit.A == pytest.approx(A, rel=0.10) and fit.k == pytest.approx(k, rel=0.10)
        assert fit.r2 > 0.98


def test_calibration_errors_are_clear():
    with pytest.raises(ValueError, match="depth level"):
        B.calibrate_intensity([1.0, 2.0], [100.5, 99.5], [1, -1], [0.0, 3.0], [100.0, 100.0])
    with pytest.raises(ValueError, match="matching lengths"):
        B.calibrate_intensity([1.0], [100.5, 99.5], [1, -1], [0.0], [100.0])
    with pytest.raises(ValueError, match="no trades"):
        B.calibrate_intensity([], [], [], [0.0], [100.0])


def test_baselines_in_as_model_env():
    env = M.AvellanedaStoikovEnv()
    pols = B.make_baselines(env)
    assert set(pols) == {"random", "fixed_spread", "join_best", "avellaneda_stoikov", "glft"}
    res = {n: M.simulate(p, env.config, n_paths=300, seed=1) for n, p in pols.items()}
    assert res["avellaneda_stoikov"].pnl.mean() > res["join_best"].pnl.mean()
    assert res["glft"].pnl.mean() > 50.0
    # the same policy object drives the single-path gym env
    obs, info = env.reset(seed=0)
    a = pols["glft"].act(obs, info)
    assert a.shape == (2,) and env.action_space.contains(a.astype(np.float32))


def _run_episode(env, policy, seed):
    obs, info = env.reset(seed=seed)
    policy.reset()
    done = False
    while not done:
        action = policy.act(obs, info)
        assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.isfinite(reward)
        done = terminated or truncated
    return info["episode"]


def _env_or_skip():
    try:
        from event_driven_env import MarketMakingEnv
    except ImportError as exc:  # pragma: no cover - only before the env module lands
        pytest.skip(f"event_driven_env not importable: {exc}")
    return MarketMakingEnv


def test_baselines_run_on_real_recording(shared_data, tmp_path):
    MarketMakingEnv = _env_or_skip()
    env = MarketMakingEnv(data_path=str(shared_data / REAL_BYBIT), symbol="ETHUSDT", action_mode="continuous",
                          episode_length_s=10.0, warmup_s=5.0, cache_dir=str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no fit on this 44 s file (too few trades): default A, k
        pols = B.make_baselines(env)
    for name, pol in pols.items():
        ep = _run_episode(env, pol, seed=1)
        assert np.isfinite(ep["pnl"]), name


def test_baselines_run_on_synthetic_with_calibration(tmp_path):
    MarketMakingEnv = _env_or_skip()
    import synthetic_market as sm

    path = sm.generate_file(tmp_path / "s.jsonl", 0.3, seed=2)
    fit = B.calibrate_from_file(path, time_range=(0.0, 0.7))
    assert fit.A > 0 and fit.k > 0
    env = MarketMakingEnv(data_path=str(path), action_mode="continuous", episode_length_s=30.0,
                          warmup_s=5.0, time_range=(0.7, 1.0), cache_dir=str(tmp_path / "cache"))
    pols = B.make_baselines(env, fit=fit)
    eps = {name: _run_episode(env, pol, seed=3) for name, pol in pols.items()}
    assert all(np.isfinite(e["pnl"]) for e in eps.values())
    assert eps["join_best"]["n_fills"] >= eps["fixed_spread"]["n_fills"]
