"""PPO in the Avellaneda–Stoikov model market, scored against the model's closed-form optima.

One job: the glue between ``as_model_env`` (the model market ``AvellanedaStoikov-v0`` and its
vectorised simulator ``simulate``) and ``ppo_agent.PPOAgent``: the closed-form strategies to
beat, the training wrapper, training, and evaluation of any set of policies on the same
simulated paths. ``train.py --env as_model`` and ``evaluate.py`` only need to call
``train_as_model`` and ``evaluate_as_model``.

Public names:

- ``ASTrainingConfig``: how the model market is presented to PPO (number of envs, reward
  control variate).
- ``as_ppo_config(**overrides)``: the measured PPO settings for this env (MLP network;
  ``benchmarks/learn_as.py`` has the table of what was tried).
- ``closed_form_cj_policy(config)`` (from ``as_model_env``, re-exported): the closed-form
  optimal strategy of the Cartea–Jaimungal criterion set in ``config``.
- ``risk_neutral_policy(config)``: both quotes at depth ``1/k``, the optimum of the PnL
  objective (``phi = alpha = 0``).
- ``reference_policies(config)``: risk-neutral, Cartea–Jaimungal, Avellaneda–Stoikov and
  GLFT, by name.
- ``MarkToMarketControlVariate``: training wrapper removing ``q_{t+1} * (S_{t+1} - S_t)``
  (zero mean) from the reward.
- ``AgentPolicy``: a ``PPOAgent`` behind the ``baselines`` policy protocol, for ``simulate``.
- ``make_as_envs``, ``train_as_model``, ``evaluate_as_model``.

Training sees the env through ``gym.make_vec`` (synchronous) and, by default,
``MarkToMarketControlVariate``; evaluation never does: it runs every policy, the agent
included, through ``as_model_env.simulate`` on the same paths and scores the env's own
criterion. The agent's actions are the depths themselves (no action rescaling), so a saved
agent is all an evaluation needs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from as_model_env import ASModelConfig, CarteaJaimungalPolicy, closed_form_cj_policy, simulate
from baselines import AvellanedaStoikovPolicy, FixedSpreadPolicy, GLFTPolicy
from ppo_agent import PPOAgent, PPOConfig
from utils import replace_flat

logger = logging.getLogger(__name__)

ENV_ID = "AvellanedaStoikov-v0"

AS_PPO_DEFAULTS: dict[str, Any] = {
    "network": "mlp", "n_steps": 200, "batch_size": 800, "n_epochs": 20, "gamma": 1.0,
    "gae_lambda": 0.95, "learning_rate": 1e-3, "normalize_reward": True, "log_std_init": -1.0,
}
"""``PPOConfig`` leaf fields set for the AS model (measured: ``benchmarks/learn_as.py``).

``n_steps`` = one whole 200-step episode per env per rollout; ``gamma`` 1 because the
criterion is the undiscounted sum over a finite horizon (time left is observed); the Gaussian
starts with std ``e^-1 = 0.37`` price units (the optimal depth is ``1/k = 0.67``; std 1 kept the
learned mean wide, ``e^-1.6`` explored too little); 4 minibatches x 20 epochs per rollout and
a learning rate of 1e-3 (annealed) reach the optimum within 200k steps on every seed."""


@dataclass(frozen=True)
class ASTrainingConfig:
    """How the model market is presented to PPO during training (evaluation uses ``simulate``)."""

    n_envs: int = 16
    """Parallel environments of the (synchronous) vector env."""
    control_variate: bool = True
    """Train on the reward minus ``q_{t+1} (S_{t+1} - S_t)`` (``MarkToMarketControlVariate``)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.n_envs, int) and self.n_envs >= 1):
            raise ValueError(f"ASTrainingConfig.n_envs must be an integer >= 1, got {self.n_envs!r}")


def as_ppo_config(**overrides: Any) -> PPOConfig:
    """``PPOConfig`` with ``AS_PPO_DEFAULTS`` and then ``overrides`` (leaf field names).

    >>> as_ppo_config(learning_rate=3e-4).learning_rate
    0.0003
    """
    return replace_flat(PPOConfig(), **{**AS_PPO_DEFAULTS, **overrides})


# ------------------------------------------------------------------------------ references
def risk_neutral_policy(config: ASModelConfig) -> FixedSpreadPolicy:
    """Both quotes at depth ``1/k``: maximises ``delta * A exp(-k delta)``, the PnL optimum."""
    return FixedSpreadPolicy(1.0 / config.k)


def reference_policies(config: ASModelConfig, gamma: float = 0.1) -> dict[str, Any]:
    """The closed-form strategies every agent is compared with, by name.

    ``risk_neutral`` (PnL optimum), ``cartea_jaimungal`` (optimum of ``config``'s criterion),
    ``avellaneda_stoikov`` and ``glft`` (exponential-utility strategies, risk aversion
    ``gamma``; AS 2008's experiment uses 0.1).
    """
    return {
        "risk_neutral": risk_neutral_policy(config),
        "cartea_jaimungal": closed_form_cj_policy(config),
        "avellaneda_stoikov": AvellanedaStoikovPolicy(gamma),
        "glft": GLFTPolicy(gamma),
    }


# ------------------------------------------------------------------------------ training
class MarkToMarketControlVariate(gym.Wrapper):
    """Training reward without the zero-mean mark-to-market noise ``q_{t+1} (S_{t+1} - S_t)``.

    The env's reward is ``spread captured - penalties + q_{t+1} (S_{t+1} - S_t)``: fills
    happen at the mid ``S_t``, then the mid moves by ``sigma sqrt(dt) Z_t`` with ``Z_t``
    independent of everything before it (inventory included). The last term therefore has
    mean 0 for every policy and its removal leaves every policy's expected return, hence the
    optimum, unchanged, while it is the largest part of the reward's variance (std
    ``|q| sigma sqrt(dt)`` per step vs about 0.17 of spread per side). The observation does
    not contain ``S``. ``info["mtm_reward"]`` keeps the env's own reward.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._mid = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        """Reset and remember the mid."""
        obs, info = self.env.reset(**kwargs)
        self._mid = float(info["market"]["mid"])
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Step; subtract the inventory's mark-to-market move from the reward."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        mid = float(info["market"]["mid"])
        info["mtm_reward"] = reward
        reward = reward - info["inventory"] * (mid - self._mid)
        self._mid = mid
        return obs, float(reward), terminated, truncated, info


def make_as_envs(config: ASModelConfig, training: ASTrainingConfig | None = None) -> gym.vector.VectorEnv:
    """``gym.make_vec("AvellanedaStoikov-v0", ...)``, synchronous, with the training wrapper."""
    t = training or ASTrainingConfig()
    wrappers: list[Callable[[gym.Env], gym.Wrapper]] = [MarkToMarketControlVariate] if t.control_variate else []
    return gym.make_vec(ENV_ID, num_envs=t.n_envs, vectorization_mode="sync", wrappers=wrappers, config=config)


def train_as_model(config: ASModelConfig, ppo_config: PPOConfig | None = None, total_timesteps: int = 200_000,
                   seed: int = 0, training: ASTrainingConfig | None = None,
                   callback: Callable[[PPOAgent, dict[str, float]], bool | None] | None = None) -> PPOAgent:
    """Train a ``PPOAgent`` on ``AvellanedaStoikov-v0`` for the criterion set in ``config``.

    Args:
        config: model and criterion (``phi = alpha = 0``: the PnL objective).
        ppo_config: hyperparameters (default ``as_ppo_config()``).
        total_timesteps: environment steps.
        seed: seeds the agent (weights, sampling, minibatches) and the training envs, whose
            episodes use the seeds ``seed .. seed + n_envs - 1`` (``PPOAgent.learn``).
        training: vector env and reward settings.
        callback: ``PPOAgent.learn``'s callback.

    Returns:
        The trained agent; its actions are the depths ``[delta_bid, delta_ask]``.
    """
    pc = ppo_config or as_ppo_config()
    envs = make_as_envs(config, training)
    try:
        agent = PPOAgent(envs.single_observation_space, envs.single_action_space, pc, seed=seed)
        agent.learn(envs, total_timesteps, callback=callback)
    finally:
        envs.close()
    logger.info("trained on %s for %d steps (seed %d): %s", ENV_ID, agent.num_timesteps, seed, agent.timings)
    return agent


# ------------------------------------------------------------------------------ evaluation
class AgentPolicy:
    """A ``PPOAgent`` (its deterministic action, the Gaussian mean) as a ``simulate`` policy."""

    action_mode = "continuous"

    def __init__(self, agent: PPOAgent, deterministic: bool = True) -> None:
        self.agent = agent
        self.deterministic = deterministic

    def reset(self) -> None:
        """No per-episode state (the MLP policy is feed-forward)."""

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """Depths for a batch of ``[inventory, time_left]`` observations."""
        action, _ = self.agent.predict(np.asarray(obs, dtype=np.float32), deterministic=self.deterministic)
        return np.asarray(action, dtype=np.float64)


def _as_policy(p: Any) -> Any:
    if isinstance(p, PPOAgent):
        return AgentPolicy(p)
    if isinstance(p, str | Path):
        return AgentPolicy(PPOAgent.load(p))
    if not (hasattr(p, "act") and hasattr(p, "reset")):
        raise TypeError(f"not a policy (needs reset() and act(obs, info)), a PPOAgent or a saved agent's "
                        f"folder: {p!r}")
    return p


def evaluate_as_model(policies: Mapping[str, Any], config: ASModelConfig, n_paths: int = 1000, seed: int = 0,
                      reference: str | None = None) -> pd.DataFrame:
    """Score policies on the same ``n_paths`` simulated paths (``as_model_env.simulate``).

    Every policy sees the same random numbers (same seed), so differences between rows are
    differences between policies, not between samples of paths.

    Args:
        policies: name -> policy (``reset``/``act``), ``PPOAgent``, or a saved agent's folder.
        config: model and criterion.
        n_paths: paths per policy.
        seed: seed of the paths.
        reference: a name in ``policies``: adds ``reward_ratio`` (mean criterion over the
            reference's) and ``inv_std_ratio`` (terminal-inventory std over the reference's).

    Returns:
        One row per policy, indexed by name: ``reward_mean`` (mean criterion; the PnL when
        phi = alpha = 0), ``reward_se``, ``pnl_mean``, ``pnl_std``, ``final_inv_std``,
        ``abs_inv_mean`` (time average of ``|q|``), ``spread_mean``, ``fills_mean``.
    """
    if reference is not None and reference not in policies:
        raise ValueError(f"reference {reference!r} is not one of the policies {sorted(policies)}")
    rows = {}
    for name, p in policies.items():
        r = simulate(_as_policy(p), config, n_paths=n_paths, seed=seed)
        rows[name] = {
            "reward_mean": float(r.reward.mean()),
            "reward_se": float(r.reward.std(ddof=1) / math.sqrt(n_paths)) if n_paths > 1 else math.nan,
            "pnl_mean": float(r.pnl.mean()), "pnl_std": float(r.pnl.std()),
            "final_inv_std": float(r.final_inventory.std()),
            "abs_inv_mean": float(np.abs(r.inventory_path).mean()), "spread_mean": float(r.mean_spread.mean()),
            "fills_mean": float(r.n_fills.mean()),
        }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "policy"
    if reference is not None:
        df["reward_ratio"] = df["reward_mean"] / df.loc[reference, "reward_mean"]
        df["inv_std_ratio"] = df["final_inv_std"] / df.loc[reference, "final_inv_std"]
    return df


__all__ = [
    "AS_PPO_DEFAULTS", "ENV_ID", "ASTrainingConfig", "AgentPolicy", "CarteaJaimungalPolicy",
    "MarkToMarketControlVariate", "as_ppo_config", "closed_form_cj_policy", "evaluate_as_model",
    "make_as_envs", "reference_policies", "risk_neutral_policy", "train_as_model",
]
