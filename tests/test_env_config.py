"""Every EnvConfig leaf (nested configs included) reaches the object that uses it.

One check per leaf of ``utils.flat_field_paths(EnvConfig)``: set a non-default value, build
the env on a tiny synthetic recording and assert the value arrived where it is consumed (the
exchange's model objects, the reward object, the features, the spaces, the time range ...).
``test_every_leaf_has_a_consumer_check`` fails when a leaf is added without a check here.
"""

from __future__ import annotations

import math
import shutil
import warnings

import numpy as np
import pytest

import synthetic_market
from event_driven_env import DISCRETE_ACTIONS, EnvConfig, MarketMakingEnv
from market_features import FeatureConfig
from reward import InventoryPenaltyReward, RewardConfig
from sim_exchange import BboCrossFill, ExchangeConfig, LognormalLatency, LogQueue
from utils import flat_dict, flat_field_paths, horizon_label

BOTH = DISCRETE_ACTIONS.index("both_offset_+0")
BID0 = DISCRETE_ACTIONS.index("bid_offset_+0")
BUY = DISCRETE_ACTIONS.index("market_buy")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """About 72 s of synthetic Bybit-format ETHUSDT feed."""
    return str(synthetic_market.generate_file(tmp_path_factory.mktemp("cfg") / "s.jsonl", hours=0.02, seed=5))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def make(synth, cache):
    def _make(**kw):
        kw.setdefault("episode_length_s", 5.0)
        kw.setdefault("warmup_s", 1.0)
        kw.setdefault("cache_dir", cache)
        kw.setdefault("data_path", synth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # zero latency etc. are deliberate here
            return MarketMakingEnv(**kw)
    return _make


def run(env, action=BOTH, seed=0, start=None):
    """Reset and step ``action`` to the episode end; returns the list of (reward, info)."""
    env.reset(seed=seed, options=None if start is None else {"start_ts": start})
    out = []
    while True:
        _, r, term, trunc, info = env.step(action)
        out.append((r, info, term, trunc))
        if term or trunc:
            return out


# --------------------------------------------------------------- the checks, one per leaf
def _data_path(env, make, synth, tmp_path):
    copy = shutil.copy(synth, tmp_path / "copy.jsonl")
    env = make(data_path=[copy])
    assert env.config.data_path == str(copy) and [str(p) for p in env._replay.sources] == [str(copy)]


def _symbol(env, make, synth, tmp_path):
    assert env.symbol == "ETHUSDT"
    with pytest.raises(ValueError, match="NOPE"):
        make(symbol="NOPE")


def _tick_size(env, make, synth, tmp_path):
    default = make()
    assert env.tick_size == 0.005 and default.tick_size == 0.01
    env.reset(seed=0)
    default.reset(seed=0)
    assert env._book.best_bid()[0] == 2 * default._book.best_bid()[0]


def _action_mode(env, make, synth, tmp_path):
    assert env.action_space.shape == (2,) and not env._discrete


def _time_range(env, make, synth, tmp_path):
    span = env._replay.end_ts - env._replay.start_ts
    assert env.range_start_ts == env._replay.start_ts + int(0.5 * span)
    env.reset(seed=3)
    assert env.start_ts >= env.range_start_ts


def _episode_length_s(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert env.end_ts - env.start_ts == 3000


def _episode_length_messages(env, make, synth, tmp_path):
    steps = run(env, action=0)
    assert steps[-1][3] and env._n_book >= 5 and len(steps) < 20


def _decision_interval_ms(env, make, synth, tmp_path):
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert info["market"]["ts"] == env.start_ts + 250


def _warmup_s(env, make, synth, tmp_path):
    calls = []
    start_at = env._replay.start_at
    env._replay.start_at = lambda t: calls.append(t) or start_at(t)
    env.reset(seed=0)
    assert calls == [max(env._replay.start_ts, env.start_ts - 4000)]


def _order_size(env, make, synth, tmp_path):
    env.reset(seed=0)
    _, _, _, _, info = env.step(BUY)
    assert env.order_size == 0.3 and info["inventory"] == pytest.approx(0.3)


def _lot_size(env, make, synth, tmp_path):
    assert env.lot_size == 0.1 and round(env.order_size / 0.1, 9).is_integer()
    env.reset(seed=0)
    assert env._ex.fill_rule.lot_size == 0.1


def _max_inventory(env, make, synth, tmp_path):
    assert env.max_inventory_units == pytest.approx(2.0 * env.order_size)
    env.reset(seed=0)
    env.step(BUY)
    env.step(BUY)
    env.step(BUY)                                     # a third lot would breach 2
    assert env._ex.position == pytest.approx(2 * env.order_size) and env._refused == 1


def _max_loss(env, make, synth, tmp_path):
    steps = run(env, action=BUY)                      # a taker buy pays the fee: equity < 0 at once
    assert steps[-1][2] and len(steps) <= 3


def _obs_window(env, make, synth, tmp_path):
    obs, _ = env.reset(seed=0)
    assert obs["book"].shape[0] == obs["features"].shape[0] == 3 == env.observation_space["book"].shape[0]


def _obs_levels(env, make, synth, tmp_path):
    obs, _ = env.reset(seed=0)
    assert obs["book"].shape == (8, 4, 4)


def _continuous_max_offset(env, make, synth, tmp_path):
    assert env.action_space.high.tolist() == [3.0, 3.0] and env.action_space.low.tolist() == [-3.0, -3.0]


def _continuous_size(env, make, synth, tmp_path):
    assert env.action_space.shape == (4,)


def _markout_horizons_ms(env, make, synth, tmp_path):
    steps = run(env, start=env.range_start_ts + 10_000)
    ep = steps[-1][1]["episode"]
    assert env._mk.horizons == (100.0, 1500.0) and ep["markout_horizons_ms"] == [100.0, 1500.0]
    key = f"markout_bps_{horizon_label(1500.0)}"
    assert key == "markout_bps_1.5s" and math.isfinite(ep[key]) and "markout_bps_1500ms" not in ep
    assert ep["n_maker_fills"] > 0 and all(len(f["markouts_bps"]) == 2 for f in ep["fills"])
    resolved = [f["markouts_bps"][1] for f in ep["fills"] if f["maker"] and f["markouts_bps"][1] is not None]
    assert ep[key] == pytest.approx(np.mean(resolved))


def _adverse_selection_horizon_ms(env, make, synth, tmp_path):
    assert env._as_idx == 2
    ep = run(env, start=env.range_start_ts + 10_000)[-1][1]["episode"]
    vals = [f["markouts_bps"][2] for f in ep["fills"] if f["maker"] and f["markouts_bps"][2] is not None]
    assert vals and ep["adverse_selection_ratio"] == pytest.approx(np.mean([v < 0 for v in vals]))


def _realised_spread_horizon_ms(env, make, synth, tmp_path):
    assert env._rs_idx == 1


def _cache_dir(env, make, synth, tmp_path):
    assert env._replay.cache_dir == tmp_path / "own_cache" and any((tmp_path / "own_cache").iterdir())


def _fill_model(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert isinstance(env._ex.fill_rule, BboCrossFill)


def _queue_model(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert isinstance(env._ex.fill_rule.queue, LogQueue)


def _queue_power(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert env._ex.fill_rule.queue.n == 2.0


def _entry_latency_ms(env, make, synth, tmp_path):
    env.reset(seed=0)
    env._apply_action(BID0)
    (o,) = env._ex.orders
    assert o.submit_ts == env._now and o.active_ts == env._now + 25.0


def _cancel_latency_ms(env, make, synth, tmp_path):
    env.reset(seed=0)
    env._apply_action(BID0)
    env._apply_action(DISCRETE_ACTIONS.index("cancel_bid"))
    (o,) = env._ex.orders
    assert o.cancel_ts == env._now + 40.0


def _latency_distribution(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert isinstance(env._ex.latency, LognormalLatency) and env._ex.entry_latency() != 10.0


def _latency_sigma(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert env._ex.latency.sigma == 0.9


def _maker_fee_bps(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert env._ex.maker_rate == -1e-4


def _taker_fee_bps(env, make, synth, tmp_path):
    env.reset(seed=0)
    env.step(BUY)
    f = env._episode_fills[0]
    assert env._ex.taker_rate == 7e-4 and f.fee == pytest.approx(7e-4 * f.price * env.tick_size * f.size)


def _reward(env, make, synth, tmp_path):
    assert isinstance(env._reward.variant, InventoryPenaltyReward) and env._reward.uses_sigma


def _reward_unit(env, make, synth, tmp_path):
    steps = run(env)
    assert env._reward.scale == 1.0
    assert sum(r for r, *_ in steps) == pytest.approx(steps[-1][1]["episode"]["pnl"], rel=1e-9, abs=1e-12)


def _inventory_penalty_gamma(env, make, synth, tmp_path):
    assert env._reward.variant.gamma == 0.5


def _terminal_inventory_penalty(env, make, synth, tmp_path):
    """Hold one lot to the end: the last reward is lower by exactly kappa * 1^2 tick-lots."""
    base = make()                                    # kappa = 0
    rewards = []
    for e in (env, base):
        e.reset(seed=0)
        r = [e.step(BUY)[1]]
        while True:
            _, x, term, trunc, _ = e.step(0)
            r.append(x)
            if term or trunc:
                break
        rewards.append(r)
    with_k, without = rewards
    assert env._reward.terminal.kappa == 2.0 and with_k[:-1] == without[:-1]
    assert with_k[-1] == pytest.approx(without[-1] - 2.0 * 1.0 ** 2)


def _feature(name):
    def check(env, make, synth, tmp_path):
        env.reset(seed=0)
        assert getattr(env._feats.config, name) == CHECKS[name][0]
    return check


def _vpin_bucket_volume(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert env._feats.config.vpin_bucket_volume == 3.0 and env._feats._vpin_v == 3.0
    default = make()
    prof = default._replay.profile
    assert default._feature_config.vpin_bucket_volume == max(default.lot_size, 20 * prof.median_trade_size)


def _slope_levels(env, make, synth, tmp_path):
    env.reset(seed=0)
    assert env._feats.config.slope_levels == 12 and env._depth_n == 12


# leaf -> (non-default value, other leaves it needs, check)
CHECKS = {
    "data_path": (None, {}, _data_path),            # the check builds its own env from a copy
    "symbol": ("ETHUSDT", {}, _symbol),
    "tick_size": (0.005, {}, _tick_size),
    "action_mode": ("continuous", {}, _action_mode),
    "time_range": ((0.5, 1.0), {}, _time_range),
    "episode_length_s": (3.0, {}, _episode_length_s),
    "episode_length_messages": (5, {}, _episode_length_messages),
    "decision_interval_ms": (250.0, {}, _decision_interval_ms),
    "warmup_s": (4.0, {}, _warmup_s),
    "order_size": (0.3, {}, _order_size),
    "lot_size": (0.1, {}, _lot_size),
    "max_inventory": (2.0, {"entry_latency_ms": 0.0}, _max_inventory),
    "max_loss": (1e-9, {}, _max_loss),
    "obs_window": (3, {}, _obs_window),
    "obs_levels": (4, {}, _obs_levels),
    "continuous_max_offset": (3.0, {"action_mode": "continuous"}, _continuous_max_offset),
    "continuous_size": (True, {"action_mode": "continuous"}, _continuous_size),
    "markout_horizons_ms": ((100.0, 1500.0), {"adverse_selection_horizon_ms": 100.0,
                                              "realised_spread_horizon_ms": 1500.0,
                                              "episode_length_s": 20.0}, _markout_horizons_ms),
    "adverse_selection_horizon_ms": (5000.0, {"episode_length_s": 20.0}, _adverse_selection_horizon_ms),
    "realised_spread_horizon_ms": (1000.0, {}, _realised_spread_horizon_ms),
    "cache_dir": ("own_cache", {}, _cache_dir),     # made relative to tmp_path below
    "fill_model": ("bbo_cross", {}, _fill_model),
    "queue_model": ("log", {}, _queue_model),
    "queue_power": (2.0, {}, _queue_power),
    "entry_latency_ms": (25.0, {}, _entry_latency_ms),
    "cancel_latency_ms": (40.0, {"entry_latency_ms": 0.0}, _cancel_latency_ms),
    "latency_distribution": ("lognormal", {}, _latency_distribution),
    "latency_sigma": (0.9, {"latency_distribution": "lognormal"}, _latency_sigma),
    "maker_fee_bps": (-1.0, {}, _maker_fee_bps),
    "taker_fee_bps": (7.0, {}, _taker_fee_bps),
    "reward": ("pnl_inventory_penalty", {}, _reward),
    "reward_unit": ("quote", {}, _reward_unit),
    "inventory_penalty_gamma": (0.5, {"reward": "pnl_inventory_penalty"}, _inventory_penalty_gamma),
    "terminal_inventory_penalty": (2.0, {}, _terminal_inventory_penalty),
    "ofi_window_ms": (2000.0, {}, _feature("ofi_window_ms")),
    "trade_window_ms": (7000.0, {}, _feature("trade_window_ms")),
    "vol_short_ms": (500.0, {}, _feature("vol_short_ms")),
    "vol_long_ms": (20000.0, {}, _feature("vol_long_ms")),
    "vpin_bucket_volume": (3.0, {}, _vpin_bucket_volume),
    "vpin_buckets": (7, {}, _feature("vpin_buckets")),
    "kyle_interval_ms": (500.0, {}, _feature("kyle_interval_ms")),
    "kyle_window": (9, {}, _feature("kyle_window")),
    "spread_window_ms": (9000.0, {}, _feature("spread_window_ms")),
    "slope_levels": (12, {}, _slope_levels),
}


def test_every_leaf_has_a_consumer_check():
    leaves = set(flat_field_paths(EnvConfig))
    assert set(CHECKS) == leaves, (f"leaves without a consumer check: {sorted(leaves - set(CHECKS))}; "
                                   f"checks of no leaf: {sorted(set(CHECKS) - leaves)}")
    defaults = flat_dict(EnvConfig())
    for name, (value, _, _) in CHECKS.items():
        if value is not None:
            assert value != defaults[name], f"{name}: the check must use a non-default value"


@pytest.mark.parametrize("leaf", sorted(CHECKS))
def test_leaf_reaches_its_consumer(leaf, make, synth, tmp_path):
    value, extra, check = CHECKS[leaf]
    kw = dict(extra)
    if leaf == "cache_dir":
        value = str(tmp_path / value)
    if value is not None:
        kw[leaf] = value
    env = make(**kw)
    if value is not None:
        assert flat_dict(env.config)[leaf] == (tuple(value) if isinstance(value, list) else value)
    check(env, make, synth, tmp_path)


def test_flat_overrides_equal_nested_config(synth, make):
    """MarketMakingEnv(**leaves) and a hand-nested EnvConfig give the same config."""
    env = make(maker_fee_bps=-0.5, reward_unit="quote", kyle_window=5)
    nested = EnvConfig(data_path=synth, episode_length_s=5.0, warmup_s=1.0, cache_dir=env.config.cache_dir,
                       exchange=ExchangeConfig(maker_fee_bps=-0.5), reward_config=RewardConfig(reward_unit="quote"),
                       features=FeatureConfig(kyle_window=5))
    assert env.config == nested and env.config.exchange.maker_fee_bps == -0.5
    with pytest.raises(TypeError, match="no field 'fill_modle'"):
        make(fill_modle="queue")
