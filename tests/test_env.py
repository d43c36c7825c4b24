"""MarketMakingEnv: Gymnasium API checks, determinism, episodes, config plumbing."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import synthetic_market
from event_driven_env import (
    AGENT_FEATURE_NAMES,
    DISCRETE_ACTIONS,
    EnvConfig,
    MarketMakingEnv,
)
from utils import replace_flat

BOTH_AT_BEST = DISCRETE_ACTIONS.index("both_offset_+0")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """About 360 s of synthetic Bybit-format ETHUSDT feed (100 ms deltas and trades)."""
    return str(synthetic_market.generate_file(tmp_path_factory.mktemp("synth") / "synth.jsonl", hours=0.1, seed=3))


def make(synth, tmp_path, **kw):
    kw.setdefault("episode_length_s", 20.0)
    kw.setdefault("warmup_s", 5.0)
    return MarketMakingEnv(data_path=synth, cache_dir=str(tmp_path / "cache"), **kw)


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_check_env(synth, tmp_path, mode):
    env = make(synth, tmp_path, action_mode=mode, episode_length_s=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # +-inf observation bounds are deliberate
        check_env(env, skip_render_check=True)


def test_gymnasium_make(synth, tmp_path):
    env = gym.make("MarketMaking-v0", data_path=synth, cache_dir=str(tmp_path / "c"), fill_model="bbo_cross",
                   episode_length_s=2.0, warmup_s=1.0)
    assert env.unwrapped.config.exchange.fill_model == "bbo_cross"
    obs, info = env.reset(seed=0)
    assert obs["agent"].shape == (len(AGENT_FEATURE_NAMES),)


def rollout(env, seed, n=150):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [(obs, 0.0, info["pnl"])]
    for _ in range(n):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((obs, r, info["pnl"], len(info["fills"])))
        if term or trunc:
            break
    return out


@pytest.mark.parametrize("mode", ["discrete", "continuous"])
def test_same_seed_same_episode(synth, tmp_path, mode):
    env = make(synth, tmp_path, action_mode=mode, latency_distribution="lognormal")
    a = rollout(env, 7)
    start_a = env.start_ts
    b = rollout(env, 7)
    assert env.start_ts == start_a
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for k in x[0]:
            np.testing.assert_array_equal(x[0][k], y[0][k], err_msg=f"step {i} key {k}")
        assert x[1:] == y[1:], f"step {i}"
    rollout(env, 8, n=1)
    assert env.start_ts != start_a


def test_episode_start_times_stay_in_time_range(synth, tmp_path):
    env = make(synth, tmp_path, time_range=(0.5, 1.0))
    env2 = make(synth, tmp_path, time_range=(0.0, 0.5))
    for seed in range(5):
        env.reset(seed=seed)
        assert env.start_ts >= env.range_start_ts and env.end_ts <= env.range_end_ts
        env2.reset(seed=seed)
        assert env2.end_ts <= env2.range_end_ts <= env.range_start_ts


def test_full_episode_quoting_both_sides(synth, tmp_path):
    env = make(synth, tmp_path, episode_length_s=120.0)
    _, info = env.reset(options={"start_ts": env.range_start_ts + 20_000})
    assert env.start_ts == env.range_start_ts + 20_000
    steps, total = 0, 0.0
    while True:
        _, r, term, trunc, info = env.step(BOTH_AT_BEST)
        steps += 1
        total += r
        if term or trunc:
            break
    assert trunc and not term and steps == 1200
    ep = info["episode"]
    assert ep["length_steps"] == 1200 and ep["n_fills"] > 0 and ep["maker_volume"] > 0
    assert ep["pnl"] == pytest.approx(ep["spread_capture"] + ep["inventory_pnl"] - ep["fees"])
    assert ep["pnl"] == pytest.approx(info["pnl"])
    # the summed reward is the PnL in tick-lots
    assert total == pytest.approx(ep["pnl"] / (env.tick_size * env.order_size), rel=1e-9, abs=1e-9)
    for key in ("markout_bps_100ms", "markout_bps_1s", "markout_bps_5s", "markout_bps_30s",
                "adverse_selection_ratio", "realised_spread_bps", "maker_volume_ratio", "fill_ratio",
                "inventory_mean", "inventory_abs_mean", "inventory_max_abs", "orders_placed",
                "orders_cancelled", "liquidation_cost", "realised_pnl", "unrealised_pnl"):
        assert key in ep and np.isfinite(ep[key]), key
    assert 0 <= ep["fill_ratio"] <= 1 and 0 <= ep["adverse_selection_ratio"] <= 1
    assert info["inventory"] == 0.0                      # liquidated
    assert set(info["market"]) >= {"ts", "mid", "best_bid", "best_ask", "tick_size", "inventory", "time_left", "sigma"}


def test_inventory_limit_refuses_orders(synth, tmp_path):
    with pytest.warns(UserWarning, match="zero order latency"):
        env = make(synth, tmp_path, max_inventory=1.0, entry_latency_ms=0.0, cancel_latency_ms=0.0)
    env.reset(seed=1)
    buy = DISCRETE_ACTIONS.index("market_buy")
    _, _, _, _, info = env.step(buy)
    assert info["inventory"] == pytest.approx(env.order_size)
    _, _, _, _, info = env.step(buy)                     # would reach 2 lots > 1
    assert info["inventory"] == pytest.approx(env.order_size)
    _, _, _, _, info = env.step(DISCRETE_ACTIONS.index("bid_offset_+0"))   # a bid could breach too
    assert env._refused == 2 and info["quotes"]["bid"] is None


def test_config_values_reach_their_consumers(synth, tmp_path):
    env = make(synth, tmp_path, maker_fee_bps=-1.0, taker_fee_bps=7.0, order_size=0.3, fill_model="bbo_cross",
               obs_window=3, obs_levels=4, decision_interval_ms=250.0)
    obs, _ = env.reset(seed=0)
    assert env._ex.maker_rate == -1e-4 and env._ex.taker_rate == 7e-4 and not env._ex.fill_rule.uses_queue
    assert env.order_size == 0.3 and obs["book"].shape == (3, 4, 4) and obs["features"].shape[0] == 3
    _, _, _, _, info = env.step(0)
    assert info["market"]["ts"] == env.start_ts + 250


def test_every_message_mode(synth, tmp_path):
    env = make(synth, tmp_path, decision_interval_ms=0.0, episode_length_messages=50)
    env.reset(seed=0)
    ts = []
    for _ in range(60):
        _, _, term, trunc, info = env.step(BOTH_AT_BEST)
        ts.append(info["market"]["ts"])
        if trunc:
            break
    assert len(ts) == 50 and all(b >= a for a, b in zip(ts, ts[1:], strict=False))


@pytest.mark.parametrize("bad", [dict(fill_model="magic"), dict(time_range=(0.7, 0.3)), dict(max_inventory=0),
                                 dict(adverse_selection_horizon_ms=2000.0), dict(obs_window=0)])
def test_invalid_config(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        replace_flat(EnvConfig(data_path="x"), **bad)


def test_data_path_list_is_joined_with_pathsep(tmp_path):
    a, b = tmp_path / "a.jsonl", str(tmp_path / "b.jsonl")
    assert EnvConfig(data_path=[a, b]).data_path == str(a) + os.pathsep + b
    assert EnvConfig(data_path=(b,)).data_path == b
    assert EnvConfig(data_path=a).data_path == str(a)


@pytest.mark.parametrize("bad,msg", [([], "empty"), (["a", 3], "got 3"), ([f"a{os.pathsep}b"], "separator"),
                                     (5, "got 5")])
def test_bad_data_path(bad, msg):
    with pytest.raises(ValueError, match=msg):
        EnvConfig(data_path=bad)


def test_missing_data_path():
    with pytest.raises(ValueError, match="data_path"):
        MarketMakingEnv()


@pytest.mark.slow
def test_sb3_ppo_trains(synth, tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    env = make(synth, tmp_path, obs_window=4, obs_levels=5)
    model = sb3.PPO("MultiInputPolicy", env, n_steps=512, batch_size=128, n_epochs=2, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048


def test_recording_without_trades_warns_and_uses_the_fallback(synth, tmp_path):
    """The env reads sizes and trade presence from Replay.profile (the recording is read once)."""
    src = open(synth, "rb").read().splitlines(keepends=True)
    path = tmp_path / "no_trades.jsonl"
    path.write_bytes(b"".join(line for line in src if b"publicTrade" not in line))
    with pytest.warns(UserWarning, match="no trades in the first"):
        env = MarketMakingEnv(data_path=str(path), cache_dir=str(tmp_path / "c"), episode_length_s=5.0, warmup_s=1.0)
    prof = env._replay.profile
    assert not env.has_trades and not prof.has_trades
    auto = max(prof.median_trade_size, prof.lot_size)          # 0.1 x the median level size here
    assert env.lot_size == prof.lot_size and env.order_size == pytest.approx(round(auto / env.lot_size) * env.lot_size)
    env.reset(seed=0)
    assert env._ex.fill_rule.has_trades is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # bbo_cross ignores trades: no warning
        MarketMakingEnv(data_path=str(path), cache_dir=str(tmp_path / "c"), episode_length_s=5.0, warmup_s=1.0,
                        fill_model="bbo_cross")
