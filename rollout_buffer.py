"""On-policy rollout storage and generalised advantage estimation (the SB3 ``common/buffers.py`` split).

One job: hold one rollout of ``n_steps`` vectorised steps, compute its advantages and returns
(with truncation bootstrapping) and hand it out flattened or in minibatches. The PPO update
that consumes it lives in ``ppo_agent.py`` (which re-exports these names).

Public names:

- ``compute_gae``: generalised advantage estimation with truncation bootstrapping.
- ``RolloutBatch``: one minibatch as a ``NamedTuple`` (batch contracts by name).
- ``RolloutBuffer``: ``add`` / ``add_outcome`` / ``set_final_value`` /
  ``compute_returns_and_advantage`` / ``flat`` / ``minibatch_indices`` / ``get``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a ``(T, n_envs)`` rollout.

    ``next_values[t]`` is the value of the observation that followed step ``t``: for an
    ongoing episode the next stored value, for a *truncated* episode the value of its final
    observation, which is bootstrapped (the episode did not end, it was cut; SB3
    on_policy_algorithm.py, GH #633). A *terminated* step does not bootstrap
    (``1 - terminated``). ``dones = terminated | truncated`` cuts the GAE recursion so
    that no advantage leaks across an episode boundary.

    Args:
        rewards: ``(T, N)`` rewards.
        values: ``(T, N)`` value estimates of the observations of each step.
        next_values: ``(T, N)`` values of the next observations (see above).
        terminated: ``(T, N)`` true terminal flags.
        dones: ``(T, N)`` terminated or truncated.
        gamma: discount.
        gae_lambda: GAE lambda.

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values``.

    >>> r = np.array([[1.0], [1.0]]); v = np.array([[0.5], [0.5]])
    >>> adv, ret = compute_gae(r, v, np.array([[0.5], [2.0]]), np.zeros((2, 1)),
    ...                        np.array([[0.0], [1.0]]), gamma=0.5, gae_lambda=1.0)
    >>> adv[:, 0].tolist()  # step 1 truncated: 1 + 0.5*2 - 0.5 = 1.5; step 0: 0.75 + 0.5*1.5
    [1.5, 1.5]
    """
    n_steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float32)
    last_gae = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in reversed(range(n_steps)):
        # TD error, bootstrapping unless truly terminal (truncation still bootstraps).
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        # The recursion stops at any episode end (terminated or truncated).
        last_gae = delta + gamma * gae_lambda * (1.0 - dones[t]) * last_gae
        advantages[t] = last_gae
    return advantages, (advantages + values).astype(np.float32)


class RolloutBatch(NamedTuple):
    """One minibatch (flattened over steps and envs) fed to the update step."""

    obs: Any
    actions: np.ndarray
    old_log_prob: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    old_values: np.ndarray
    mask: np.ndarray


class RolloutBuffer:
    """Fixed-size on-policy storage of ``n_steps`` vectorised steps (SB3 ``RolloutBuffer``).

    ``mask`` marks the transitions that exist: with gymnasium's default ``NEXT_STEP``
    autoreset, the step after an episode end only resets that env (its action is ignored,
    reward 0), so it is stored with mask 0 and excluded from every loss.
    """

    def __init__(self, n_steps: int, n_envs: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.n_steps, self.n_envs = n_steps, n_envs
        if isinstance(observation_space, gym.spaces.Dict):
            self.obs: Any = {
                k: np.zeros((n_steps, n_envs, *s.shape), np.float32) for k, s in observation_space.spaces.items()
            }
        else:
            self.obs = np.zeros((n_steps, n_envs, *observation_space.shape), np.float32)
        if isinstance(action_space, gym.spaces.Discrete):
            self.actions = np.zeros((n_steps, n_envs), np.int32)
        else:
            self.actions = np.zeros((n_steps, n_envs, action_space.shape[0]), np.float32)
        z = lambda: np.zeros((n_steps, n_envs), np.float32)  # noqa: E731
        self.log_probs, self.values, self.rewards, self.next_values = z(), z(), z(), z()
        self.terminated, self.dones, self.mask = z(), z(), z()
        self.advantages, self.returns = z(), z()
        self.pos = 0

    def add(self, obs: Any, actions: np.ndarray, log_probs: np.ndarray, values: np.ndarray, mask: np.ndarray) -> None:
        """Store the policy side of step ``pos`` (rewards/flags follow in ``add_outcome``)."""
        t = self.pos
        if isinstance(self.obs, dict):
            for k, arr in self.obs.items():
                arr[t] = obs[k]
        else:
            self.obs[t] = obs
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.values[t] = values
        self.mask[t] = mask

    def add_outcome(self, rewards: np.ndarray, terminated: np.ndarray, dones: np.ndarray) -> None:
        """Store the environment side of step ``pos`` and advance."""
        t = self.pos
        self.rewards[t], self.terminated[t], self.dones[t] = rewards, terminated, dones
        self.pos += 1

    def compute_returns_and_advantage(self, last_values: np.ndarray, gamma: float, gae_lambda: float) -> None:
        """Fill ``advantages``/``returns``; ``next_values`` must hold the bootstraps already.

        ``next_values[t]`` defaults to ``values[t + 1]`` (``last_values`` after the last
        step); ``PPOAgent`` overrides it with ``V(final_obs)`` at truncations in
        ``SAME_STEP`` autoreset mode.
        """
        assert self.pos == self.n_steps, "rollout not full"
        self.next_values[:-1] = np.where(self._override[:-1], self.next_values[:-1], self.values[1:])
        self.next_values[-1] = np.where(self._override[-1], self.next_values[-1], last_values)
        adv, ret = compute_gae(
            self.rewards, self.values, self.next_values, self.terminated, self.dones, gamma, gae_lambda
        )
        # Reset-only (masked) steps carry no transition: zero advantage, return = value.
        self.advantages = adv * self.mask
        self.returns = np.where(self.mask > 0, ret, self.values).astype(np.float32)

    def reset(self) -> None:
        """Start a new rollout."""
        self.pos = 0
        self._override = np.zeros((self.n_steps, self.n_envs), bool)

    def set_final_value(self, values: np.ndarray, which: np.ndarray) -> None:
        """Bootstrap value of the final observation for envs ``which`` at step ``pos - 1``."""
        t = self.pos - 1
        self.next_values[t] = np.where(which, values, self.next_values[t])
        self._override[t] |= which

    def flat(self) -> RolloutBatch:
        """The whole rollout flattened over (steps, envs), as one ``RolloutBatch``."""
        n = self.n_steps * self.n_envs
        flat = lambda a: a.reshape(n, *a.shape[2:])  # noqa: E731
        obs = {k: flat(v) for k, v in self.obs.items()} if isinstance(self.obs, dict) else flat(self.obs)
        return RolloutBatch(obs, flat(self.actions), flat(self.log_probs), flat(self.advantages),
                            flat(self.returns), flat(self.values), flat(self.mask))

    def minibatch_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """A shuffled ``(n_minibatches, batch_size)`` index array for one epoch.

        Same permutation as ``get``; a remainder smaller than ``batch_size`` is left out.
        """
        n = self.n_steps * self.n_envs
        perm = rng.permutation(n)
        n_mb = n // batch_size
        return perm[: n_mb * batch_size].reshape(n_mb, batch_size).astype(np.int32)

    def get(self, batch_size: int, rng: np.random.Generator) -> Iterator[RolloutBatch]:
        """Yield shuffled minibatches of exactly ``batch_size`` transitions.

        A remainder smaller than ``batch_size`` is left out of that epoch (a different one
        each epoch); fixed shapes keep the compiled update step from retracing.
        """
        n = self.n_steps * self.n_envs
        flat = lambda a: a.reshape(n, *a.shape[2:])  # noqa: E731
        obs = {k: flat(v) for k, v in self.obs.items()} if isinstance(self.obs, dict) else flat(self.obs)
        arrays = [flat(self.actions), flat(self.log_probs), flat(self.advantages), flat(self.returns),
                  flat(self.values), flat(self.mask)]
        perm = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start:start + batch_size]
            mb_obs = {k: v[idx] for k, v in obs.items()} if isinstance(obs, dict) else obs[idx]
            yield RolloutBatch(mb_obs, *(a[idx] for a in arrays))
