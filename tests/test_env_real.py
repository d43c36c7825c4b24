"""A fixed quoting policy through a full episode on every real recording with trades."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from data_processor import load_messages
from event_driven_env import DISCRETE_ACTIONS, MarketMakingEnv

BOTH_AT_BEST = DISCRETE_ACTIONS.index("both_offset_+0")
BYBIT_LINEAR = "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
BYBIT_SPOT = "bybit/cryptofeed_v3_BYBIT_spot_ob200_publicTrade.jsonl"
BINANCE = "binance/hftbacktest-usdm/"
RECORDINGS = [(BYBIT_LINEAR, s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")]
RECORDINGS += [(BYBIT_SPOT, s) for s in ("BTCUSDT", "ETHUSDT")]
RECORDINGS += [((BINANCE + "btcusdt_20240808.gz",), None), ((BINANCE + "ethusdt_20240808.gz",), None),
               ((BINANCE + "btcusdt_20240718.gz", BINANCE + "btcusdt_20240719.gz"), None),
               ((BINANCE + "ethusdt_20240718.gz", BINANCE + "ethusdt_20240719.gz"), None)]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("replay_cache"))


def run_episode(shared_data, cache_dir, files, symbol, fill_model, episode_s):
    files = (files,) if isinstance(files, str) else files
    path = os.pathsep.join(str(shared_data / f) for f in files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # short recordings: the range is shorter than an episode
        env = MarketMakingEnv(data_path=path, symbol=symbol, fill_model=fill_model, episode_length_s=episode_s,
                              warmup_s=10.0, cache_dir=cache_dir)
    env.reset(seed=0)
    while True:
        _, _, term, trunc, info = env.step(BOTH_AT_BEST)
        if term or trunc:
            return env, info["episode"]


@pytest.mark.parametrize("files,symbol", RECORDINGS, ids=[f"{str(f).split('/')[-1][:24]}-{s}" for f, s in RECORDINGS])
def test_fixed_policy_episode_is_sane(shared_data, cache_dir, files, symbol):
    episode_s = 60.0 if symbol is None else 3600.0     # Binance: one minute; Bybit: the whole ~45 s capture
    results = {fm: run_episode(shared_data, cache_dir, files, symbol, fm, episode_s) for fm in ("queue", "bbo_cross")}
    for fm, (env, ep) in results.items():
        assert ep["length_steps"] > 300, fm
        assert np.isfinite([v for v in ep.values() if isinstance(v, float)]).all(), fm
        assert ep["fees"] >= 0 and 0 <= ep["fill_ratio"] <= 1 and 0 <= ep["adverse_selection_ratio"] <= 1
        assert ep["inventory_max_abs"] <= env.max_inventory_units + 2 * env.order_size
        assert ep["pnl"] == pytest.approx(ep["spread_capture"] + ep["inventory_pnl"] - ep["fees"])
        if ep["n_fills"]:
            # taker volume = liquidation + quotes that crossed after the entry latency
            assert ep["maker_volume"] > 0 and ep["taker_volume"] <= ep["maker_volume"] + env.order_size * 5
    if symbol != "BTCUSDT" or files != BYBIT_SPOT:       # spot BTC: 20 trades in 45 s, none reach our quote
        assert results["queue"][1]["n_fills"] > 0


def test_pinned_numbers_bybit_linear_ethusdt(shared_data, cache_dir):
    env, q = run_episode(shared_data, cache_dir, BYBIT_LINEAR, "ETHUSDT", "queue", 3600.0)
    _, b = run_episode(shared_data, cache_dir, BYBIT_LINEAR, "ETHUSDT", "bbo_cross", 3600.0)
    assert env.order_size == 0.1 and env.tick_size == 0.01
    assert (q["n_fills"], b["n_fills"]) == (7, 3)
    assert q["maker_volume"] == pytest.approx(0.4) and b["maker_volume"] == pytest.approx(0.2)
    assert q["pnl"] == pytest.approx(-0.8112, abs=1e-3)


def test_pinned_numbers_binance_btcusdt(shared_data, cache_dir):
    _, q = run_episode(shared_data, cache_dir, (BINANCE + "btcusdt_20240808.gz",), None, "queue", 60.0)
    _, b = run_episode(shared_data, cache_dir, (BINANCE + "btcusdt_20240808.gz",), None, "bbo_cross", 60.0)
    # the queue model fills more often and is less adversely selected than bbo_cross (fills only when the price moves through)
    assert q["n_fills"] > b["n_fills"] > 0
    assert q["adverse_selection_ratio"] < b["adverse_selection_ratio"]


def test_multi_file_recording_as_a_list(shared_data, cache_dir):
    """Binance 0718 + 0719 (one session split at midnight) given as a list, to the class and to gymnasium.make."""
    import gymnasium as gym

    files = [shared_data / (BINANCE + "btcusdt_20240718.gz"), shared_data / (BINANCE + "btcusdt_20240719.gz")]
    joined = os.pathsep.join(str(f) for f in files)
    kw = dict(episode_length_s=30.0, warmup_s=5.0, cache_dir=cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        envs = [MarketMakingEnv(data_path=files, **kw), MarketMakingEnv(data_path=joined, **kw),
                gym.make("MarketMaking-v0", data_path=tuple(files), **kw).unwrapped]
    assert all(e.config.data_path == joined for e in envs)
    spans = {(e._replay.start_ts, e._replay.end_ts) for e in envs}
    assert len(spans) == 1
    start, end = spans.pop()
    boundary = max(m.ts for m in load_messages(str(files[0])))     # last message of the 0718 file
    assert start < boundary < end - 200_000    # the session runs on into the 0719 file
    runs = []
    for env in envs:                          # an episode across the file boundary is the same from every form
        env.reset(options={"start_ts": boundary - 10_000})
        rewards = []
        while True:
            _, r, term, trunc, info = env.step(BOTH_AT_BEST)
            rewards.append(r)
            if term or trunc:
                break
        runs.append((rewards, info["episode"]["n_fills"], info["market"]["ts"]))
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][2] > boundary and runs[0][1] > 0
