"""Keras 3 actor-critic networks for PPO: the market Conv1D+LSTM network and a plain MLP.

This module only builds models and exposes their forward pass (the SB3 split of
``common/policies.py``); the PPO algorithm lives in ``ppo_agent.py``.

Public names:

- ``NetworkConfig``: frozen dataclass with every architectural setting (nested in
  ``ppo_agent.PPOConfig`` as ``PPOConfig.net``; its leaves are the ``--network``,
  ``--hidden_size``, ... flags of ``train.py``).
- ``ActorCritic``: ``keras.Model`` mapping a batch of observations to
  ``(dist_params, value)``; ``dist_params`` are categorical logits for ``Discrete`` action
  spaces and the Gaussian mean for ``Box`` ones, whose state-independent log-std is the
  weight ``ActorCritic.log_std``.
- ``build_actor_critic``: build and initialise an ``ActorCritic`` for a pair of spaces.
- ``resolve_network_kind``: which architecture ``"auto"`` picks for an observation space.

Architectures:

- ``"conv_lstm"`` (market observations ``Dict(book=(W, L, C), features=(W, F), agent=(A,))``):
  per time step, 1-D convolutions over the ``L`` book levels with the ``C`` channels
  (bid/ask price distance and size) as input channels; the per-step conv output is
  flattened and concatenated with that step's feature vector; an LSTM runs over the ``W``
  steps of the window *inside one observation* and its last hidden state is kept; the
  agent vector (inventory, time left, ...) is joined after the LSTM; then an MLP trunk.
  The window already carries the recent past, so no recurrent state is carried between
  environment steps: the policy is a feed-forward function of one observation, which
  keeps PPO minibatching and truncation handling exactly as for an MLP (no LSTM-state
  storage, no per-sequence minibatches, STYLE.md habit 11 does not apply).
  The per-step Conv1D is implemented as a ``Conv2D`` with kernel ``(1, k)`` over the
  ``(W, L)`` plane, which is the same operation with weights shared across time
  (``TimeDistributed(Conv1D)``) and runs as one fused kernel.
- ``"mlp"``: every observation part flattened and concatenated, then the MLP trunk. Used
  for vector tasks (CartPole, Pendulum) and as the no-LSTM ablation on the market.

Continuous actions: the actor outputs the Gaussian mean, unbounded; the agent samples,
stores the *unclipped* sample (its log-probability is exact) and clips only the copy sent
to the environment to the action bounds (SB3/CleanRL behaviour). No tanh squashing is used,
so no Jacobian correction is needed; the mean may sit outside the bounds.
"""

from __future__ import annotations

import math
import os
from typing import Any

# Pin the Keras backend before Keras is imported (STYLE habit 12), and keep TensorFlow's
# C++ INFO/WARNING logs out of the CLI output (errors still show).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from ppo_config import NETWORK_KINDS, NetworkConfig  # noqa: E402  (re-exported: defined without TensorFlow)

MARKET_KEYS = ("book", "features", "agent")
UNROLL_MAX_WINDOW = 32  # LSTM windows up to this length are unrolled (see the LSTM comment)


def resolve_network_kind(observation_space: gym.Space, kind: str = "auto") -> str:
    """Return the architecture used for ``observation_space``.

    Args:
        observation_space: a ``Box`` or ``Dict`` space.
        kind: ``"auto"``, ``"mlp"`` or ``"conv_lstm"``.

    Returns:
        ``"mlp"`` or ``"conv_lstm"``.

    Raises:
        ValueError: ``conv_lstm`` asked for a space without the market keys.

    >>> resolve_network_kind(gym.spaces.Box(-1, 1, (4,)))
    'mlp'
    >>> resolve_network_kind(gym.spaces.Dict({"book": gym.spaces.Box(0, 1, (5, 3, 4)),
    ...     "features": gym.spaces.Box(0, 1, (5, 2)), "agent": gym.spaces.Box(0, 1, (3,))}))
    'conv_lstm'
    """
    is_market = isinstance(observation_space, gym.spaces.Dict) and all(
        k in observation_space.spaces for k in MARKET_KEYS
    )
    if kind == "auto":
        return "conv_lstm" if is_market else "mlp"
    if kind == "conv_lstm" and not is_market:
        raise ValueError(
            f"network 'conv_lstm' needs a Dict observation with keys {MARKET_KEYS}, got {observation_space}"
        )
    if kind not in ("mlp", "conv_lstm"):
        raise ValueError(f"network kind must be one of {NETWORK_KINDS}, got {kind!r}")
    return kind


class _Init:
    """Deterministic initialiser factory: every layer gets its own seed from one base seed."""

    def __init__(self, seed: int, ortho: bool) -> None:
        self.seed = int(seed)
        self.ortho = ortho
        self.count = 0

    def kernel(self, gain: float) -> keras.initializers.Initializer:
        self.count += 1
        s = self.seed * 1000 + self.count
        # Orthogonal init with per-layer gains: CleanRL ppo.py `layer_init`, SB3 policies.py
        # `init_weights` (gain sqrt(2) hidden, 0.01 policy head, 1 value head).
        if self.ortho:
            return keras.initializers.Orthogonal(gain=gain, seed=s)
        return keras.initializers.GlorotUniform(seed=s)


class ActorCritic(keras.Model):
    """Actor-critic network for one observation/action space pair.

    Call it on a batch of (already normalised) observations, a float32 array for ``Box``
    spaces or a dict of arrays for ``Dict`` spaces; it returns ``(dist_params, value)`` with
    shapes ``(B, n_actions | act_dim)`` and ``(B,)``, both float32.

    ``dtype_policy`` is the Keras dtype policy of the hidden layers (``"mixed_bfloat16"``
    for mixed precision on GPU); the heads stay float32. It is a build-time choice of the
    agent (from ``PPOConfig.mixed_precision`` and the device), not an architecture setting.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: NetworkConfig,
        seed: int = 0,
        dtype_policy: str = "float32",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(action_space, gym.spaces.Discrete):
            self.continuous = False
            self.action_dim = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.continuous = True
            self.action_dim = int(action_space.shape[0])
        else:
            raise ValueError(f"unsupported action space {action_space} (Discrete or 1-D Box)")
        if not isinstance(observation_space, gym.spaces.Box | gym.spaces.Dict):
            raise ValueError(f"unsupported observation space {observation_space} (Box or Dict)")
        self.kind = resolve_network_kind(observation_space, config.network)
        self.net_config = config
        self.hidden_dtype_policy = dtype_policy  # (Keras models have their own `dtype_policy`)
        self.obs_keys: tuple[str, ...] | None = (
            tuple(observation_space.spaces) if isinstance(observation_space, gym.spaces.Dict) else None
        )
        init = _Init(seed, config.ortho_init)
        if config.shared_trunk:
            self.actor_body = self._make_body(observation_space, init, "shared")
            self.critic_body = self.actor_body
        else:
            self.actor_body = self._make_body(observation_space, init, "actor")
            self.critic_body = self._make_body(observation_space, init, "critic")
        self.actor_head = layers.Dense(
            self.action_dim, kernel_initializer=init.kernel(0.01), bias_initializer="zeros",
            dtype="float32", name="actor_head",
        )
        self.critic_head = layers.Dense(
            1, kernel_initializer=init.kernel(1.0), bias_initializer="zeros",
            dtype="float32", name="critic_head",
        )
        # State-independent log-std (CleanRL ppo_continuous_action.py `actor_logstd`,
        # SB3 DiagGaussianDistribution); created for discrete spaces too (unused, size 1)
        # so that every model has the same weight list structure.
        self.log_std = self.add_weight(
            name="log_std", shape=(self.action_dim if self.continuous else 1,),
            initializer=keras.initializers.Constant(config.log_std_init), trainable=self.continuous,
            dtype="float32",
        )

    def _make_body(self, space: gym.Space, init: _Init, name: str) -> keras.Model:
        """Encoder + MLP trunk as a functional sub-model (observation → feature vector)."""
        cfg = self.net_config
        dt = self.hidden_dtype_policy
        if isinstance(space, gym.spaces.Dict):
            inputs = {k: keras.Input(shape=s.shape, name=k) for k, s in space.spaces.items()}
        else:
            inputs = keras.Input(shape=space.shape, name=f"{name}_obs")
        gain = math.sqrt(2.0)
        if self.kind == "conv_lstm":
            book = inputs["book"]
            w, n_levels = space["book"].shape[0], space["book"].shape[1]
            x = book
            for i in range(cfg.conv_layers):
                # Conv1D over levels for every time step == Conv2D with a (1, k) kernel.
                x = layers.Conv2D(
                    cfg.conv_filters, (1, min(cfg.conv_kernel, n_levels)), padding="same",
                    activation="relu", kernel_initializer=init.kernel(gain), dtype=dt,
                    name=f"{name}_conv{i}",
                )(x)
            x = layers.Reshape((w, n_levels * cfg.conv_filters), name=f"{name}_per_step")(x)
            feats = inputs["features"]
            x = layers.Concatenate(axis=-1, name=f"{name}_step_concat")([x, keras.ops.cast(feats, x.dtype)])
            # LSTM over the window inside one observation; only the last hidden state is kept.
            # Short windows are unrolled into a static graph: forward+backward of an 8-step
            # LSTM(64), batch 256, measured 4.6 vs 5.6 ms (graph) and 3.5 vs 5.1 ms (XLA) on CPU.
            x = layers.LSTM(
                cfg.lstm_units, kernel_initializer=init.kernel(1.0),
                recurrent_initializer=init.kernel(1.0), dtype=dt, name=f"{name}_lstm",
                unroll=w <= UNROLL_MAX_WINDOW,
            )(x)
            extra = [inputs[k] for k in self.obs_keys if k not in ("book", "features")]
            parts = [x] + [layers.Flatten()(keras.ops.cast(e, x.dtype)) for e in extra]
            x = layers.Concatenate(name=f"{name}_join_agent")(parts) if len(parts) > 1 else x
        elif isinstance(space, gym.spaces.Dict):
            flat = [layers.Flatten(name=f"{name}_flat_{k}")(inputs[k]) for k in self.obs_keys]
            x = layers.Concatenate(name=f"{name}_concat")(flat) if len(flat) > 1 else flat[0]
        else:
            x = layers.Flatten(name=f"{name}_flat")(inputs) if len(space.shape) != 1 else inputs
        if cfg.layer_norm:
            x = layers.LayerNormalization(dtype=dt, name=f"{name}_enc_ln")(x)
        for i in range(cfg.n_hidden_layers):
            x = layers.Dense(cfg.hidden_size, kernel_initializer=init.kernel(gain), dtype=dt,
                             name=f"{name}_dense{i}")(x)
            if cfg.layer_norm:
                x = layers.LayerNormalization(dtype=dt, name=f"{name}_ln{i}")(x)
            x = layers.Activation(cfg.activation, dtype=dt, name=f"{name}_act{i}")(x)
        return keras.Model(inputs, x, name=f"{name}_body")

    def call(self, obs: Any) -> tuple[Any, Any]:
        """Return ``(dist_params, value)`` for a batch of normalised observations."""
        latent_pi = self.actor_body(obs)
        latent_vf = latent_pi if self.net_config.shared_trunk else self.critic_body(obs)
        dist = self.actor_head(keras.ops.cast(latent_pi, "float32"))
        value = self.critic_head(keras.ops.cast(latent_vf, "float32"))[:, 0]
        return dist, value


def dummy_batch(observation_space: gym.Space, batch: int = 1) -> Any:
    """Zero observations of batch size ``batch`` (float32), e.g. to build a model.

    >>> dummy_batch(gym.spaces.Box(-1, 1, (3,)), 2).shape
    (2, 3)
    """
    if isinstance(observation_space, gym.spaces.Dict):
        return {k: np.zeros((batch, *s.shape), np.float32) for k, s in observation_space.spaces.items()}
    return np.zeros((batch, *observation_space.shape), np.float32)


def build_actor_critic(
    observation_space: gym.Space, action_space: gym.Space, config: NetworkConfig, seed: int = 0,
    dtype_policy: str = "float32",
) -> ActorCritic:
    """Build an ``ActorCritic`` and create its weights (deterministic for a given seed).

    Args:
        observation_space: ``Box`` or ``Dict`` observation space (single env).
        action_space: ``Discrete`` or 1-D ``Box`` action space.
        config: architecture.
        seed: seed of every initialiser.
        dtype_policy: Keras dtype policy of the hidden layers (heads stay float32).

    Returns:
        The built model.
    """
    model = ActorCritic(observation_space, action_space, config, seed=seed, dtype_policy=dtype_policy)
    model(dummy_batch(observation_space, 1))
    return model
