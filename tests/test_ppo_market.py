"""PPO end to end on MarketMaking-v0: synthetic data and a real recording, Conv1D+LSTM and MLP."""

from __future__ import annotations

import os
import warnings

import gymnasium as gym
import numpy as np
import pytest

import synthetic_market
from event_driven_env import MarketMakingEnv
from ppo_agent import PPOAgent, PPOConfig
from utils import from_flat

REAL = "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
CFG = dict(n_steps=32, batch_size=64, n_epochs=2, hidden_size=32, conv_filters=8, lstm_units=16,
           jit_compile=False)


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    return synthetic_market.generate_file(tmp_path_factory.mktemp("synth") / "synth.jsonl", hours=0.03, seed=3)


def _train(data_path, symbol, network, action_mode, cache_dir, tmp_path):
    def make():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short recordings: range shorter than an episode
            return MarketMakingEnv(data_path=str(data_path), symbol=symbol, action_mode=action_mode,
                                   episode_length_s=5.0, warmup_s=5.0, cache_dir=str(cache_dir))

    envs = gym.vector.SyncVectorEnv([make, make])
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space,
                     from_flat(PPOConfig, network=network, **CFG), seed=0)
    stats = []
    agent.learn(envs, 2 * 32 * 3, callback=lambda a, s: stats.append(s))
    assert agent.num_updates == 3
    assert all(np.isfinite(s["train/loss"]) and np.isfinite(s["train/value_loss"]) for s in stats)
    assert any(k.startswith("market/") for s in stats for k in s), "no finished episode reported market metrics"
    obs, _ = envs.reset(seed=1)
    agent.save(tmp_path / "agent")
    loaded = PPOAgent.load(tmp_path / "agent")
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    assert envs.single_action_space.contains(np.asarray(agent.predict(obs)[0])[0])
    envs.close()


@pytest.mark.slow
@pytest.mark.parametrize("network,action_mode", [("conv_lstm", "discrete"), ("mlp", "continuous")])
def test_ppo_trains_on_synthetic_market(synthetic_file, network, action_mode, tmp_path):
    _train(synthetic_file, None, network, action_mode, tmp_path / "cache", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["conv_lstm", "mlp"])
def test_ppo_trains_on_real_recording(shared_data, network, tmp_path):
    _train(os.fspath(shared_data / REAL), "ETHUSDT", network, "discrete", tmp_path / "cache", tmp_path)
