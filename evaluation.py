"""Run policies on the very same episodes and summarise them: the evaluation both scripts use.

One job: run every policy (one or several trained models of the PPO agent, e.g. one per
training seed, and each baseline once) on the same episode start times and env seeds of a
recording and turn the env's episode metrics into per-episode rows (one per model, policy
and episode), a per-policy summary, the paired agent − baseline differences
(``paired_stats``), comparison plots and (optionally) a figure of each policy's first
episode. The agent acts with the normalisation statistics it was saved with
(``PPOAgent.predict`` never updates them). ``evaluate.py`` is the command line on top;
``train.py`` calls this module for its periodic and final held-out evaluations.

Public names:

- ``EPISODE_KEYS``, ``markout_columns``, ``episode_columns``, ``summary_columns``: the
  columns, markouts derived from the configured horizons with ``utils.horizon_label``.
- ``PAIRED_COLUMNS``: the columns of ``paired_differences.csv``.
- ``AgentPolicy``: wraps a ``PPOAgent`` in the ``baselines.Policy`` interface.
- ``build_baselines`` / ``build_policies``: the requested baselines (AS/GLFT intensity
  fitted on the training data), with or without the agent.
- ``episode_start_times``: the seeded episode start times shared by every policy.
- ``episodes_that_fit`` / ``episode_fit_warning``: how many non-overlapping episodes the
  evaluation range holds, and the warning when fewer than requested.
- ``run_episode``: one episode of one policy, its metrics and (optionally) its trace;
  ``run_episodes``: several episodes of the agent in lockstep (``EVAL_BATCH``), same results.
- ``evaluate_policies``: every model and policy on the same start times → ``episodes``.
- ``summarise``: one row per policy (formulas in docs/workflow.md).
- ``paired_differences``: agent − each baseline on the same episodes (``paired_stats``).
- ``format_table`` / ``table_footnote`` / ``format_paired_table`` / ``format_report``:
  the terminal tables.
- ``EvaluationResult`` / ``run_evaluation``: all of the above, writing the output folder.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

import evaluation_checks
import paired_stats
import plots
import replay_record
import utils
from cli import make_env

logger = logging.getLogger(__name__)

EPISODE_KEYS: tuple[str, ...] = (
    "pnl", "realised_pnl", "unrealised_pnl", "fees", "spread_capture", "inventory_pnl",
    "maker_volume", "taker_volume", "maker_volume_ratio", "fill_ratio", "n_fills",
    "adverse_selection_ratio", "realised_spread_bps", "inventory_mean", "inventory_abs_mean",
    "inventory_max_abs", "orders_placed", "orders_cancelled", "liquidation_cost",
    "length_steps",
)
"""Keys of ``info["episode"]`` guaranteed by the env contract (docs/CONTRACTS.md), besides the
markouts: ``markout_bps_<h>`` for each configured horizon (``markout_columns``)."""

_SUMMARY_HEAD: tuple[str, ...] = (
    "policy", "n_episodes", "n_models", "pnl_mean", "pnl_std", "pnl_ci95_low", "pnl_ci95_high",
    "pnl_median", "pnl_min", "pnl_max", "win_rate", "sharpe_episode", "sortino_episode",
    "sharpe_episode_ann", "sortino_episode_ann",
    "sharpe_step_ann", "sortino_step_ann", "max_drawdown_mean", "max_drawdown_max",
    "fill_ratio", "n_fills_mean", "adverse_selection_ratio",
)
_SUMMARY_TAIL: tuple[str, ...] = (
    "realised_spread_bps",
    "spread_capture_mean", "inventory_pnl_mean", "maker_volume_ratio", "maker_volume_mean",
    "taker_volume_mean", "fees_mean", "inventory_mean", "inventory_abs_mean",
    "inventory_max_abs", "liquidation_cost_mean", "pnl_before_liquidation_mean", "quoted_bid_share",
    "quoted_ask_share", "annualisation", "flags",
)

PAIRED_COLUMNS: tuple[str, ...] = (
    "metric", "baseline", "diff_mean", "diff_ci_lo", "diff_ci_hi", "sign_p", "wilcoxon_p",
    "n_episodes", "n_models", "share_positive",
)
"""Columns of ``paired_differences.csv``: one row per baseline, agent − baseline of ``metric``
on the same episodes (``paired_stats.paired_table``; nan with fewer than 2 episodes)."""

AGENT = "agent"
"""The ``policy`` name of every trained model's rows (the model is in the ``model`` column)."""
INITIAL_AGENT = "initial_agent"
"""The ``policy`` name of the untrained agent of a run (its ``models/initial_model``): the
reference row that shows whether training learned anything."""

REPLAY_EPISODES: int | None = None
"""Episodes per policy and model written to ``replay.parquet`` by ``run_evaluation`` (None: all)."""
REPLAY_LEVELS = 10
"""Book levels per side in ``replay.parquet``."""
EVAL_BATCH = 10
"""Episodes of the agent stepped in lockstep by ``evaluate_policies``, one batched network call
per step (``run_episodes``): the network call, not the env, was 90 % of an agent episode's
time at batch 1. The batch is padded to this size, so every call has the same shape and the
numbers do not depend on how many episodes are left. Baselines keep one episode at a time
(they carry state from step to step)."""


def markout_columns(horizons_ms: Sequence[float]) -> list[str]:
    """The ``markout_bps_<h>`` keys of the env's episode metrics for these horizons.

    >>> markout_columns([100, 1500])
    ['markout_bps_100ms', 'markout_bps_1.5s']
    """
    return [f"markout_bps_{utils.horizon_label(float(h))}" for h in horizons_ms]


def episode_columns(horizons_ms: Sequence[float]) -> tuple[str, ...]:
    """The env metrics of ``episodes.csv``: ``EPISODE_KEYS`` with the markouts after ``adverse_selection_ratio``."""
    i = EPISODE_KEYS.index("adverse_selection_ratio") + 1
    return (*EPISODE_KEYS[:i], *markout_columns(horizons_ms), *EPISODE_KEYS[i:])


def summary_columns(horizons_ms: Sequence[float]) -> tuple[str, ...]:
    """Columns of ``evaluation_summary.csv``, in order (documented in the README section "Research workflow").

    >>> summary_columns([1000])[22:24]
    ('markout_bps_1s', 'realised_spread_bps')
    """
    return (*_SUMMARY_HEAD, *markout_columns(horizons_ms), *_SUMMARY_TAIL)


def _horizons(env_config: Any) -> tuple[float, ...]:
    return tuple(utils.get_flat(env_config, "markout_horizons_ms"))


# --------------------------------------------------------------------------- policies


class AgentPolicy:
    """The PPO agent behind the ``baselines.Policy`` interface (deterministic actions).

    The observation normaliser is the agent's own ``obs_rms``, saved with the model and
    updated only inside ``PPOAgent.learn``: ``predict`` never updates it, so evaluation
    always uses the statistics learned in training, and train.py's periodic evaluation
    leaves the ongoing run untouched.
    """

    def __init__(self, agent: Any, action_mode: str, deterministic: bool = True) -> None:
        self.agent = agent
        self.action_mode = action_mode
        self.deterministic = deterministic
        self._state: Any = None
        self._start = True

    def reset(self) -> None:
        """Forget any recurrent state (a new episode starts)."""
        self._state = None
        self._start = True

    def act(self, obs: Any, info: dict) -> Any:
        """Action for one (unbatched) observation."""
        batched = _batch(obs)
        action, self._state = self.agent.predict(
            batched, state=self._state, episode_start=np.array([self._start]),
            deterministic=self.deterministic,
        )
        self._start = False
        action = np.asarray(action)
        if self.action_mode == "discrete":
            return int(action.reshape(-1)[0])
        return action.reshape(-1, action.shape[-1])[0].astype(np.float32)

    def act_batch(self, observations: Sequence[Any], size: int) -> list[Any]:
        """Actions for several episodes' observations in one network call, padded to ``size`` rows.

        The agent is feed-forward (its memory is the observation window), so the episodes
        of a batch are independent; padding repeats the last observation and its actions
        are dropped.
        """
        obs = list(observations)
        assert 0 < len(obs) <= size, (len(obs), size)
        obs += [obs[-1]] * (size - len(obs))
        if isinstance(obs[0], dict):
            batched: Any = {k: np.stack([np.asarray(o[k]) for o in obs]) for k in obs[0]}
        else:
            batched = np.stack([np.asarray(o) for o in obs])
        actions, _ = self.agent.predict(batched, deterministic=self.deterministic)
        actions = np.asarray(actions)[:len(observations)]
        if self.action_mode == "discrete":
            return [int(a) for a in actions.reshape(len(observations), -1)[:, 0]]
        return [a.astype(np.float32) for a in actions.reshape(len(observations), -1)]


def _batch(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def _baseline_fit(bl: Any, calibration: dict[str, Any] | None, baseline_names: Sequence[str] | None) -> Any:
    """The AS/GLFT intensity fit on ``calibration``, or ``None`` (not needed, or failed: logged)."""
    if calibration is None or not baseline_names_need_fit(baseline_names):
        return None
    try:
        fit = bl.calibrate_from_file(calibration["data_path"], symbol=calibration.get("symbol"),
                                     time_range=tuple(calibration.get("time_range", (0.0, 1.0))))
    except ValueError as exc:
        logger.warning("AS/GLFT intensity fit failed (%s): using A = k = 1 per tick", exc)
        calibration.update(fit=f"failed: {exc}", n_orders=0)  # read by evaluation_checks
        return None
    logger.info("AS/GLFT intensity fit: A=%.4g /s, k=%.4g /tick (r2 %.2f, %d orders)",
                fit.A, fit.k, fit.r2, fit.n_orders)
    calibration.update(fit="ok", n_orders=int(fit.n_orders), A=float(fit.A), k=float(fit.k))
    return fit


def build_baselines(
    env_config: Any,
    baseline_names: Sequence[str] | None,
    seed: int,
    env_cache: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{<baseline>: policy, ...}`` for the requested baselines (``{}`` for none).

    The baselines quote ``[bid_offset, ask_offset]`` ticks, so they are built for (and later
    run in) the ``continuous`` action mode of the same env config. AS and GLFT need the
    order-arrival intensity ``lambda(delta) = A exp(-k delta)``: it is fitted with
    ``baselines.calibrate_from_file`` on ``calibration`` (``{"data_path", "symbol",
    "time_range"}``: the *training* part of the data, so that the baselines see no more of
    the future than the agent did); if the fit fails, AS/GLFT fall back to A = k = 1 per
    tick with a warning.

    Args:
        env_config: the evaluation ``EnvConfig``.
        baseline_names: names to build (``None`` = all, empty = none).
        seed: seed of the random baseline.
        env_cache: where the continuous-mode env is kept for ``evaluate_policies``.
        calibration: data for the intensity fit, or ``None`` for no fit.

    Returns:
        The baselines by name, in the requested order.

    Raises:
        utils.CliError: for an unknown baseline name.
    """
    import baselines as bl

    if baseline_names is not None and not baseline_names:
        return {}
    cache = {} if env_cache is None else env_cache
    if "continuous" not in cache:
        cache["continuous"] = make_env(utils.replace_flat(env_config, action_mode="continuous"))
    fit = _baseline_fit(bl, calibration, baseline_names)
    with warnings.catch_warnings():
        if fit is None:
            warnings.simplefilter("ignore", UserWarning)  # already logged above
        available = dict(bl.make_baselines(cache["continuous"], fit=fit, seed=seed))
    names = list(available) if baseline_names is None else list(baseline_names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise utils.CliError(f"unknown baseline(s) {unknown}; available: {sorted(available)}")
    return {n: available[n] for n in names}


def build_policies(
    agent: Any,
    env_config: Any,
    baseline_names: Sequence[str] | None,
    seed: int,
    env_cache: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"agent": AgentPolicy, <baseline>: policy, ...}``: one agent and ``build_baselines``.

    Args:
        agent: a ``PPOAgent`` or ``None``.
        env_config: the evaluation ``EnvConfig``.
        baseline_names: names to build (``None`` = all).
        seed: seed of the random baseline.
        env_cache: where the continuous-mode env is kept for ``evaluate_policies``.
        calibration: data for the intensity fit, or ``None`` for no fit.

    Returns:
        The policies by name.

    Raises:
        utils.CliError: for an unknown baseline name, or nothing to evaluate.
    """
    policies: dict[str, Any] = {}
    if agent is not None:
        policies[AGENT] = AgentPolicy(agent, utils.get_flat(env_config, "action_mode"))
    policies.update(build_baselines(env_config, baseline_names, seed, env_cache, calibration))
    if not policies:
        raise utils.CliError("nothing to evaluate: give --model_path or at least one baseline")
    return policies


def baseline_names_need_fit(names: Sequence[str] | None) -> bool:
    """Whether the requested baselines include one that uses the intensity fit (AS, GLFT)."""
    return names is None or any(n in ("avellaneda_stoikov", "glft") for n in names)


# --------------------------------------------------------------------------- episodes


def episode_start_times(env: Any, n_episodes: int, seed: int) -> list[int]:
    """The start times (exchange ms) of ``n_episodes`` episodes, drawn by the env's own seeding.

    Episode ``i`` is the start the env chooses on ``reset(seed=seed + i)``; every policy is
    then started at exactly these times with ``reset(options={"start_ts": t})``.
    """
    starts = []
    for i in range(n_episodes):
        _, info = env.reset(seed=seed + i)
        starts.append(int(info["market"]["ts"]))
    return starts


def episodes_that_fit(range_ms: float, episode_length_s: float) -> int:
    """Non-overlapping episodes of ``episode_length_s`` in an evaluation range of ``range_ms``.

    >>> episodes_that_fit(2160_000, 300.0)    # the default run's held-out 30 % of 2 h
    7
    >>> episodes_that_fit(10_000, 300.0)
    0
    """
    return max(0, int(math.floor(float(range_ms) / (float(episode_length_s) * 1000.0) + 1e-9)))


def episode_fit_warning(env: Any, n_episodes: int) -> tuple[int, str | None]:
    """``(n_fit, message)``: the non-overlapping episodes the env's range holds, and a warning if < ``n_episodes``.

    Episodes start at seeded random times of the range, so with more episodes than fit
    they overlap: their results are correlated and the bootstrap CIs, which treat the
    episodes as independent, are too narrow.
    """
    cfg = env.config
    span = float(env.range_end_ts - env.range_start_ts)
    n_fit = episodes_that_fit(span, cfg.episode_length_s)
    if n_fit >= n_episodes:
        return n_fit, None
    return n_fit, (f"the evaluation range ({span / 1000:.0f} s of data, time_range {tuple(cfg.time_range)}) "
                   f"fits only {n_fit} non-overlapping episode(s) of {cfg.episode_length_s:g} s, but "
                   f"{n_episodes} were requested: episodes overlap, their results are correlated and "
                   "the confidence intervals are too narrow")


def _opt_float(v: Any) -> float:
    return float("nan") if v is None else float(v)


_TRACE_KEYS = ("ts", "mid", "best_bid", "best_ask", "quote_bid", "quote_ask", "inventory", "pnl")


def run_episode(
    env: Any, policy: Any, start_ts: int, seed: int, record_trace: bool = False,
    replay: replay_record.EpisodeRecorder | None = None,
) -> tuple[dict[str, Any], np.ndarray, dict[str, Any] | None]:
    """Run one episode of ``policy`` from ``start_ts``.

    Args:
        env: a ``MarketMakingEnv`` whose action mode matches ``policy.action_mode``.
        policy: any object with ``reset()`` and ``act(obs, info)``.
        start_ts: the episode start (exchange ms).
        seed: passed to ``env.reset`` (fixes any randomness inside the env).
        record_trace: keep the per-step market and quotes for ``plots.plot_episode``, with
            the env's fills and their markouts (``info["episode"]["fills"]``).
        replay: records every step and fill for the replay file (``replay_record``).

    Returns:
        ``(episode_metrics, step_pnl, trace)``: the env's ``info["episode"]`` dict, the PnL of
        every step (differences of the cumulative ``info["pnl"]``), and the trace or ``None``.
    """
    obs, info = env.reset(seed=seed, options={"start_ts": int(start_ts)})
    policy.reset()
    log = _EpisodeLog(env, info, record_trace, replay)
    while True:
        obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
        log.step(info)
        if terminated or truncated:
            return log.finish()


class _EpisodeLog:
    """What one episode records besides the env's own metrics: step PnL, the trace, the replay rows.

    Made after ``reset`` (with its ``info``), given every ``step``'s ``info``; ``finish`` returns
    ``run_episode``'s ``(episode_metrics, step_pnl, trace)``.
    """

    def __init__(self, env: Any, info: dict, record_trace: bool,
                 replay: replay_record.EpisodeRecorder | None) -> None:
        self.env, self.replay, self.info = env, replay, info
        self.pnls = [float(info.get("pnl", 0.0))]
        self.trace: dict[str, Any] | None = {k: [] for k in _TRACE_KEYS} if record_trace else None
        if self.trace is not None:
            _record(self.trace, info)
        if replay is not None:
            replay.step(env, info)

    def step(self, info: dict) -> None:
        self.info = info
        self.pnls.append(float(info["pnl"]))
        if self.trace is not None:
            _record(self.trace, info)
        if self.replay is not None:
            self.replay.step(self.env, info)

    def finish(self) -> tuple[dict[str, Any], np.ndarray, dict[str, Any] | None]:
        episode = dict(self.info["episode"])
        if self.replay is not None:
            self.replay.finish(episode)
        if self.trace is not None:
            # The env's record of every fill with its markouts: computed once, by the env.
            self.trace["fills"] = [dict(f) for f in episode["fills"]]
            self.trace["markout_horizons_ms"] = list(episode["markout_horizons_ms"])
        return episode, np.diff(np.asarray(self.pnls, dtype=np.float64)), self.trace


def run_episodes(
    envs: Sequence[Any], policy: Any, starts: Sequence[int], seeds: Sequence[int], record_trace: Sequence[bool],
    replays: Sequence[replay_record.EpisodeRecorder | None], batch: int,
) -> list[tuple[dict[str, Any], np.ndarray, dict[str, Any] | None]]:
    """``run_episode`` for several episodes of a batchable policy in lockstep, one env each.

    Episode ``j`` runs in ``envs[j]`` from ``starts[j]`` with ``seeds[j]``; every step asks
    ``policy.act_batch`` for the actions of the episodes still running (padded to ``batch``
    rows). Each episode's result is what ``run_episode`` gives for it: the envs are reset
    per episode and the policy's action for a row depends only on that row.

    Returns:
        One ``(episode_metrics, step_pnl, trace)`` per episode, in order.
    """
    k = len(starts)
    assert len(envs) >= k and len(seeds) == k == len(record_trace) == len(replays), (len(envs), k)
    obs: list[Any] = [None] * k
    logs: list[_EpisodeLog] = []
    for j in range(k):
        obs[j], info = envs[j].reset(seed=int(seeds[j]), options={"start_ts": int(starts[j])})
        logs.append(_EpisodeLog(envs[j], info, record_trace[j], replays[j]))
    policy.reset()
    running = list(range(k))
    while running:
        actions = policy.act_batch([obs[j] for j in running], batch)
        still = []
        for j, action in zip(running, actions, strict=True):
            obs[j], _, terminated, truncated, info = envs[j].step(action)
            logs[j].step(info)
            if not (terminated or truncated):
                still.append(j)
        running = still
    return [log.finish() for log in logs]  # in episode order (the replay file's order)


def _record(trace: dict[str, Any], info: dict) -> None:
    m = info["market"]
    q = info.get("quotes", {}) or {}
    trace["ts"].append(int(m["ts"]))
    trace["mid"].append(_opt_float(m.get("mid")))
    trace["best_bid"].append(_opt_float(m.get("best_bid")))
    trace["best_ask"].append(_opt_float(m.get("best_ask")))
    trace["quote_bid"].append(_opt_float(q.get("bid")))
    trace["quote_ask"].append(_opt_float(q.get("ask")))
    trace["inventory"].append(float(info.get("inventory", m.get("inventory", 0.0))))
    trace["pnl"].append(float(info.get("pnl", 0.0)))


class _Run(NamedTuple):
    """One policy to evaluate: its ``policy`` name, the ``model`` it comes from, the policy."""

    policy: str
    model: str
    impl: Any


def evaluate_policies(
    policies: dict[str, Any],
    env_config: Any,
    n_episodes: int,
    seed: int,
    trace_first: bool = False,
    progress: bool = True,
    env_cache: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
    replay: replay_record.ReplayRecorder | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Run every model and policy on the same ``n_episodes`` start times and env seeds.

    Args:
        policies: ``{name: policy}`` (the baselines, run once; an ``"agent"`` entry is allowed
            too); each policy's ``action_mode`` selects the env it runs in (same data, range
            and settings otherwise).
        env_config: the ``EnvConfig`` (data, symbol, time range, costs).
        n_episodes: number of episodes per policy.
        seed: seeds the start times (episode ``i`` uses ``seed + i``).
        trace_first: also return the trace of each policy's first episode.
        progress: show a tqdm bar.
        env_cache: keep the envs (one per action mode) here between calls instead of
            closing them (train.py's periodic evaluation).
        models: ``{model name: AgentPolicy}``: trained models (e.g. one per training seed),
            run first, each as policy ``"agent"`` with its name in the ``model`` column.
        replay: records the episodes it ``wants`` for the replay file.

    Returns:
        ``(episodes, step_pnls, traces)``: one row per model, policy and episode (``policy``,
        ``model`` — empty for a policy of ``policies`` —, ``episode``, ``start_ts``, ``seed``,
        then the env metrics of ``episode_columns``), the per-step PnL of each policy (all
        models and episodes concatenated), and the traces of the first episodes by policy
        (``agent_<model>`` for each of several models).
    """
    from tqdm import tqdm

    envs: dict[str, Any] = {} if env_cache is None else env_cache

    def env_for(mode: str, slot: int = 0) -> Any:
        key = mode if slot == 0 else f"{mode}#{slot}"  # the lockstep batch's further envs
        if key not in envs:
            envs[key] = make_env(utils.replace_flat(env_config, action_mode=mode))
        return envs[key]

    runs = [_Run(AGENT, m, p) for m, p in (models or {}).items()]
    runs += [_Run(n, "", p) for n, p in policies.items()]
    default_mode = utils.get_flat(env_config, "action_mode")
    keys = episode_columns(_horizons(env_config))
    starts = episode_start_times(env_for(default_mode), n_episodes, seed)
    rows: list[dict[str, Any]] = []
    steps: dict[str, list[np.ndarray]] = {}
    traces: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(runs) * n_episodes, desc="evaluate", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        for run in runs:
            mode = getattr(run.impl, "action_mode", default_mode)
            trace_name = run.policy if len(models or {}) < 2 or run.model == "" else f"{run.policy}_{run.model}"
            size = max(1, min(EVAL_BATCH, len(starts))) if hasattr(run.impl, "act_batch") else 1
            for b0 in range(0, len(starts), size):
                idx = range(b0, min(b0 + size, len(starts)))
                t_start = time.perf_counter()
                recs = [replay.episode(run.policy, run.model, i) if replay is not None and replay.wants(i) else None
                        for i in idx]
                if size == 1:
                    i = idx[0]
                    results = [run_episode(env_for(mode), run.impl, starts[i], seed + i, trace_first and i == 0,
                                           recs[0])]
                else:
                    results = run_episodes([env_for(mode, j) for j in range(len(idx))], run.impl,
                                           [starts[i] for i in idx], [seed + i for i in idx],
                                           [trace_first and i == 0 for i in idx], recs, size)
                wall = (time.perf_counter() - t_start) / len(idx)  # a lockstep batch's time, shared
                for i, (ep, step_pnl, trace) in zip(idx, results, strict=True):
                    if trace is not None:
                        traces[trace_name] = trace
                    steps.setdefault(run.policy, []).append(step_pnl)
                    rows.append(_episode_row(run, i, starts[i], seed + i, ep, step_pnl, keys, wall))
                    bar.set_postfix(policy=run.policy, pnl=f"{float(ep.get('pnl', float('nan'))):.2f}")
                    bar.update(1)
    finally:
        bar.close()
        if env_cache is None:
            for env in envs.values():
                env.close()
    step_pnls = {k: np.concatenate(v) if v else np.zeros(0) for k, v in steps.items()}
    return pd.DataFrame(rows), step_pnls, traces


def _episode_row(run: _Run, i: int, t0: int, seed: int, ep: dict[str, Any], step_pnl: np.ndarray,
                 keys: Sequence[str], wall_s: float) -> dict[str, Any]:
    """One row of ``episodes.csv``: who, which episode, the env's metrics, drawdown, wall time."""
    row: dict[str, Any] = {"policy": run.policy, "model": run.model, "episode": i, "start_ts": t0,
                           "seed": seed}
    row.update({k: ep.get(k, float("nan")) for k in keys})
    row.update({k: v for k, v in ep.items() if k not in row and np.isscalar(v)})
    # Mark-to-mid PnL before the end-of-episode taker liquidation (pnl = this - liquidation_cost).
    row["pnl_before_liquidation"] = float(ep.get("realised_pnl", np.nan)) + float(ep.get("unrealised_pnl", np.nan))
    row["max_drawdown"] = utils.max_drawdown(np.cumsum(step_pnl))
    row["wall_s"] = wall_s
    return row


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


def _pnl_stats(pnl: np.ndarray, steps: np.ndarray, ppy_ep: float, ppy_step: float, seed: int
               ) -> dict[str, float]:
    """The PnL columns of a summary row: moments, bootstrap CI, win rate, Sharpe/Sortino."""
    lo, hi = utils.bootstrap_ci(pnl, seed=seed)
    return {
        "pnl_mean": float(pnl.mean()),
        "pnl_std": float(pnl.std(ddof=1)) if pnl.size > 1 else float("nan"),
        "pnl_ci95_low": lo,
        "pnl_ci95_high": hi,
        "pnl_median": float(np.median(pnl)),
        "pnl_min": float(pnl.min()),
        "pnl_max": float(pnl.max()),
        "win_rate": float(np.mean(pnl > 0)),
        "sharpe_episode": utils.sharpe_ratio(pnl),
        "sortino_episode": utils.sortino_ratio(pnl),
        "sharpe_episode_ann": utils.sharpe_ratio(pnl, ppy_ep),
        "sortino_episode_ann": utils.sortino_ratio(pnl, ppy_ep),
        "sharpe_step_ann": utils.sharpe_ratio(steps, ppy_step),
        "sortino_step_ann": utils.sortino_ratio(steps, ppy_step),
    }


def _market_stats(g: pd.DataFrame, markouts: Sequence[str]) -> dict[str, float]:
    """The market columns of a summary row; fill-based ratios weighted by each episode's fills."""
    fills = g["n_fills"]
    row = {
        "max_drawdown_mean": float(g["max_drawdown"].mean()),
        "max_drawdown_max": float(g["max_drawdown"].max()),
        "fill_ratio": float(g["fill_ratio"].mean()),
        "n_fills_mean": float(fills.mean()),
        "adverse_selection_ratio": _weighted(g["adverse_selection_ratio"], fills),
    }
    row.update({col: _weighted(g[col], fills) for col in markouts})
    row.update({
        "realised_spread_bps": _weighted(g["realised_spread_bps"], fills),
        "spread_capture_mean": float(g["spread_capture"].mean()),
        "inventory_pnl_mean": float(g["inventory_pnl"].mean()),
        "maker_volume_ratio": _weighted(g["maker_volume_ratio"], g["maker_volume"] + g["taker_volume"]),
        "maker_volume_mean": float(g["maker_volume"].mean()),
        "taker_volume_mean": float(g["taker_volume"].mean()),
        "fees_mean": float(g["fees"].mean()),
        "inventory_mean": float(g["inventory_mean"].mean()),
        "inventory_abs_mean": float(g["inventory_abs_mean"].mean()),
        "inventory_max_abs": float(g["inventory_max_abs"].max()),
        "liquidation_cost_mean": float(g["liquidation_cost"].mean()),
        "pnl_before_liquidation_mean": _mean_or_nan(g, "pnl_before_liquidation"),
        "quoted_bid_share": _mean_or_nan(g, "quoted_bid_share"),
        "quoted_ask_share": _mean_or_nan(g, "quoted_ask_share"),
    })
    return row


def _mean_or_nan(g: pd.DataFrame, col: str) -> float:
    return float(g[col].mean()) if col in g else float("nan")


def _model_grid(g: pd.DataFrame) -> np.ndarray:
    """The PnL of one policy's rows as a ``(n_models, n_episodes)`` grid (one row without a ``model`` column)."""
    if "model" not in g or "episode" not in g:
        return np.asarray(g["pnl"], dtype=np.float64)[None, :]
    models = g["model"].fillna("").astype(str)
    grid = g.assign(_m=models).pivot_table(index="_m", columns="episode", values="pnl", aggfunc="mean")
    return grid.to_numpy(dtype=np.float64)


def summarise(
    episodes: pd.DataFrame,
    step_pnls: dict[str, np.ndarray],
    env_config: Any,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per policy with the metrics of ``summary_columns`` (formulas in the README section "Research workflow").

    The agent's row pools every model (seed) and episode: ``n_episodes`` counts the
    episodes, ``n_models`` the models, the moments are over all model-episode values, and
    with several models the CI is ``paired_stats.bootstrap_mean_ci`` (episodes and models
    resampled). A policy of one model keeps ``utils.bootstrap_ci`` over its episodes.

    Annualisation: per-episode ratios use ``365·86400 / episode_length_s`` periods a year,
    per-step ratios ``365·86400·1000 / decision_interval_ms``. Markouts (one column per
    configured horizon) and the adverse-selection ratio are averaged over episodes weighted
    by their number of fills.

    Args:
        episodes: from ``evaluate_policies``.
        step_pnls: from ``evaluate_policies``.
        env_config: the evaluation ``EnvConfig`` (episode length and decision interval for
            the annualisation, markout horizons for the markout columns).
        seed: seed of the bootstrap.

    Returns:
        The summary DataFrame.
    """
    episode_length_s = float(utils.get_flat(env_config, "episode_length_s"))
    decision_interval_ms = float(utils.get_flat(env_config, "decision_interval_ms"))
    horizons = _horizons(env_config)
    ppy_ep = utils.periods_per_year(episode_length_s)
    ppy_step = utils.periods_per_year(decision_interval_ms / 1000.0)
    rows = []
    for name, g in episodes.groupby("policy", sort=False):
        grid = _model_grid(g)
        row: dict[str, Any] = {"policy": name, "n_episodes": grid.shape[1], "n_models": grid.shape[0]}
        row.update(_pnl_stats(np.asarray(g["pnl"], dtype=np.float64), step_pnls.get(name, np.zeros(0)),
                              ppy_ep, ppy_step, seed))
        if grid.shape[0] > 1:
            # Several models (seeds): the CI also resamples the models (paired_stats docstring).
            row["pnl_ci95_low"], row["pnl_ci95_high"] = paired_stats.bootstrap_mean_ci(grid, seed=seed)
        row.update(_market_stats(g, markout_columns(horizons)))
        row["annualisation"] = (f"episode: x sqrt({ppy_ep:g}) ({episode_length_s:g} s episodes, "
                                f"365-day year); step: x sqrt({ppy_step:g})")
        rows.append(row)
    return pd.DataFrame(rows, columns=list(summary_columns(horizons)))


def format_table(summary: pd.DataFrame) -> str:
    """The terminal table: the headline columns of the summary, one row per policy.

    Sharpe and Sortino are shown *per episode* (not annualised): an annualised ratio of
    5-minute episodes multiplies by ``sqrt(105120)`` ~ 324 and mostly shows that factor; the
    annualised figures stay in ``evaluation_summary.csv`` (``*_ann``, formulas in
    the README section "Research workflow").
    """
    # One markout column: 1 s when it is a configured horizon, else the shortest one.
    markouts = [c for c in summary.columns if c.startswith("markout_bps_")]
    mk = ["markout_bps_1s" if "markout_bps_1s" in markouts else markouts[0]] if markouts else []
    cols = ["policy", "pnl_mean", "pnl_before_liquidation_mean", "pnl_std", "pnl_ci95_low", "pnl_ci95_high",
            "sharpe_episode", "sortino_episode", "max_drawdown_max", "fill_ratio",
            "adverse_selection_ratio", *mk, "maker_volume_ratio", "fees_mean",
            "inventory_abs_mean"]
    cols += ["flags"] if "flags" in summary and any(isinstance(f, str) and f for f in summary["flags"]) else []
    short = {"pnl_before_liquidation_mean": "pnl_noliq","pnl_ci95_low": "ci95_lo", "pnl_ci95_high": "ci95_hi", "sharpe_episode": "sharpe/ep",
             "sortino_episode": "sortino/ep", "max_drawdown_max": "max_dd",
             "adverse_selection_ratio": "adv_sel", "maker_volume_ratio": "maker_ratio",
             "inventory_abs_mean": "|inv|", "fees_mean": "fees"}
    short.update({c: c.replace("markout_bps_", "mkout_") for c in mk})
    table = summary[cols].rename(columns=short)
    return table.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def table_footnote(summary: pd.DataFrame) -> str:
    """The lines printed under ``format_table``: what the columns mean and the annualisation."""
    ann = summary["annualisation"].iloc[0] if len(summary) else ""
    return ("pnl, ci95, max_dd, fees in quote currency per episode (pnl after the end-of-episode liquidation, "
            "pnl_noliq marked to mid before it); sharpe/ep, sortino/ep = mean/std of episode PnL (not annualised)\n"
            f"annualisation of the *_ann Sharpe/Sortino columns of evaluation_summary.csv: {ann}")


def paired_differences(episodes: pd.DataFrame, metric: str = "pnl", seed: int = 0) -> pd.DataFrame:
    """Agent − each baseline of ``metric`` on the same episodes, with the columns ``PAIRED_COLUMNS``.

    ``paired_stats.paired_table`` over the ``model`` column (two-level bootstrap 95 % CI over
    episodes and models, sign and Wilcoxon p-values of the model-averaged per-episode
    differences). Empty without agent rows; nan statistics with fewer than 2 episodes.

    Args:
        episodes: from ``evaluate_policies``.
        metric: the per-episode column compared.
        seed: seed of the bootstrap.

    Returns:
        One row per baseline.
    """
    ag = episodes[episodes["policy"] == AGENT] if len(episodes) else episodes
    if ag.empty or not (episodes["policy"] != AGENT).any():
        return pd.DataFrame(columns=list(PAIRED_COLUMNS))
    n_ep = int(ag["episode"].nunique())
    if n_ep < 2:
        names = list(dict.fromkeys(episodes.loc[episodes["policy"] != AGENT, "policy"]))
        nan = float("nan")
        rows = [{"metric": metric, "baseline": n, "diff_mean": nan, "diff_ci_lo": nan, "diff_ci_hi": nan,
                 "sign_p": nan, "wilcoxon_p": nan, "n_episodes": n_ep,
                 "n_models": int(ag["model"].nunique()), "share_positive": nan} for n in names]
        return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))
    eps = episodes.assign(model=episodes["model"].fillna("").astype(str))
    table = paired_stats.paired_table(eps, agent=AGENT, metric=metric, model_col="model", seed=seed)
    return table.assign(metric=metric)[list(PAIRED_COLUMNS)]


def format_paired_table(paired: pd.DataFrame) -> str:
    """The terminal table of ``paired_differences`` and the line that says what it is."""
    if paired.empty:
        return "paired differences: no agent or no baseline evaluated"
    r = paired.iloc[0]
    head = (f"paired difference agent - baseline, {r['metric']} per episode on the same "
            f"{int(r['n_episodes'])} episodes, {int(r['n_models'])} model(s); 95 % bootstrap CI "
            "over episodes and models, two-sided sign and Wilcoxon p:")
    if int(r["n_episodes"]) < 2:
        return head + "\n  (needs at least 2 episodes)"
    table = paired[["baseline", "diff_mean", "diff_ci_lo", "diff_ci_hi", "sign_p", "wilcoxon_p",
                    "share_positive"]].rename(columns={
        "diff_mean": "diff", "diff_ci_lo": "ci95_lo", "diff_ci_hi": "ci95_hi",
        "share_positive": "agent_better"})
    return head + "\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def format_report(result: EvaluationResult) -> str:
    """What both scripts print after an evaluation: the summary table, its footnote, the paired table, warnings."""
    parts = [format_table(result.summary), table_footnote(result.summary), "",
             format_paired_table(result.paired)]
    parts += [f"warning: {w}" for w in result.meta.get("warnings", [])]
    return "\n".join(parts)


class EvaluationResult(NamedTuple):
    """What ``run_evaluation`` returns (and wrote)."""

    summary: pd.DataFrame
    """One row per policy (``evaluation_summary.csv``)."""
    episodes: pd.DataFrame
    """One row per model, policy and episode (``episodes.csv``)."""
    paired: pd.DataFrame
    """Agent − each baseline (``paired_differences.csv``)."""
    meta: dict[str, Any]
    """``evaluation_meta.json``."""


def run_evaluation(
    policies: dict[str, Any],
    env_config: Any,
    out_dir: str | os.PathLike,
    n_episodes: int = 10,
    seed: int = 0,
    visualize_first: bool = False,
    progress: bool = True,
    extra_meta: dict[str, Any] | None = None,
    env_cache: dict[str, Any] | None = None,
    models: dict[str, Any] | None = None,
    replay_episodes: int | None = REPLAY_EPISODES,
) -> EvaluationResult:
    """Evaluate ``models`` and ``policies`` on the same episodes and write ``out_dir``.

    Files: ``evaluation_summary.csv``, ``episodes.csv``, ``paired_differences.csv``,
    ``evaluation_comparison.png``, ``evaluation_meta.json`` and, with ``visualize_first``,
    ``episode_first_<policy>.png`` for every policy (and model), and ``replay.parquet``: the
    per-step book, quotes, queue positions and fills of the first ``replay_episodes`` episodes
    of every policy and model, for the dashboard (``replay_record``). When the evaluation range
    fits fewer non-overlapping episodes than ``n_episodes``, a warning is logged and stored
    under ``warnings`` in the meta file (``episode_fit_warning``).

    Args:
        policies: ``{name: policy}`` run once each (the baselines; see ``evaluate_policies``).
        env_config: the evaluation ``EnvConfig``.
        out_dir: the folder to write.
        n_episodes: episodes per model and policy.
        seed: seed of the start times, env resets and bootstraps.
        visualize_first: draw each policy's first episode.
        progress: show a progress bar.
        extra_meta: more entries of ``evaluation_meta.json``.
        env_cache: envs by action mode, kept open (closed here when ``None``).
        models: ``{model name: AgentPolicy}`` (policy ``"agent"``).
        replay_episodes: episodes per policy and model in ``replay.parquet`` (``None``: all;
            0: no file).

    Returns:
        An ``EvaluationResult``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = {} if env_cache is None else env_cache
    try:
        mode = utils.get_flat(env_config, "action_mode")
        if mode not in cache:
            cache[mode] = make_env(env_config)
        n_fit, warn = episode_fit_warning(cache[mode], n_episodes)
        span_s = float(cache[mode].range_end_ts - cache[mode].range_start_ts) / 1000.0
        if warn:
            logger.warning("%s", warn)
        with replay_record.ReplayRecorder(out / replay_record.REPLAY_FILE, REPLAY_LEVELS, replay_episodes,
                                          _horizons(env_config)) as replay:
            episodes, step_pnls, traces = evaluate_policies(
                policies, env_config, n_episodes, seed, trace_first=visualize_first, progress=progress,
                env_cache=cache, models=models, replay=replay if replay_episodes != 0 else None,
            )
    finally:
        if env_cache is None:
            for env in cache.values():
                env.close()
    summary = summarise(episodes, step_pnls, env_config, seed=seed)
    summary, flags, degenerate = evaluation_checks.check(
        summary, episodes, n_episodes, n_fit, span_s, float(utils.get_flat(env_config, "episode_length_s")),
        (extra_meta or {}).get("calibration"))
    paired = evaluation_checks.blank_paired(paired_differences(episodes, seed=seed), flags)
    utils.atomic_write_text(out / "evaluation_summary.csv", summary.to_csv(index=False))
    utils.atomic_write_text(out / "episodes.csv", episodes.to_csv(index=False))
    utils.atomic_write_text(out / "paired_differences.csv", paired.to_csv(index=False))
    _draw(out, summary, episodes, paired, traces, env_config)
    meta = {
        "env_config": utils.dataclass_to_dict(env_config),
        "policies": list(dict.fromkeys(episodes["policy"])),
        "models": list(models or {}),
        "n_episodes": n_episodes,
        "episodes_that_fit": n_fit,
        "warnings": ([warn] if warn else []) + degenerate,
        "flags": flags,
        "seed": seed,
        "start_ts": sorted(set(int(v) for v in episodes["start_ts"])),
        "agent_pnl_mean_by_model": _pnl_by_model(episodes),
        "wall_s": time.perf_counter() - t0,
        **(extra_meta or {}),
    }
    utils.atomic_write_json(out / "evaluation_meta.json", meta)
    return EvaluationResult(summary, episodes, paired, meta)


def _pnl_by_model(episodes: pd.DataFrame) -> dict[str, float]:
    ag = episodes[episodes["policy"] == AGENT]
    return {str(k): float(v) for k, v in ag.groupby("model", sort=False)["pnl"].mean().items()}


def _draw(out: Path, summary: pd.DataFrame, episodes: pd.DataFrame, paired: pd.DataFrame,
          traces: dict[str, dict[str, Any]], env_config: Any) -> None:
    """The comparison figure and the first-episode figures."""
    plots.plot_evaluation_comparison(summary, episodes, out / "evaluation_comparison.png",
                                     markout_columns(_horizons(env_config)), paired=paired)
    where = utils.get_flat(env_config, "symbol") or _data_name(env_config)
    for name, trace in traces.items():
        plots.plot_episode(
            trace, out / f"episode_first_{name}.png",
            title=(f"{name} — first evaluation episode, {where}, "
                   f"start_ts={trace['ts'][0] if trace['ts'] else '?'}"),
        )


def _data_name(env_config: Any) -> str:
    d = utils.get_flat(env_config, "data_path")
    first = os.fspath(d).split(os.pathsep)[0] if isinstance(d, str | os.PathLike) else d[0]
    return Path(first).name
