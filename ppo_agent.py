"""PPO (clipped surrogate) in TensorFlow/Keras 3 over ``gymnasium.vector`` environments.

One job: train and run a PPO policy. The network lives in ``ppo_network.py``; ``train.py``
wires config, env and logging.

Public names:

- ``PPOConfig``: frozen dataclass with every hyperparameter (a docstring under each field);
  the architecture is the nested ``PPOConfig.net`` (``ppo_network.NetworkConfig``), whose
  leaves are addressed by name like the others (``utils.from_flat(PPOConfig, network="mlp")``).
- ``PPOAgent``: ``learn(envs, total_timesteps, callback)``, ``predict(obs, ...)``,
  ``predict_values(obs)``, ``save(dir)`` / ``PPOAgent.load(dir)``, ``num_timesteps``,
  ``num_updates``.
- ``RolloutBuffer`` / ``RolloutBatch`` / ``compute_gae``: on-policy storage, GAE with
  truncation bootstrapping and minibatches (defined in ``rollout_buffer.py``, re-exported).
- ``ppo_losses_numpy``: NumPy reference of the PPO loss (used by the tests).
- ``action_diagnostics`` / ``step_info_diagnostics``: the ``diag/`` statistics of a rollout
  passed to the ``learn`` callback (what the policy did: action shares or quantiles, and,
  for the market env, resting quotes and fills per step), to see a collapse as it happens.

Implementation details (CleanRL's "37 details" / SB3), each commented where it happens:
vectorised rollouts; GAE; bootstrapping with ``V(final_obs)`` at truncation but not at
termination (SB3 GH #633); gymnasium 1.x autoreset modes; per-minibatch advantage
normalisation; clipped surrogate; optional value clipping; entropy bonus; global gradient
clipping; Adam eps 1e-5; linear LR (and clip range) annealing; target-KL early stop;
orthogonal init (``ppo_network``); observation/reward normalisation saved with the model
and never updated outside ``learn``. Every TensorFlow computation is a ``tf.function``
method that receives all its tensors as arguments (XLA-compiled by default); numbers drawn
at random come from one NumPy ``Generator`` owned by the agent, whose state is saved.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import time
import warnings
import zipfile
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Pin the Keras backend before Keras is imported (STYLE habit 12), and keep TensorFlow's
# C++ INFO/WARNING logs out of the CLI output (errors still show).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import tensorflow as tf  # noqa: E402

import manifest  # noqa: E402
import utils  # noqa: E402
from ppo_config import PPOConfig  # noqa: E402  (re-exported: defined without TensorFlow)
from ppo_network import build_actor_critic  # noqa: E402
from rollout_buffer import RolloutBatch, RolloutBuffer, compute_gae  # noqa: E402
from utils import RunningMeanStd, atomic_write_bytes, atomic_write_json  # noqa: E402

__all__ = [
    "FORMAT_VERSION", "TRAIN_METRICS", "PPOAgent", "PPOConfig", "RolloutBatch", "RolloutBuffer",
    "action_diagnostics", "compute_gae", "ppo_losses_numpy", "space_from_json", "space_to_json",
    "step_info_diagnostics",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TRAIN_METRICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "loss", "grad_norm")
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- NumPy reference


def ppo_losses_numpy(
    log_prob: np.ndarray, old_log_prob: np.ndarray, advantages: np.ndarray, values: np.ndarray,
    old_values: np.ndarray, returns: np.ndarray, entropy: np.ndarray, mask: np.ndarray,
    clip_range: float, clip_range_vf: float, ent_coef: float, vf_coef: float, normalize_advantage: bool,
) -> dict[str, float]:
    """NumPy reference of the PPO loss computed by ``PPOAgent`` (for tests).

    >>> out = ppo_losses_numpy(np.log([0.5]), np.log([0.25]), np.array([1.0]), np.zeros(1), np.zeros(1),
    ...     np.ones(1), np.zeros(1), np.ones(1), 0.2, 0.0, 0.0, 0.5, False)
    >>> out["policy_loss"], out["value_loss"], out["loss"]  # ratio 2 clipped to 1.2
    (-1.2, 1.0, -0.7)
    """
    m = mask.astype(np.float64)
    n = m.sum()
    adv = advantages.astype(np.float64)
    if normalize_advantage and n > 1:
        mean = (adv * m).sum() / n
        std = math.sqrt((((adv - mean) ** 2) * m).sum() / (n - 1))
        adv = (adv - mean) / (std + 1e-8)
    log_ratio = log_prob - old_log_prob
    ratio = np.exp(log_ratio)
    pg = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_range, 1 + clip_range))
    policy_loss = (pg * m).sum() / n
    v = values
    if clip_range_vf > 0:
        v = old_values + np.clip(values - old_values, -clip_range_vf, clip_range_vf)
    value_loss = (((returns - v) ** 2) * m).sum() / n
    ent = (entropy * m).sum() / n
    return {
        "policy_loss": float(policy_loss), "value_loss": float(value_loss), "entropy": float(ent),
        "approx_kl": float((((ratio - 1) - log_ratio) * m).sum() / n),
        "clip_fraction": float(((np.abs(ratio - 1) > clip_range) * m).sum() / n),
        "loss": float(policy_loss - ent_coef * ent + vf_coef * value_loss),
    }


# --------------------------------------------------------------------------- spaces <-> JSON


def _num(x: float) -> Any:
    return str(x) if not math.isfinite(x) else x


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """JSON description of a Box/Discrete/Dict space (inverse: ``space_from_json``)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        out: dict[str, Any] = {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype)}
        for name in ("low", "high"):
            arr = np.asarray(getattr(space, name), np.float64)
            out[name] = _num(float(arr.flat[0])) if np.all(arr == arr.flat[0]) else [_num(float(v)) for v in arr.ravel()]
        return out
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": [[k, space_to_json(s)] for k, s in space.spaces.items()]}
    raise ValueError(f"cannot serialise space {space}")


def space_from_json(d: dict[str, Any]) -> gym.Space:
    """Rebuild a space written by ``space_to_json``."""
    if d["type"] == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d["start"])
    if d["type"] == "Box":
        shape, dtype = tuple(d["shape"]), np.dtype(d["dtype"])

        def arr(v: Any) -> np.ndarray:
            if isinstance(v, list):
                return np.array([float(x) for x in v], dtype).reshape(shape)
            return np.full(shape, float(v), dtype)

        return gym.spaces.Box(arr(d["low"]), arr(d["high"]), shape, dtype=dtype)
    if d["type"] == "Dict":
        return gym.spaces.Dict({k: space_from_json(s) for k, s in d["spaces"]})
    raise ValueError(f"unknown space type {d['type']!r} in saved agent")


def _rng_state_to_json(state: dict[str, Any]) -> dict[str, Any]:
    # PCG64 state holds 128-bit integers, beyond JSON readers' int range: store as strings.
    return {k: (_rng_state_to_json(v) if isinstance(v, dict) else str(v) if isinstance(v, int) else v)
            for k, v in state.items()}


def _rng_state_from_json(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (_rng_state_from_json(v) if isinstance(v, dict) else int(v) if k != "bit_generator" else v)
            for k, v in state.items()}


# --------------------------------------------------------------------------- diagnostics


def action_diagnostics(actions: np.ndarray, mask: np.ndarray, action_space: gym.Space) -> dict[str, float]:
    """What the policy did in a rollout: the ``diag/`` keys of the actions (real transitions only).

    Discrete: ``diag/action_share_<i>`` = share of the transitions that took action index
    ``i`` (0-based), and ``diag/entropy_uniform`` = ``ln(n)``, the entropy of the uniform
    policy (the reference for ``train/entropy``). Box: for each dimension ``j`` of the
    action *as the env received it* (clipped to the bounds),
    ``diag/action<j>_mean`` / ``_q10`` / ``_q50`` / ``_q90``.

    Args:
        actions: the rollout's stored actions, ``(T, N)`` indices or ``(T, N, dim)`` samples.
        mask: ``(T, N)``; 0 marks reset-only steps (no transition), which are left out.
        action_space: the single-env action space.

    Returns:
        The statistics (empty when the rollout holds no transition).

    >>> d = action_diagnostics(np.array([[0, 2], [2, 2]]), np.array([[1, 1], [1, 0]]),
    ...                        gym.spaces.Discrete(3))
    >>> [round(d[f"diag/action_share_{i}"], 3) for i in range(3)], round(d["diag/entropy_uniform"], 4)
    ([0.333, 0.0, 0.667], 1.0986)
    >>> box = gym.spaces.Box(-1.0, 1.0, (2,))
    >>> d = action_diagnostics(np.array([[[0.5, 3.0]], [[-0.5, -3.0]]]), np.ones((2, 1)), box)
    >>> d["diag/action0_mean"], d["diag/action1_q90"]   # clipped to [-1, 1] first
    (0.0, 0.8)
    """
    valid = np.asarray(mask).reshape(-1) > 0
    if not valid.any():
        return {}
    if isinstance(action_space, gym.spaces.Discrete):
        n = int(action_space.n)
        a = np.asarray(actions).reshape(-1)[valid].astype(np.int64)
        shares = np.bincount(a, minlength=n)[:n] / a.size
        out = {f"diag/action_share_{i}": float(v) for i, v in enumerate(shares)}
        out["diag/entropy_uniform"] = math.log(n)
        return out
    a = np.asarray(actions, dtype=np.float64)
    a = a.reshape(-1, a.shape[-1])[valid]
    a = np.clip(a, action_space.low, action_space.high)
    out = {}
    for j in range(a.shape[1]):
        q10, q50, q90 = np.quantile(a[:, j], [0.1, 0.5, 0.9])
        out.update({f"diag/action{j}_mean": float(a[:, j].mean()), f"diag/action{j}_q10": float(q10),
                    f"diag/action{j}_q50": float(q50), f"diag/action{j}_q90": float(q90)})
    return out


def step_info_diagnostics(counts: dict[str, float]) -> dict[str, float]:
    """The per-step ``diag/`` keys of a rollout from the counts gathered by the rollout loop.

    ``counts``: ``steps`` (real transitions whose info was seen) and, where the env's
    per-step info carries them (the market env's ``info["quotes"]`` and ``info["fills"]``),
    ``quoted_bid`` / ``quoted_ask`` (transitions after which a bid / ask quote of ours
    rested) and ``fills`` (fills during those transitions).

    Returns:
        ``diag/quoted_bid_share``, ``diag/quoted_ask_share`` and ``diag/fills_per_step``
        for the counts present (empty without steps).

    >>> step_info_diagnostics({"steps": 4, "quoted_bid": 1, "quoted_ask": 4, "fills": 2})
    {'diag/quoted_bid_share': 0.25, 'diag/quoted_ask_share': 1.0, 'diag/fills_per_step': 0.5}
    >>> step_info_diagnostics({"steps": 0})
    {}
    """
    n = counts.get("steps", 0)
    if not n:
        return {}
    names = {"quoted_bid": "diag/quoted_bid_share", "quoted_ask": "diag/quoted_ask_share",
             "fills": "diag/fills_per_step"}
    return {key: float(counts[k]) / n for k, key in names.items() if k in counts}


def _count_step_info(infos: dict, valid: np.ndarray, counts: dict[str, float]) -> None:
    """Add one vector step's resting quotes and fills (real transitions only) to ``counts``."""
    quotes, fills = infos.get("quotes"), infos.get("fills")
    if not isinstance(quotes, dict) and fills is None:
        return
    counts["steps"] = counts.get("steps", 0) + int(valid.sum())
    if isinstance(quotes, dict):
        for side in ("bid", "ask"):
            # vector infos: a float array (None -> nan) or an object array (None stays None)
            v = quotes.get(side)
            if v is None:
                continue
            live = np.array([x is not None and x == x for x in v], bool) & valid
            if f"_{side}" in quotes:
                live &= np.asarray(quotes[f"_{side}"], bool)
            counts[f"quoted_{side}"] = counts.get(f"quoted_{side}", 0) + int(live.sum())
    if fills is not None:
        mask = np.asarray(infos.get("_fills", np.ones(len(fills), bool)), bool) & valid
        counts["fills"] = counts.get("fills", 0) + sum(len(f) for f, m in zip(fills, mask, strict=True)
                                                       if m and isinstance(f, list | tuple))


# --------------------------------------------------------------------------- the agent


@dataclass
class _RolloutState:
    """What the rollout loop carries from one vector step, and one rollout, to the next."""

    obs: Any
    prev_done: np.ndarray
    ep_ret: np.ndarray
    ep_len: np.ndarray
    disc_ret: np.ndarray
    policy: Any = None
    """The traced concrete policy function for this batch shape (traced on first use)."""
    step_counts: dict[str, float] = dataclasses.field(default_factory=dict)
    """Resting quotes and fills of this rollout's steps (``step_info_diagnostics``)."""


class PPOAgent:
    """PPO agent owning its network, optimizer, normalisers and random generator.

    Args:
        observation_space: single-env observation space (``Box`` or ``Dict``).
        action_space: single-env action space (``Discrete`` or 1-D ``Box``).
        config: hyperparameters.
        seed: seeds the weights, action sampling, minibatch shuffling and env resets.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 config: PPOConfig | None = None, seed: int = 0) -> None:
        self.config = config = config or PPOConfig()
        self.observation_space, self.action_space, self.seed = observation_space, action_space, int(seed)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.num_timesteps = 0
        self.num_updates = 0
        self.device = self._pick_device(config)
        mixed = config.mixed_precision and self.device.startswith("/GPU")
        if config.mixed_precision and not mixed:
            logger.warning("mixed_precision requested but running on CPU: using float32")
        with tf.device(self.device):
            # The dtype policy is a build-time choice (mixed precision only on a GPU), not a config field.
            self.model = build_actor_critic(observation_space, action_space, config.net, self.seed,
                                            dtype_policy="mixed_bfloat16" if mixed else "float32")
            # Adam with eps 1e-5 (CleanRL detail 3; SB3 PPO uses the same through its policy).
            self.optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, epsilon=config.adam_eps)
            self.optimizer.build(self.model.trainable_variables)
        # Observation normalisation (SB3 VecNormalize / Gymnasium NormalizeObservation), one
        # RunningMeanStd per Dict key. Updated only inside learn(); predict never updates.
        self.obs_rms: dict[str, RunningMeanStd] | None = None
        if config.normalize_obs:
            if isinstance(observation_space, gym.spaces.Dict):
                self.obs_rms = {k: RunningMeanStd(s.shape) for k, s in observation_space.spaces.items()}
            else:
                self.obs_rms = {"obs": RunningMeanStd(observation_space.shape)}
        self.ret_rms = RunningMeanStd(()) if config.normalize_reward else None
        self.action_low = self.action_high = None
        if self.continuous:
            self.action_low = action_space.low.astype(np.float32)
            self.action_high = action_space.high.astype(np.float32)
        jit = config.jit_compile
        self._policy_fn = tf.function(self._policy_step, jit_compile=jit, reduce_retracing=True)
        self._value_fn = tf.function(self._value_step, jit_compile=jit, reduce_retracing=True)
        self._train_fn = tf.function(self._train_step, jit_compile=jit)
        # The epoch loop itself is a plain graph while-loop calling the (XLA-compiled when
        # jit_compile) minibatch step: XLA-compiling the whole loop made the Conv1D+LSTM
        # update 4.5x slower on CPU (110 vs 24 ms per minibatch of 256, the README section "PPO agent").
        self._epoch_fn = tf.function(self._train_epoch)
        self._predict_fns: dict[tuple, Any] = {}  # concrete policy functions of predict, by input shapes
        self._ep_returns: deque[float] = deque(maxlen=100)
        self._ep_lengths: deque[int] = deque(maxlen=100)
        self.timings: dict[str, float] = {"env_s": 0.0, "policy_s": 0.0, "update_s": 0.0}

    @staticmethod
    def _pick_device(config: PPOConfig) -> str:
        gpus = tf.config.list_physical_devices("GPU")
        if config.device == "gpu" and not gpus:
            raise ValueError("PPOConfig.device='gpu' but TensorFlow sees no GPU")
        use_gpu = bool(gpus) and config.device != "cpu"
        device = "/GPU:0" if use_gpu else "/CPU:0"
        logger.info("PPO device: %s (TensorFlow sees %d GPU(s): %s)", device, len(gpus),
                    [g.name for g in gpus])
        return device

    # ------------------------------------------------------------------ compiled steps

    def _dist_stats(self, dist: tf.Tensor, actions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Log-probability of ``actions`` and entropy under the distribution ``dist``."""
        if self.continuous:
            log_std = self.model.log_std
            z = (actions - dist) / tf.exp(log_std)
            log_prob = tf.reduce_sum(-0.5 * tf.square(z) - log_std - 0.5 * _LOG_2PI, axis=-1)
            entropy = tf.reduce_sum(log_std + 0.5 * (1.0 + _LOG_2PI)) * tf.ones_like(log_prob)
            return log_prob, entropy
        logp_all = tf.nn.log_softmax(dist)
        log_prob = tf.gather(logp_all, actions, axis=1, batch_dims=1)
        entropy = -tf.reduce_sum(tf.exp(logp_all) * logp_all, axis=-1)
        return log_prob, entropy

    def _policy_step(self, obs: Any, noise: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Sample actions, their log-probabilities and values for a batch.

        ``noise`` is Gumbel (discrete) or standard normal (continuous), drawn by the agent's
        NumPy generator; zero noise gives the mode.
        """
        dist, value = self.model(obs)
        if self.continuous:
            actions = dist + tf.exp(self.model.log_std) * noise
        else:
            actions = tf.argmax(dist + noise, axis=-1, output_type=tf.int32)  # Gumbel-max sampling
        log_prob, _ = self._dist_stats(dist, actions)
        return actions, log_prob, value

    def _value_step(self, obs: Any) -> tf.Tensor:
        return self.model(obs)[1]

    def _train_step(self, obs: Any, actions: tf.Tensor, old_log_prob: tf.Tensor, advantages: tf.Tensor,
                    returns: tf.Tensor, old_values: tf.Tensor, mask: tf.Tensor, clip_range: tf.Tensor,
                    learning_rate: tf.Tensor) -> dict[str, tf.Tensor]:
        """One gradient step on one minibatch; every input is an argument (no closures)."""
        cfg = self.config
        n = tf.maximum(tf.reduce_sum(mask), 1.0)
        mmean = lambda x: tf.reduce_sum(x * mask) / n  # noqa: E731  masked mean over real transitions
        if cfg.normalize_advantage:
            # Per-minibatch advantage normalisation (CleanRL detail 7, SB3 ppo.py); unbiased
            # std like torch.std. Skipped for a single sample (SB3 GH #325).
            mean = mmean(advantages)
            std = tf.sqrt(tf.reduce_sum(tf.square(advantages - mean) * mask) / tf.maximum(n - 1.0, 1.0))
            advantages = tf.where(n > 1.0, (advantages - mean) / (std + 1e-8), advantages)
        with tf.GradientTape() as tape:
            dist, values = self.model(obs)
            log_prob, entropy = self._dist_stats(dist, actions)
            log_ratio = log_prob - old_log_prob
            ratio = tf.exp(log_ratio)
            # Clipped surrogate objective (PPO paper eq. 7; CleanRL detail 8).
            pg_loss = mmean(tf.maximum(-advantages * ratio,
                                       -advantages * tf.clip_by_value(ratio, 1.0 - clip_range, 1.0 + clip_range)))
            if cfg.clip_range_vf > 0:
                # Value clipping around the old prediction (SB3 ppo.py `clip_range_vf`; CleanRL detail 9).
                values = old_values + tf.clip_by_value(values - old_values, -cfg.clip_range_vf, cfg.clip_range_vf)
            # SB3 convention: plain MSE (no 0.5 factor), weighted by vf_coef.
            v_loss = mmean(tf.square(returns - values))
            ent = mmean(entropy)
            # Entropy bonus (CleanRL detail 10).
            loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        # Global gradient clipping (CleanRL detail 11).
        grads, grad_norm = tf.clip_by_global_norm(grads, cfg.max_grad_norm)
        self.optimizer.learning_rate.assign(learning_rate)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        # approx KL, the low-variance estimator (ratio - 1) - log ratio (CleanRL detail 12, SB3 GH #417).
        approx_kl = mmean((ratio - 1.0) - log_ratio)
        clip_frac = mmean(tf.cast(tf.abs(ratio - 1.0) > clip_range, tf.float32))
        return {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": ent, "approx_kl": approx_kl,
                "clip_fraction": clip_frac, "loss": loss, "grad_norm": grad_norm}

    def _train_epoch(self, obs: Any, actions: tf.Tensor, old_log_prob: tf.Tensor, advantages: tf.Tensor,
                     returns: tf.Tensor, old_values: tf.Tensor, mask: tf.Tensor, indices: tf.Tensor,
                     clip_range: tf.Tensor, learning_rate: tf.Tensor, kl_stop: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """PPO epochs: ``_train_step`` on every minibatch ``indices[i]``, in one compiled call.

        Looping inside the graph removes the Python/dispatch overhead per minibatch (the
        update of Pendulum's 640 minibatches per rollout was 0.8 ms per minibatch from Python).
        ``indices`` holds the rows of all epochs, one epoch after the other.
        Minibatches holding only masked (reset-only) steps are skipped. Stops after the first
        minibatch whose approx KL exceeds ``kl_stop`` (``inf`` disables).

        Returns:
            ``(sums of the _train_step metrics in METRIC order, minibatches done, stopped)``.
        """
        sums = tf.zeros([len(TRAIN_METRICS)], tf.float32)
        done = tf.constant(0, tf.int32)
        stopped = tf.constant(False)
        for i in tf.range(tf.shape(indices)[0]):
            if stopped:
                break
            idx = indices[i]
            mb_mask = tf.gather(mask, idx)
            if tf.reduce_sum(mb_mask) > 0:
                mb_obs = tf.nest.map_structure(lambda x, idx=idx: tf.gather(x, idx), obs)
                out = self._train_fn(mb_obs, tf.gather(actions, idx), tf.gather(old_log_prob, idx),
                                       tf.gather(advantages, idx), tf.gather(returns, idx),
                                       tf.gather(old_values, idx), mb_mask, clip_range, learning_rate)
                sums += tf.stack([tf.cast(out[k], tf.float32) for k in TRAIN_METRICS])
                done += 1
                stopped = out["approx_kl"] > kl_stop
        return sums, done, stopped

    # ------------------------------------------------------------------ observations

    def _split(self, obs: Any) -> dict[str, np.ndarray]:
        return obs if isinstance(self.observation_space, gym.spaces.Dict) else {"obs": obs}

    def normalize_obs(self, obs: Any) -> Any:
        """Observation as the network sees it: float32, normalised with the frozen statistics."""
        parts = self._split(obs)
        if self.obs_rms is None:
            out = {k: np.asarray(v, np.float32) for k, v in parts.items()}
        else:
            out = {k: self.obs_rms[k].normalize(v, clip=self.config.clip_obs) for k, v in parts.items()}
        return out if isinstance(self.observation_space, gym.spaces.Dict) else out["obs"]

    def _update_obs_rms(self, obs: Any, valid: np.ndarray) -> None:
        if self.obs_rms is None:
            return
        for k, v in self._split(obs).items():
            self.obs_rms[k].update(np.asarray(v)[valid])

    def _is_batched(self, obs: Any) -> bool:
        if isinstance(self.observation_space, gym.spaces.Dict):
            key = next(iter(self.observation_space.spaces))
            return np.ndim(obs[key]) == len(self.observation_space[key].shape) + 1
        return np.ndim(obs) == len(self.observation_space.shape) + 1

    def _noise(self, n: int, deterministic: bool) -> np.ndarray:
        dim = self.action_space.shape[0] if self.continuous else int(self.action_space.n)
        if deterministic:
            return np.zeros((n, dim), np.float32)
        if self.continuous:
            return self.rng.standard_normal((n, dim), dtype=np.float32)
        return self.rng.gumbel(size=(n, dim)).astype(np.float32)

    def _env_action(self, actions: np.ndarray) -> np.ndarray:
        if self.continuous:
            # Clip only what the env receives; the buffer keeps the unclipped sample so its
            # log-probability stays exact (SB3 on_policy_algorithm.py, CleanRL detail 4 of continuous).
            return np.clip(actions, self.action_low, self.action_high)
        return actions + int(self.action_space.start)

    # ------------------------------------------------------------------ public inference

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """Actions for one observation or a batch (SB3 signature).

        Observation statistics are used frozen: ``predict`` never updates them.

        Args:
            obs: a single observation or a batch (leading axis), raw (unnormalised).
            state: recurrent state; unused (the policy is feed-forward), returned as is.
            episode_start: unused, for SB3 compatibility.
            deterministic: the mode (argmax / Gaussian mean) instead of a sample.

        Returns:
            ``(actions, state)``; actions are env-ready (clipped to the Box bounds).
        """
        batched = self._is_batched(obs)
        if not batched:
            obs = {k: np.asarray(v)[None] for k, v in obs.items()} if isinstance(obs, dict) else np.asarray(obs)[None]
        x = self.normalize_obs(obs)
        n = next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]
        noise = self._noise(n, deterministic)
        with tf.device(self.device):
            # The traced concrete function of this batch shape, called directly (as in the
            # rollout): tf.function's per-call signature dispatch was two thirds of the
            # 2 ms a batch-1 call took in evaluation (docs/workflow.md, the default run).
            key = tuple(np.shape(v) for v in (x.values() if isinstance(x, dict) else (x,)))
            fn = self._predict_fns.get(key)
            if fn is None:
                fn = self._predict_fns[key] = self._policy_fn.get_concrete_function(x, noise)
            actions, _, _ = fn(tf.nest.map_structure(tf.constant, x), tf.constant(noise))
        actions = self._env_action(actions.numpy())
        return (actions if batched else actions[0]), state

    def predict_values(self, obs: Any) -> np.ndarray:
        """Critic values ``V(obs)`` for a batch of raw observations."""
        with tf.device(self.device):
            return self._value_fn(self.normalize_obs(obs)).numpy()

    # ------------------------------------------------------------------ training

    def _check_envs(self, envs: gym.vector.VectorEnv) -> str:
        if envs.single_action_space != self.action_space:
            raise ValueError(f"env action space {envs.single_action_space} != agent's {self.action_space}")
        if envs.single_observation_space != self.observation_space:
            raise ValueError(f"env observation space {envs.single_observation_space} != agent's "
                             f"{self.observation_space}")
        mode = envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        mode = getattr(mode, "value", mode)
        if mode not in ("NextStep", "SameStep"):
            raise ValueError(f"vector env autoreset_mode {mode!r} is not supported (use NEXT_STEP or SAME_STEP)")
        return mode

    def _schedule(self, total_timesteps: int) -> tuple[float, float]:
        # Linear annealing on the progress of the run (CleanRL detail 4; rl-zoo `lin_` schedules).
        frac = max(0.0, 1.0 - self.num_timesteps / total_timesteps)
        lr = self.config.learning_rate * (frac if self.config.anneal_lr else 1.0)
        clip = self.config.clip_range * (frac if self.config.anneal_clip_range else 1.0)
        return lr, clip

    def learn(self, envs: gym.vector.VectorEnv, total_timesteps: int,
              callback: Callable[[PPOAgent, dict[str, float]], bool | None] | None = None) -> None:
        """Train until ``num_timesteps`` reaches ``total_timesteps``.

        ``total_timesteps`` is the budget of the whole run, counting steps already done: a
        loaded agent resumes where it stopped, and LR/clip annealing continue on the same
        schedule. ``num_timesteps`` counts every vector step times ``n_envs``, including the
        reset-only steps of ``NEXT_STEP`` autoreset (as CleanRL and SB3 count env steps).

        Args:
            envs: a ``gymnasium.vector`` env (sync or async) with the agent's spaces and
                ``NEXT_STEP`` (default) or ``SAME_STEP`` autoreset.
            total_timesteps: run budget in environment steps.
            callback: ``callback(agent, stats)`` after every update; returning ``False`` stops.
        """
        mode = self._check_envs(envs)
        n_envs = envs.num_envs
        buf = self._make_buffer(n_envs)
        self.rollout_buffer = buf  # kept for inspection (tests, diagnostics), as SB3 does
        # Seeded reset: seed + num_updates so that a resumed run does not replay old episodes.
        obs, _ = envs.reset(seed=self.seed + self.num_updates)
        state = _RolloutState(obs=obs, prev_done=np.zeros(n_envs, bool), ep_ret=np.zeros(n_envs),
                              ep_len=np.zeros(n_envs, np.int64), disc_ret=np.zeros(n_envs))
        self.timings = dict.fromkeys(self.timings, 0.0)
        t_start, steps_start = time.perf_counter(), self.num_timesteps
        while self.num_timesteps < total_timesteps:
            market = self._collect_rollout(envs, buf, state, mode)
            stats = self._update(buf, total_timesteps)
            stats.update(self._progress_stats(time.perf_counter() - t_start, steps_start, market))
            # What the policy did in this rollout (diag/ keys; numbers only, no randomness).
            stats.update(action_diagnostics(buf.actions, buf.mask, self.action_space))
            stats.update(step_info_diagnostics(state.step_counts))
            if callback is not None and callback(self, stats) is False:
                break

    def _make_buffer(self, n_envs: int) -> RolloutBuffer:
        cfg = self.config
        if cfg.n_steps * n_envs < cfg.batch_size:
            raise ValueError(f"batch_size {cfg.batch_size} > rollout size n_steps*n_envs = {cfg.n_steps * n_envs}")
        if (cfg.n_steps * n_envs) % cfg.batch_size:
            logger.warning("rollout size %d is not a multiple of batch_size %d: the remainder is skipped each epoch",
                           cfg.n_steps * n_envs, cfg.batch_size)
        return RolloutBuffer(cfg.n_steps, n_envs, self.observation_space, self.action_space)

    def _collect_rollout(self, envs: gym.vector.VectorEnv, buf: RolloutBuffer, state: _RolloutState,
                         mode: str) -> dict[str, list[float]]:
        """Fill ``buf`` with ``n_steps`` vector steps and its advantages; returns the market metrics seen."""
        cfg = self.config
        buf.reset()
        state.step_counts = {}
        market: dict[str, list[float]] = {}
        for _ in range(cfg.n_steps):
            self._rollout_step(envs, buf, state, mode, market)
        t0 = time.perf_counter()
        with tf.device(self.device):
            last_values = self._value_fn(self.normalize_obs(state.obs)).numpy()
        buf.compute_returns_and_advantage(last_values, cfg.gamma, cfg.gae_lambda)
        self.timings["policy_s"] += time.perf_counter() - t0
        return market

    def _rollout_step(self, envs: gym.vector.VectorEnv, buf: RolloutBuffer, state: _RolloutState, mode: str,
                      market: dict[str, list[float]]) -> None:
        """One vector step: act, step the envs, store the transition, track episodes."""
        cfg = self.config
        n_envs = envs.num_envs
        # NEXT_STEP autoreset: an env that ended at the previous step is only reset by
        # this step (action ignored, reward 0): not a transition, masked out of the losses.
        valid = ~state.prev_done if mode == "NextStep" else np.ones(n_envs, bool)
        t0 = time.perf_counter()
        self._update_obs_rms(state.obs, valid)
        x = self.normalize_obs(state.obs)
        noise = self._noise(n_envs, False)
        with tf.device(self.device):
            if state.policy is None:
                # The traced concrete function for this batch shape, called directly:
                # skips tf.function's per-call signature dispatch (measured 303 -> 170 us
                # per CartPole step, the README section "PPO agent").
                state.policy = self._policy_fn.get_concrete_function(x, noise)
            a_t, logp_t, v_t = state.policy(tf.nest.map_structure(tf.constant, x), tf.constant(noise))
        actions, log_probs, values = a_t.numpy(), logp_t.numpy(), v_t.numpy()
        t1 = time.perf_counter()
        obs, rewards, terminated, truncated, infos = envs.step(self._env_action(actions))
        self.timings["policy_s"] += t1 - t0
        self.timings["env_s"] += time.perf_counter() - t1
        self.num_timesteps += n_envs
        buf.add(x, actions, log_probs, values, valid.astype(np.float32))
        rewards = np.asarray(rewards, np.float64)
        dones = np.logical_or(terminated, truncated) & valid
        self._track_episodes(state, rewards, valid, dones)
        self._collect_episode_metrics(infos, mode, market)
        _count_step_info(infos, valid, state.step_counts)
        if self.ret_rms is not None:
            # Reward scaling by the std of the discounted return (SB3 VecNormalize).
            state.disc_ret = state.disc_ret * cfg.gamma + rewards
            self.ret_rms.update(state.disc_ret[valid])
            rewards = np.clip(rewards / np.sqrt(self.ret_rms.var + 1e-8), -cfg.clip_reward, cfg.clip_reward)
            state.disc_ret[dones] = 0.0
        buf.add_outcome(np.where(valid, rewards, 0.0), (terminated & valid).astype(np.float32),
                        dones.astype(np.float32))
        # Truncation bootstrap. NEXT_STEP: the obs just returned *is* the final obs, and
        # its value is computed at the next step (or as last_values), which
        # compute_returns_and_advantage uses as next value. SAME_STEP: the final obs
        # is in infos["final_obs"]; evaluate it now.
        if mode == "SameStep" and truncated.any():
            self._bootstrap_same_step(buf, obs, infos, truncated)
        state.obs = obs
        state.prev_done = np.logical_or(terminated, truncated)

    def _track_episodes(self, state: _RolloutState, rewards: np.ndarray, valid: np.ndarray,
                        dones: np.ndarray) -> None:
        """Running return/length of each env's episode; finished ones go to the rollout stats."""
        state.ep_ret += np.where(valid, rewards, 0.0)
        state.ep_len += valid
        for i in np.flatnonzero(dones):
            self._ep_returns.append(float(state.ep_ret[i]))
            self._ep_lengths.append(int(state.ep_len[i]))
        state.ep_ret[dones], state.ep_len[dones] = 0.0, 0

    def _progress_stats(self, elapsed: float, steps_start: int, market: dict[str, list[float]]) -> dict[str, float]:
        """The ``rollout/``, ``time/`` and ``market/`` keys of the stats passed to the callback."""
        stats = {
            "rollout/ep_return_mean": float(np.mean(self._ep_returns)) if self._ep_returns else float("nan"),
            "rollout/ep_len_mean": float(np.mean(self._ep_lengths)) if self._ep_lengths else float("nan"),
            "time/steps_per_s": (self.num_timesteps - steps_start) / max(elapsed, 1e-9),
            "time/total_timesteps": float(self.num_timesteps),
            "time/env_s": self.timings["env_s"], "time/policy_s": self.timings["policy_s"],
            "time/update_s": self.timings["update_s"],
        }
        stats.update({f"market/{k}": float(np.mean(v)) for k, v in market.items() if v})
        return stats

    def _bootstrap_same_step(self, buf: RolloutBuffer, obs: Any, infos: dict, truncated: np.ndarray) -> None:
        mask = np.asarray(infos.get("_final_obs", truncated), bool) & truncated
        final = infos["final_obs"]
        if isinstance(self.observation_space, gym.spaces.Dict):
            stacked = {k: np.stack([final[i][k] if mask[i] else obs[k][i] for i in range(len(mask))])
                       for k in self.observation_space.spaces}
        else:
            stacked = np.stack([final[i] if mask[i] else obs[i] for i in range(len(mask))])
        with tf.device(self.device):
            v = self._value_fn(self.normalize_obs(stacked)).numpy()
        buf.set_final_value(v, mask)

    @staticmethod
    def _collect_episode_metrics(infos: dict, mode: str, out: dict[str, list[float]]) -> None:
        """Gather the env's ``info["episode"]`` metrics of finished episodes (market env)."""
        src = infos
        if mode == "SameStep" and "final_info" in infos:
            src = infos["final_info"]
        ep = src.get("episode") if isinstance(src, dict) else None
        if not isinstance(ep, dict):
            return
        for k, v in ep.items():
            if k.startswith("_") or k in ("r", "l", "t"):  # r/l/t: RecordEpisodeStatistics
                continue
            mask = ep.get(f"_{k}")
            arr = np.asarray(v)
            if mask is None or arr.dtype.kind not in "fiub":
                continue
            out.setdefault(k, []).extend(float(x) for x in arr[np.asarray(mask, bool)])

    def _update(self, buf: RolloutBuffer, total_timesteps: int) -> dict[str, float]:
        cfg = self.config
        t0 = time.perf_counter()
        lr, clip = self._schedule(total_timesteps)
        lr_t, clip_t = tf.constant(lr, tf.float32), tf.constant(clip, tf.float32)
        # Target-KL early stop (SB3 ppo.py: threshold 1.5 * target_kl; CleanRL checks per
        # epoch): checked after each minibatch inside _train_epoch, stopping the update.
        kl_stop = tf.constant(1.5 * cfg.target_kl if cfg.target_kl > 0 else np.inf, tf.float32)
        data = buf.flat()
        sums = np.zeros(len(TRAIN_METRICS))
        n_mb = 0
        stop = False
        with tf.device(self.device):
            # Every epoch's shuffled minibatches, epoch after epoch, in one compiled call.
            idx = np.concatenate([buf.minibatch_indices(cfg.batch_size, self.rng) for _ in range(cfg.n_epochs)])
            s_t, n_t, stop_t = self._epoch_fn(*data, idx, clip_t, lr_t, kl_stop)
            sums += s_t.numpy()
            n_mb, stop = int(n_t), bool(stop_t)
        sums = dict(zip(TRAIN_METRICS, sums.tolist(), strict=True))
        self.num_updates += 1
        self.timings["update_s"] += time.perf_counter() - t0
        stats = {f"train/{k}": v / max(n_mb, 1) for k, v in sums.items()}
        v, r = buf.values.ravel(), buf.returns.ravel()
        var_r = np.var(r)
        stats.update({
            "train/learning_rate": lr, "train/clip_range": clip, "train/n_minibatches": float(n_mb),
            "train/early_stop": float(stop),
            "train/explained_variance": float(1 - np.var(r - v) / var_r) if var_r > 0 else float("nan"),
        })
        return stats

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path, include_optimizer: bool = True) -> None:
        """Save the agent to ``directory`` (no pickle).

        Writes ``agent.json`` (config, spaces, counters, RNG and normaliser state),
        ``model.weights.h5`` (Keras) and, optionally, ``optimizer.npz`` (Adam state).
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "config": utils.dataclass_to_dict(self.config),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "seed": self.seed, "num_timesteps": self.num_timesteps, "num_updates": self.num_updates,
            "rng_state": _rng_state_to_json(self.rng.bit_generator.state),
            "obs_rms": {k: r.state_dict() for k, r in self.obs_rms.items()} if self.obs_rms else None,
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms else None,
            "has_optimizer": include_optimizer,
        }
        tmp = d / ".tmp.model.weights.h5"  # Keras insists on the .weights.h5 suffix
        self.model.save_weights(tmp)  # Keras writes h5 itself; renamed atomically below
        atomic_write_bytes(d / "model.weights.h5", tmp.read_bytes())
        tmp.unlink()
        if include_optimizer:
            bio = io.BytesIO()
            np.savez(bio, **{f"v{i:04d}": np.asarray(v) for i, v in enumerate(self.optimizer.variables)})
            atomic_write_bytes(d / "optimizer.npz", bio.getvalue())
        atomic_write_json(d / "agent.json", meta)
        manifest.write(d)  # last: sizes and hashes of the files above (manifest.py)

    @classmethod
    def load(cls, directory: str | Path, optimizer: bool = True) -> PPOAgent:
        """Rebuild an agent written by ``save``.

        Restores weights, optimizer state (if saved and ``optimizer``), normaliser statistics,
        counters and random-generator state. The files read are first checked against the
        folder's ``manifest.json`` (sizes and SHA-256; folders saved before manifests are read
        unchecked). The saved config may be nested or flat (written before ``NetworkConfig``
        was nested in ``PPOConfig``); unknown keys are dropped with a warning.

        Args:
            directory: the folder ``save`` wrote.
            optimizer: also restore the Adam state (training needs it; evaluation does not,
                and then does not read ``optimizer.npz`` at all).

        Raises:
            FileNotFoundError: no ``agent.json`` in ``directory``.
            ValueError: a file that is damaged or does not fit (``manifest.CheckpointError``,
                one line naming the file), another ``format_version``, or a saved value
                ``PPOConfig`` rejects (``utils.CliError`` is a ``ValueError``).
        """
        d = Path(directory)
        meta_path = d / "agent.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: no saved PPO agent there")
        manifest.verify(d, ["agent.json"])  # before parsing: a cut file is named as cut
        try:
            meta = orjson.loads(meta_path.read_bytes())
        except orjson.JSONDecodeError as e:
            raise manifest.CheckpointError(f"{meta_path}: not valid JSON ({e}); the file is damaged") from None
        if not isinstance(meta, dict):
            raise manifest.CheckpointError(f"{meta_path}: not a saved agent (a JSON {type(meta).__name__})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
        with_opt = bool(meta.get("has_optimizer")) and optimizer
        manifest.verify(d, ["model.weights.h5", *(["optimizer.npz"] if with_opt else [])])
        try:
            # Nested (``{"net": {...}}``) or flat (saved before NetworkConfig was nested in PPOConfig).
            config = utils.dataclass_from_dict(PPOConfig, meta["config"], source=str(meta_path))
            agent = cls(space_from_json(meta["observation_space"]), space_from_json(meta["action_space"]),
                        config, seed=meta["seed"])
        except (KeyError, TypeError) as e:
            raise manifest.CheckpointError(f"{meta_path}: missing or malformed entry {e}") from None
        _load_weights(agent.model, d / "model.weights.h5")
        if with_opt:
            _load_optimizer(agent.optimizer, d / "optimizer.npz")
        try:
            agent.num_timesteps, agent.num_updates = int(meta["num_timesteps"]), int(meta["num_updates"])
            agent.rng.bit_generator.state = _rng_state_from_json(meta["rng_state"])
            if meta["obs_rms"] is not None:
                for k, st in meta["obs_rms"].items():
                    agent.obs_rms[k].load_state_dict(st)
            if meta["ret_rms"] is not None:
                agent.ret_rms.load_state_dict(meta["ret_rms"])
        except (KeyError, TypeError, ValueError) as e:
            raise manifest.CheckpointError(f"{meta_path}: missing or malformed entry ({type(e).__name__}: "
                                           f"{_first_line(e)})") from None
        return agent


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text, cut to ``limit`` characters (Keras prints tensors)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_weights(model: Any, path: Path) -> None:
    """``model.load_weights(path)``, any failure as one line naming the file."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise manifest.CheckpointError(
            f"{path}: cannot load these weights into the model ({type(e).__name__}: {_first_line(e)}); "
            "the file is damaged or was saved by a model of another shape") from None
    # Keras loads a file of another layout with warnings only ("Skipping ... Affected layers will
    # retain their freshly-initialized weights"): a model half random, refused here.
    skipped = [w for w in caught if "Skipping" in str(w.message) or "freshly-initialized" in str(w.message)]
    if skipped:
        raise manifest.CheckpointError(
            f"{path}: these weights do not fit the model (Keras skipped {len(skipped)} part(s): "
            f"{_first_line(skipped[0].message, 120)}); saved by a model of another shape")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _load_optimizer(optimizer: Any, path: Path) -> None:
    """Restore the Adam state saved as ``optimizer.npz``, any failure as one line naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in sorted(z.files)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise manifest.CheckpointError(f"{path}: unreadable ({type(e).__name__}: {_first_line(e)})") from None
    if len(arrays) != len(optimizer.variables):
        raise manifest.CheckpointError(f"{path}: {len(arrays)} arrays, the optimizer has "
                                       f"{len(optimizer.variables)} variables")
    for var, arr in zip(optimizer.variables, arrays, strict=True):
        if tuple(var.shape) != arr.shape:
            raise manifest.CheckpointError(f"{path}: array of shape {arr.shape} for an optimizer variable of "
                                           f"shape {tuple(var.shape)} (saved by a model of another shape)")
        var.assign(arr)

