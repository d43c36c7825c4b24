"""The PPO and network hyperparameters: ``PPOConfig`` and ``NetworkConfig`` (no TensorFlow).

One job: the typed, validated configuration of the agent, importable without TensorFlow or
Keras, so that ``train.py --help`` and argument errors build their flags from these
dataclasses in well under two seconds (importing TensorFlow takes ~6-10 s). ``ppo_agent``
and ``ppo_network`` re-export them under their old names.

Public names:

- ``PPOConfig``: every PPO hyperparameter (frozen dataclass, a docstring under each field);
  the architecture is the nested ``PPOConfig.net``.
- ``NetworkConfig``: every architectural setting of the actor-critic network.
- ``NETWORK_KINDS``: the values of ``NetworkConfig.network``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from utils import check_settings

__all__ = ["NETWORK_KINDS", "NetworkConfig", "PPOConfig"]

NETWORK_KINDS = ("auto", "mlp", "conv_lstm")
"""Values of ``NetworkConfig.network``."""


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of the actor-critic network."""

    network: str = "auto"
    """Architecture: ``"auto"`` (``conv_lstm`` for market Dict observations, ``mlp`` otherwise), ``"mlp"`` or ``"conv_lstm"``."""
    hidden_size: int = 64
    """Units of each layer of the MLP trunk."""
    n_hidden_layers: int = 2
    """Number of layers of the MLP trunk."""
    activation: str = "tanh"
    """Trunk activation: ``"tanh"`` (SB3/CleanRL default for PPO) or ``"relu"``."""
    shared_trunk: bool = False
    """True: actor and critic share the encoder and trunk; False: two separate copies (SB3 default for MLP)."""
    layer_norm: bool = False
    """Apply LayerNorm after the encoder and before each trunk activation."""
    conv_filters: int = 16
    """Filters of each per-time-step Conv1D over the book levels (conv_lstm only)."""
    conv_kernel: int = 3
    """Kernel size (in book levels) of the Conv1D layers (conv_lstm only)."""
    conv_layers: int = 2
    """Number of stacked Conv1D layers (conv_lstm only)."""
    lstm_units: int = 64
    """Units of the LSTM over the observation window (conv_lstm only)."""
    ortho_init: bool = True
    """Orthogonal initialisation, gain sqrt(2) hidden, 0.01 actor head, 1 critic head, zero biases."""
    log_std_init: float = 0.0
    """Initial value of the state-independent Gaussian log-std (continuous actions only)."""

    def __post_init__(self) -> None:
        if self.network not in NETWORK_KINDS:
            raise ValueError(f"network kind must be one of {NETWORK_KINDS}, got {self.network!r}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {self.activation!r}")
        for name in ("hidden_size", "conv_filters", "conv_kernel", "conv_layers", "lstm_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_hidden_layers < 0:
            raise ValueError(f"n_hidden_layers must be >= 0, got {self.n_hidden_layers}")
        check_settings(self, {"log_std_init": (-20.0, 5.0)})  # std in [2e-9, 148]


@dataclass(frozen=True)
class PPOConfig:
    """Every PPO hyperparameter. Defaults follow SB3's PPO (itself CleanRL's ppo.py)."""

    learning_rate: float = 3e-4
    """Adam learning rate (initial value when ``anneal_lr``)."""
    anneal_lr: bool = True
    """Linearly anneal the learning rate to 0 over ``total_timesteps`` (CleanRL detail 4)."""
    n_steps: int = 2048
    """Environment steps per env per rollout; a rollout holds ``n_steps * n_envs`` transitions."""
    batch_size: int = 64
    """Minibatch size (transitions) of each gradient step."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (bias/variance trade-off of the advantage estimate)."""
    clip_range: float = 0.2
    """PPO surrogate clipping epsilon (initial value when ``anneal_clip_range``)."""
    anneal_clip_range: bool = False
    """Linearly anneal the clip range to 0 like the learning rate (rl-zoo ``lin_0.2``)."""
    clip_range_vf: float = 0.0
    """Value clipping range around the old value prediction; 0 disables it (SB3 default)."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch (mean 0, std 1)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip over all parameters."""
    adam_eps: float = 1e-5
    """Adam epsilon (1e-5 as in the PPO reference code, not Keras' 1e-7)."""
    target_kl: float = 0.0
    """Stop the epochs of an update once approx KL > 1.5 * target_kl; 0 disables it."""
    normalize_obs: bool = True
    """Normalise observations with running mean/std (saved with the model, frozen outside learn)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (SB3 VecNormalize)."""
    clip_obs: float = 10.0
    """Clip normalised observations to [-clip_obs, clip_obs]."""
    clip_reward: float = 10.0
    """Clip normalised rewards to [-clip_reward, clip_reward]."""
    net: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    """Architecture of the actor-critic network (a nested config: its fields are flags of their
    own, ``--network``, ``--hidden_size``, ...; see ``ppo_network.NetworkConfig``)."""
    jit_compile: bool = True
    """XLA-compile the policy and update steps (``tf.function(jit_compile=True)``)."""
    device: str = "auto"
    """``"auto"`` (GPU when TensorFlow sees one), ``"cpu"`` or ``"gpu"``."""
    mixed_precision: bool = False
    """bfloat16 hidden layers on GPU (heads, losses and optimizer stay float32); ignored on CPU."""

    SANE_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "learning_rate": (1e-12, 1.0), "clip_range": (0.0, 10.0), "clip_range_vf": (0.0, 1e6),
        "ent_coef": (0.0, 100.0), "vf_coef": (0.0, 1e3), "max_grad_norm": (0.0, 1e6), "adam_eps": (1e-12, 1.0),
        "target_kl": (0.0, 100.0), "clip_obs": (1e-6, 1e9), "clip_reward": (1e-6, 1e9),
    }
    """Sane range of each number (``utils.check_settings``)."""

    def __post_init__(self) -> None:
        positive = ("learning_rate", "n_steps", "batch_size", "n_epochs", "adam_eps", "clip_obs", "clip_reward")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("clip_range", "clip_range_vf", "ent_coef", "vf_coef", "max_grad_norm", "target_kl"):
            if getattr(self, name) < 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"PPOConfig.device must be 'auto', 'cpu' or 'gpu', got {self.device!r}")
        check_settings(self, self.SANE_RANGES)
