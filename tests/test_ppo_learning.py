"""Slow learning test: PPO on CartPole-v1 rises well above a random policy (~22) within 25k steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from ppo_agent import PPOAgent, PPOConfig


@pytest.mark.slow
def test_cartpole_return_rises_well_above_random():
    # rl-baselines3-zoo CartPole-v1 hyperparameters (linear LR and clip schedules over 100k;
    # here the schedule runs over 25k), XLA-compiled steps as in production.
    cfg = PPOConfig(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                    learning_rate=1e-3, anneal_lr=True, clip_range=0.2, anneal_clip_range=True,
                    normalize_obs=False)
    envs = gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="sync")
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=0)
    history = []
    agent.learn(envs, 25_000, callback=lambda a, s: history.append(s["rollout/ep_return_mean"]))
    env = gym.make("CartPole-v1")
    returns = []
    for ep in range(5):
        obs, _ = env.reset(seed=100 + ep)
        done, total = False, 0.0
        while not done:
            action, _ = agent.predict(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    early = np.nanmean(history[:5])
    assert np.mean(returns) > 150, f"eval returns {returns}"
    assert history[-1] > 3 * early, f"training return {early:.1f} -> {history[-1]:.1f}"
