"""PPO in the Avellaneda–Stoikov model market, scored against the model's closed-form optima.

One job: the glue between ``as_model_env`` (the model market ``AvellanedaStoikov-v0`` and its
vectorised simulator ``simulate``) and ``ppo_agent.PPOAgent``: the closed-form strategies to
beat, the training wrapper, training, and evaluation of any set of policies on the same
simulated paths. ``train.py --env as_model`` and ``evaluate.py`` reach it through
``model_market_cli`` (flags, records, evaluation files); ``train.py --env as_model --seed s``
trains the agent that ``train_as_model(..., seed=s)`` trains.

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
- ``AS_SETTINGS`` / ``as_setting_config(setting, **overrides)``: the named settings of the
  command line (``as2008``: the AS 2008 experiment, PnL objective; ``cj``: mbt_gym's
  Cartea–Jaimungal setting).
- ``EVAL_SEED`` / ``EVAL_PATHS`` / ``VALIDATION_SEED``: the held-out paths of the final and
  of the periodic evaluation (disjoint from every training seed; ``training_seeds``).
- ``optimum_name(config)``: the reference policy that is optimal for ``config``'s criterion.
- ``simulate_policies``: every policy's ``SimulationResult`` on the same paths.
- ``compare_with_references`` / ``ASComparison``: trained models against the closed forms on
  the same paths, with the per-path table and the paired differences (``paired_stats``);
  ``SUMMARY_COLUMNS``, ``PATH_COLUMNS``, ``PAIRED_COLUMNS``: its tables' columns.

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
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import gymnasium as gym
import numpy as np
import pandas as pd

import paired_stats
from as_model_env import (
    ASModelConfig,
    CarteaJaimungalPolicy,
    SimulationResult,
    closed_form_cj_policy,
    simulate,
)
from baselines import AvellanedaStoikovPolicy, FixedSpreadPolicy, GLFTPolicy
from utils import replace_flat

if TYPE_CHECKING:  # ppo_agent imports TensorFlow: imported where used, so that the CLIs' --help stays fast
    from ppo_agent import PPOAgent, PPOConfig

logger = logging.getLogger(__name__)

ENV_ID = "AvellanedaStoikov-v0"
MAX_OBS_WINDOW = 64
"""Largest ``ASTrainingConfig.obs_window``."""
CONV_LSTM_WINDOW = 8
"""``obs_window`` chosen for ``network="conv_lstm"`` when it is left at 0 (the market env's ``obs_window`` default)."""

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
    obs_window: int = 0
    """0: the env's own ``[inventory, time_left]`` observation (MLP); ``W >= 1``: the last ``W`` steps as the Dict observation of ``ModelMarketWindow`` (any network; ``--network conv_lstm`` needs it and sets 8 when 0)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.n_envs, int) and self.n_envs >= 1):
            raise ValueError(f"ASTrainingConfig.n_envs must be an integer >= 1, got {self.n_envs!r}")
        if not (isinstance(self.obs_window, int) and 0 <= self.obs_window <= MAX_OBS_WINDOW):
            raise ValueError(f"ASTrainingConfig.obs_window must be an integer in 0..{MAX_OBS_WINDOW}, "
                             f"got {self.obs_window!r}")


def as_ppo_config(**overrides: Any) -> PPOConfig:
    """``PPOConfig`` with ``AS_PPO_DEFAULTS`` and then ``overrides`` (leaf field names).

    >>> as_ppo_config(learning_rate=3e-4).learning_rate
    0.0003
    """
    from ppo_agent import PPOConfig

    return replace_flat(PPOConfig(), **{**AS_PPO_DEFAULTS, **overrides})


# ------------------------------------------------------------------------------ settings, seeds
AS_SETTINGS: dict[str, dict[str, float]] = {
    "as2008": {},
    "cj": {"per_step_inventory_aversion": 0.01, "terminal_inventory_aversion": 0.001},
}
"""Named settings of the model market (``train.py --as_setting``), as ``ASModelConfig`` changes.

``as2008``: the defaults, Avellaneda & Stoikov (2008)'s experiment (S0 100, sigma 2, A 140,
k 1.5, T 1, 200 steps) with the PnL objective (phi = alpha = 0; optimum: both quotes at
``1/k``). ``cj``: the same model with the Cartea–Jaimungal criterion of mbt_gym's notebook
"Test 2 - replicate CJP 2015" (phi 0.01, alpha 0.001; optimum: ``closed_form_cj_policy``),
the setting of ``benchmarks/learn_as.py``'s ``cj`` objective."""

EVAL_SEED = 1_000_003
"""Seed of the final evaluation's held-out paths (``simulate``), as in ``benchmarks/learn_as.py``."""
VALIDATION_SEED = 2_000_003
"""Seed of the periodic evaluation's paths during training (they select ``best_model``, so
they are not the final evaluation's)."""
EVAL_PATHS = 1000
"""Simulated paths of the final evaluation."""


def as_setting_config(setting: str = "as2008", **overrides: Any) -> ASModelConfig:
    """The ``ASModelConfig`` of a named setting (``AS_SETTINGS``), then ``overrides``.

    >>> c = as_setting_config("cj")
    >>> c.per_step_inventory_aversion, c.terminal_inventory_aversion, c.sigma
    (0.01, 0.001, 2.0)
    """
    if setting not in AS_SETTINGS:
        raise ValueError(f"unknown model-market setting {setting!r}; choose one of {sorted(AS_SETTINGS)}")
    return ASModelConfig(**{**AS_SETTINGS[setting], **overrides})


def training_seeds(seed: int, n_envs: int, n_updates: int) -> range:
    """Every episode seed a training run can draw: ``PPOAgent.learn`` resets with ``seed + num_updates``.

    A first ``learn`` seeds env ``i`` with ``seed + i``; a resumed one at update ``u`` with
    ``seed + u + i``; later episodes continue each env's generator.

    >>> training_seeds(3, n_envs=16, n_updates=63)
    range(3, 82)
    >>> EVAL_SEED in training_seeds(0, 16, 10_000)
    False
    """
    return range(seed, seed + n_updates + n_envs)


def optimum_name(config: ASModelConfig) -> str:
    """The reference policy optimal for ``config``'s criterion (``reference_policies``' names).

    >>> optimum_name(ASModelConfig()), optimum_name(as_setting_config("cj"))
    ('risk_neutral', 'cartea_jaimungal')
    """
    averse = config.per_step_inventory_aversion > 0 or config.terminal_inventory_aversion > 0
    return "cartea_jaimungal" if averse else "risk_neutral"


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


class ModelMarketWindow:
    """Windowed Dict observations of the model market, the input of the Conv1D+LSTM network.

    The model market has no order book: its state is the inventory, the time left and the mid,
    and its only price levels are the agent's own two quotes. This builder keeps, for ``n``
    paths at once, the last ``window`` decision steps and returns the market env's Dict layout
    (``ppo_network.MARKET_KEYS``), so that the same ``conv_lstm`` network reads it:

    | key | shape | row ``j`` (``j = W-1`` is the decision step ``t``) |
    |-----|-------|-----------------------------------------------------|
    | ``book`` | ``(W, 2, 1)`` | the depths quoted at step ``t_j - 1`` (bid, ask: the two "levels"), price units |
    | ``features`` | ``(W, 4)`` | ``q``, time left, ``S - S_prev`` (price units), ``q - q_prev`` at ``t_j`` |
    | ``agent`` | ``(2,)`` | ``[q_t, time_left_t]``, the env's own observation |

    Causal: row ``j`` holds only what is known at ``t_j`` (the mid, the inventory after the
    fills of the previous quotes, and those quotes). At the first step of an episode the
    window is the first step's row repeated, with zero changes and zero depths. Values are raw;
    the agent's observation normaliser scales them.

    Built identically on the training env (``WindowedModelObservation``, ``n = 1``) and inside
    ``simulate`` (``AgentPolicy``, ``n`` = paths), from the same inputs: the env observation,
    ``info["market"]["mid"]`` and the depths sent.

    >>> w = ModelMarketWindow(3, n=1)
    >>> o = w.reset(np.array([[0.0, 1.0]]), np.array([100.0]))
    >>> o["features"][0, :, 0].tolist(), o["book"].shape
    ([0.0, 0.0, 0.0], (1, 3, 2, 1))
    >>> o = w.step(np.array([[1.0, 0.995]]), np.array([100.5]), np.array([[0.6, 0.7]]))
    >>> o["features"][0, -1].tolist(), o["book"][0, -1, :, 0].tolist()
    ([1.0, 0.9950000047683716, 0.5, 1.0], [0.6000000238418579, 0.699999988079071])
    """

    N_FEATURES = 4

    def __init__(self, window: int, n: int = 1) -> None:
        if not (isinstance(window, int) and 1 <= window <= MAX_OBS_WINDOW):
            raise ValueError(f"window must be an integer in 1..{MAX_OBS_WINDOW}, got {window!r}")
        self.window = window
        self.n = n
        self._features = np.zeros((n, window, self.N_FEATURES), np.float32)
        self._book = np.zeros((n, window, 2, 1), np.float32)
        self._agent = np.zeros((n, 2), np.float32)
        self._mid = np.zeros(n)
        self._q = np.zeros(n)

    @staticmethod
    def space(window: int) -> gym.spaces.Dict:
        """The observation space of one path."""
        inf = np.float32(np.inf)
        return gym.spaces.Dict({
            "book": gym.spaces.Box(-inf, inf, (window, 2, 1), np.float32),
            "features": gym.spaces.Box(-inf, inf, (window, ModelMarketWindow.N_FEATURES), np.float32),
            "agent": gym.spaces.Box(-inf, inf, (2,), np.float32),
        })

    def _obs(self) -> dict[str, np.ndarray]:
        return {"book": self._book.copy(), "features": self._features.copy(), "agent": self._agent.copy()}

    def reset(self, obs: np.ndarray, mid: np.ndarray) -> dict[str, np.ndarray]:
        """Start every path: ``obs`` ``(n, 2)`` env observations, ``mid`` ``(n,)``."""
        obs = np.asarray(obs, np.float64).reshape(self.n, 2)
        self._mid = np.asarray(mid, np.float64).reshape(self.n).copy()
        self._q = obs[:, 0].copy()
        self._features[:] = 0.0
        self._features[:, :, 0] = obs[:, None, 0]
        self._features[:, :, 1] = obs[:, None, 1]
        self._book[:] = 0.0
        self._agent[:] = obs
        return self._obs()

    def step(self, obs: np.ndarray, mid: np.ndarray, depths: np.ndarray) -> dict[str, np.ndarray]:
        """Append one step: the new observation and mid, and the depths ``(n, 2)`` just quoted."""
        obs = np.asarray(obs, np.float64).reshape(self.n, 2)
        mid = np.asarray(mid, np.float64).reshape(self.n)
        depths = np.asarray(depths, np.float64).reshape(self.n, 2)
        self._features[:, :-1] = self._features[:, 1:]
        self._book[:, :-1] = self._book[:, 1:]
        self._features[:, -1] = np.stack([obs[:, 0], obs[:, 1], mid - self._mid, obs[:, 0] - self._q], axis=1)
        self._book[:, -1, :, 0] = depths
        self._agent[:] = obs
        self._mid = mid.copy()
        self._q = obs[:, 0].copy()
        return self._obs()


class WindowedModelObservation(gym.Wrapper):
    """``AvellanedaStoikov-v0`` with ``ModelMarketWindow``'s Dict observation (one path)."""

    def __init__(self, env: gym.Env, window: int) -> None:
        super().__init__(env)
        self._builder = ModelMarketWindow(window, n=1)
        self.observation_space = ModelMarketWindow.space(window)

    @staticmethod
    def _one(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in obs.items()}

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        """Reset and fill the window with the first step."""
        obs, info = self.env.reset(**kwargs)
        return self._one(self._builder.reset(obs[None], np.array([info["market"]["mid"]]))), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Step and append the step to the window."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        depths = np.asarray(action, np.float64).reshape(1, 2)
        window = self._builder.step(obs[None], np.array([info["market"]["mid"]]), depths)
        return self._one(window), reward, terminated, truncated, info


def resolve_obs_window(training: ASTrainingConfig, network: str) -> ASTrainingConfig:
    """``training`` with ``obs_window = CONV_LSTM_WINDOW`` where ``network`` is conv_lstm and it is 0.

    >>> resolve_obs_window(ASTrainingConfig(), "conv_lstm").obs_window
    8
    >>> resolve_obs_window(ASTrainingConfig(), "mlp").obs_window
    0
    """
    if network == "conv_lstm" and training.obs_window == 0:
        return replace(training, obs_window=CONV_LSTM_WINDOW)
    return training


def make_as_envs(config: ASModelConfig, training: ASTrainingConfig | None = None) -> gym.vector.VectorEnv:
    """``gym.make_vec("AvellanedaStoikov-v0", ...)``, synchronous, with the training wrappers."""
    t = training or ASTrainingConfig()
    wrappers: list[Callable[[gym.Env], gym.Wrapper]] = [MarkToMarketControlVariate] if t.control_variate else []
    if t.obs_window > 0:
        wrappers.append(partial(WindowedModelObservation, window=t.obs_window))
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
    from ppo_agent import PPOAgent

    pc = ppo_config or as_ppo_config()
    training = resolve_obs_window(training or ASTrainingConfig(), pc.net.network)
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
    """A ``PPOAgent`` (its deterministic action, the Gaussian mean) as a ``simulate`` policy.

    An agent trained on windowed observations (a Dict observation space, ``obs_window >= 1``)
    is given the same ``ModelMarketWindow`` observations, built over the simulated paths from
    the env observation, ``info["market"]["mid"]`` and the depths it sent.
    """

    action_mode = "continuous"

    def __init__(self, agent: PPOAgent, deterministic: bool = True) -> None:
        self.agent = agent
        self.deterministic = deterministic
        space = agent.observation_space
        self.window = int(space["book"].shape[0]) if isinstance(space, gym.spaces.Dict) else 0
        self._builder: ModelMarketWindow | None = None
        self._last: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the window (a new batch of paths starts)."""
        self._builder = None
        self._last = None

    def _observation(self, obs: np.ndarray, info: dict) -> Any:
        if self.window == 0:
            return obs.astype(np.float32)
        mid = np.asarray(info["market"]["mid"], np.float64).reshape(len(obs))
        if self._builder is None or self._last is None:
            self._builder = ModelMarketWindow(self.window, n=len(obs))
            return self._builder.reset(obs, mid)
        return self._builder.step(obs, mid, self._last)

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """Depths for a batch of ``[inventory, time_left]`` observations."""
        x = self._observation(np.asarray(obs, dtype=np.float64), info)
        action, _ = self.agent.predict(x, deterministic=self.deterministic)
        self._last = np.asarray(action, dtype=np.float64)
        return self._last


def _as_policy(p: Any) -> Any:
    from ppo_agent import PPOAgent

    if isinstance(p, PPOAgent):
        return AgentPolicy(p)
    if isinstance(p, str | Path):
        return AgentPolicy(PPOAgent.load(p))
    if not (hasattr(p, "act") and hasattr(p, "reset")):
        raise TypeError(f"not a policy (needs reset() and act(obs, info)), a PPOAgent or a saved agent's "
                        f"folder: {p!r}")
    return p


def simulate_policies(policies: Mapping[str, Any], config: ASModelConfig, n_paths: int = 1000,
                      seed: int = 0) -> dict[str, SimulationResult]:
    """Every policy's ``simulate`` result on the same ``n_paths`` paths (same ``seed``).

    Args:
        policies: name -> policy (``reset``/``act``), ``PPOAgent``, or a saved agent's folder.
        config: model and criterion.
        n_paths: paths per policy.
        seed: seed of the paths.
    """
    return {name: simulate(_as_policy(p), config, n_paths=n_paths, seed=seed) for name, p in policies.items()}


def _stats(r: SimulationResult) -> dict[str, float]:
    n = len(r.reward)
    return {
        "reward_mean": float(r.reward.mean()),
        "reward_se": float(r.reward.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "pnl_mean": float(r.pnl.mean()), "pnl_std": float(r.pnl.std()),
        "final_inv_std": float(r.final_inventory.std()),
        "abs_inv_mean": float(np.abs(r.inventory_path).mean()), "spread_mean": float(r.mean_spread.mean()),
        "fills_mean": float(r.n_fills.mean()),
    }


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
    results = simulate_policies(policies, config, n_paths, seed)
    df = pd.DataFrame.from_dict({name: _stats(r) for name, r in results.items()}, orient="index")
    df.index.name = "policy"
    if reference is not None:
        df["reward_ratio"] = df["reward_mean"] / df.loc[reference, "reward_mean"]
        df["inv_std_ratio"] = df["final_inv_std"] / df.loc[reference, "final_inv_std"]
    return df


# ------------------------------------------------------------------------------ comparison
AGENT = "agent"
"""The ``policy`` value of the trained models' rows (the model is in the ``model`` column)."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "policy", "model", "n_models", "n_paths", "criterion_mean", "criterion_se", "ratio_to_optimum",
    "pnl_mean", "pnl_std", "final_inv_std", "inv_std_ratio", "abs_inv_mean", "spread_mean", "fills_mean",
)
"""Columns of ``compare_with_references``' summary (``evaluation_summary.csv`` of a model-market
evaluation; docs/workflow.md)."""
PATH_COLUMNS: tuple[str, ...] = (
    "policy", "model", "path", "criterion", "pnl", "final_inventory", "n_fills", "mean_spread",
)
"""Columns of the per-path table (``paths.csv``): one row per policy (and model) and path."""
PAIRED_COLUMNS: tuple[str, ...] = (
    "metric", "baseline", "diff_mean", "diff_ci_lo", "diff_ci_hi", "sign_p", "wilcoxon_p",
    "n_episodes", "n_models", "share_positive",
)
"""Columns of the paired table, those of ``evaluation.PAIRED_COLUMNS`` (an episode is a path)."""


class ASComparison(NamedTuple):
    """What ``compare_with_references`` returns."""

    summary: pd.DataFrame
    """One row per model, the mean over models (several), then one per reference (``SUMMARY_COLUMNS``)."""
    paths: pd.DataFrame
    """One row per policy (and model) and path (``PATH_COLUMNS``)."""
    paired: pd.DataFrame
    """Agent − each reference on the same paths (``PAIRED_COLUMNS``)."""
    optimum: str
    """The reference the ratios divide by (``optimum_name``)."""


def comparison_references(config: ASModelConfig, gamma: float = 0.1) -> dict[str, Any]:
    """``reference_policies`` without ``cartea_jaimungal`` when phi = alpha = 0 (it then is ``risk_neutral``)."""
    refs = reference_policies(config, gamma)
    if optimum_name(config) == "risk_neutral":
        del refs["cartea_jaimungal"]
    return refs


def compare_with_references(models: Mapping[str, Any], config: ASModelConfig, n_paths: int = EVAL_PATHS,
                            seed: int = EVAL_SEED, gamma: float = 0.1, n_boot: int = 10_000) -> ASComparison:
    """Trained models against the closed-form strategies, all on the same simulated paths.

    The references are ``comparison_references(config, gamma)``: the risk-neutral ``1/k``
    quotes, the Cartea–Jaimungal closed form (when phi or alpha > 0), AS and GLFT with risk
    aversion ``gamma``. The ratios divide by the optimum of ``config``'s criterion.

    Args:
        models: name -> ``PPOAgent`` (or a saved agent's folder, or any policy), e.g. one per
            training seed.
        config: model and criterion.
        n_paths: paths per policy (>= 2: the paired statistics need two).
        seed: seed of the paths and of the bootstrap.
        gamma: risk aversion of AS and GLFT.
        n_boot: bootstrap replicates of the paired CIs.

    Returns:
        An ``ASComparison``.
    """
    if not models:
        raise ValueError("compare_with_references needs at least one model")
    if n_paths < 2:
        raise ValueError(f"n_paths must be >= 2 for the paired statistics, got {n_paths}")
    refs = comparison_references(config, gamma)
    clash = sorted(set(models) & set(refs))
    if clash:
        raise ValueError(f"model names {clash} are reference names")
    res = simulate_policies({**models, **refs}, config, n_paths, seed)
    opt = _stats(res[optimum_name(config)])
    rows = [_summary_row(AGENT, name, 1, res[name], opt) for name in models]
    if len(models) > 1:
        mean = {c: float(np.mean([r[c] for r in rows])) for c in SUMMARY_COLUMNS[4:]}
        rows.append({"policy": AGENT, "model": f"mean of {len(models)}", "n_models": len(models),
                     "n_paths": n_paths, **mean})
    rows += [_summary_row(name, "", 0, res[name], opt) for name in refs]
    paths = pd.concat([_path_rows(AGENT if name in models else name, name if name in models else "", r)
                       for name, r in res.items()], ignore_index=True)
    metrics = ["criterion"] + (["pnl"] if optimum_name(config) != "risk_neutral" else [])
    paired = []
    for metric in metrics:
        attr = "reward" if metric == "criterion" else "pnl"   # SimulationResult field
        agent = np.stack([getattr(res[name], attr) for name in models])
        for name in refs:
            d = paired_stats.paired_difference(agent, getattr(res[name], attr), n_boot=n_boot, seed=seed)
            paired.append({"metric": metric, "baseline": name,
                           **{("diff_" + k if k in ("mean", "ci_lo", "ci_hi") else k): v for k, v in asdict(d).items()}})
    return ASComparison(pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)), paths,
                        pd.DataFrame(paired, columns=list(PAIRED_COLUMNS)), optimum_name(config))


def _summary_row(policy: str, model: str, n_models: int, r: SimulationResult, opt: dict[str, float]
                 ) -> dict[str, Any]:
    s = _stats(r)
    return {"policy": policy, "model": model, "n_models": n_models, "n_paths": len(r.reward),
            "criterion_mean": s["reward_mean"], "criterion_se": s["reward_se"],
            "ratio_to_optimum": s["reward_mean"] / opt["reward_mean"],
            "pnl_mean": s["pnl_mean"], "pnl_std": s["pnl_std"], "final_inv_std": s["final_inv_std"],
            "inv_std_ratio": s["final_inv_std"] / opt["final_inv_std"] if opt["final_inv_std"] > 0 else math.nan,
            "abs_inv_mean": s["abs_inv_mean"], "spread_mean": s["spread_mean"], "fills_mean": s["fills_mean"]}


def _path_rows(policy: str, model: str, r: SimulationResult) -> pd.DataFrame:
    n = len(r.reward)
    return pd.DataFrame({"policy": policy, "model": model, "path": np.arange(n), "criterion": r.reward,
                         "pnl": r.pnl, "final_inventory": r.final_inventory, "n_fills": r.n_fills,
                         "mean_spread": r.mean_spread}, columns=list(PATH_COLUMNS))


__all__ = [
    "AGENT", "AS_PPO_DEFAULTS", "AS_SETTINGS", "ENV_ID", "EVAL_PATHS", "EVAL_SEED", "PAIRED_COLUMNS",
    "PATH_COLUMNS", "SUMMARY_COLUMNS", "VALIDATION_SEED", "ASComparison", "ASTrainingConfig", "AgentPolicy",
    "CarteaJaimungalPolicy", "MarkToMarketControlVariate", "as_ppo_config", "as_setting_config",
    "closed_form_cj_policy", "compare_with_references", "comparison_references", "evaluate_as_model",
    "make_as_envs", "optimum_name", "reference_policies", "risk_neutral_policy", "simulate_policies",
    "train_as_model", "training_seeds",
]
