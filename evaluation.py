"""Run policies on the very same episodes and summarise them: the evaluation both scripts use.

One job: run every policy (the PPO agent and each baseline) on the same episode start times
of a recording and turn the env's episode metrics into per-episode rows, a per-policy
summary, comparison plots and (optionally) a figure of each policy's first episode. The
agent acts with the normalisation statistics it was saved with (``PPOAgent.predict`` never
updates them). ``evaluate.py`` is the command line on top; ``train.py`` calls this module
for its periodic and final held-out evaluations.

Public names:

- ``EPISODE_KEYS``, ``markout_columns``, ``episode_columns``, ``summary_columns``: the
  columns, markouts derived from the configured horizons with ``utils.horizon_label``.
- ``AgentPolicy``: wraps a ``PPOAgent`` in the ``baselines.Policy`` interface.
- ``build_policies``: the agent and the requested baselines (AS/GLFT intensity fitted on
  the training data).
- ``episode_start_times``: the seeded episode start times shared by every policy.
- ``run_episode``: one episode of one policy, its metrics and (optionally) its trace.
- ``evaluate_policies``: every policy on the same start times → ``episodes`` DataFrame.
- ``summarise``: one row per policy (formulas in the README section "Research workflow").
- ``format_table`` / ``table_footnote``: the terminal table.
- ``run_evaluation``: all of the above, writing the output folder.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import plots
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
    "policy", "n_episodes", "pnl_mean", "pnl_std", "pnl_ci95_low", "pnl_ci95_high",
    "pnl_median", "pnl_min", "pnl_max", "win_rate", "sharpe_episode", "sortino_episode",
    "sharpe_episode_ann", "sortino_episode_ann",
    "sharpe_step_ann", "sortino_step_ann", "max_drawdown_mean", "max_drawdown_max",
    "fill_ratio", "n_fills_mean", "adverse_selection_ratio",
)
_SUMMARY_TAIL: tuple[str, ...] = (
    "realised_spread_bps",
    "spread_capture_mean", "inventory_pnl_mean", "maker_volume_ratio", "maker_volume_mean",
    "taker_volume_mean", "fees_mean", "inventory_mean", "inventory_abs_mean",
    "inventory_max_abs", "liquidation_cost_mean", "annualisation",
)


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

    >>> summary_columns([1000])[21:23]
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
        return None
    logger.info("AS/GLFT intensity fit: A=%.4g /s, k=%.4g /tick (r2 %.2f, %d orders)",
                fit.A, fit.k, fit.r2, fit.n_orders)
    return fit


def build_policies(
    agent: Any,
    env_config: Any,
    baseline_names: Sequence[str] | None,
    seed: int,
    env_cache: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"agent": AgentPolicy, <baseline>: policy, ...}`` for the requested baselines.

    The baselines quote ``[bid_offset, ask_offset]`` ticks, so they are built for (and later
    run in) the ``continuous`` action mode of the same env config. AS and GLFT need the
    order-arrival intensity ``lambda(delta) = A exp(-k delta)``: it is fitted with
    ``baselines.calibrate_from_file`` on ``calibration`` (``{"data_path", "symbol",
    "time_range"}``: the *training* part of the data, so that the baselines see no more of
    the future than the agent did); if the fit fails, AS/GLFT fall back to A = k = 1 per
    tick with a warning.

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
    import baselines as bl

    policies: dict[str, Any] = {}
    if agent is not None:
        policies["agent"] = AgentPolicy(agent, utils.get_flat(env_config, "action_mode"))
    if baseline_names is not None and not baseline_names:
        if not policies:
            raise utils.CliError("nothing to evaluate: give --model_path or at least one baseline")
        return policies
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
    policies.update({n: available[n] for n in names})
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


def _opt_float(v: Any) -> float:
    return float("nan") if v is None else float(v)


_TRACE_KEYS = ("ts", "mid", "best_bid", "best_ask", "quote_bid", "quote_ask", "inventory", "pnl")


def run_episode(
    env: Any, policy: Any, start_ts: int, seed: int, record_trace: bool = False
) -> tuple[dict[str, Any], np.ndarray, dict[str, Any] | None]:
    """Run one episode of ``policy`` from ``start_ts``.

    Args:
        env: a ``MarketMakingEnv`` whose action mode matches ``policy.action_mode``.
        policy: any object with ``reset()`` and ``act(obs, info)``.
        start_ts: the episode start (exchange ms).
        seed: passed to ``env.reset`` (fixes any randomness inside the env).
        record_trace: keep the per-step market and quotes for ``plots.plot_episode``, with
            the env's fills and their markouts (``info["episode"]["fills"]``).

    Returns:
        ``(episode_metrics, step_pnl, trace)``: the env's ``info["episode"]`` dict, the PnL of
        every step (differences of the cumulative ``info["pnl"]``), and the trace or ``None``.
    """
    obs, info = env.reset(seed=seed, options={"start_ts": int(start_ts)})
    policy.reset()
    pnls = [float(info.get("pnl", 0.0))]
    trace: dict[str, Any] | None = None
    if record_trace:
        trace = {k: [] for k in _TRACE_KEYS}
        _record(trace, info)
    while True:
        action = policy.act(obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        pnls.append(float(info["pnl"]))
        if trace is not None:
            _record(trace, info)
        if terminated or truncated:
            break
    episode = dict(info["episode"])
    if trace is not None:
        # The env's record of every fill with its markouts: computed once, by the env.
        trace["fills"] = [dict(f) for f in episode["fills"]]
        trace["markout_horizons_ms"] = list(episode["markout_horizons_ms"])
    return episode, np.diff(np.asarray(pnls, dtype=np.float64)), trace


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


def evaluate_policies(
    policies: dict[str, Any],
    env_config: Any,
    n_episodes: int,
    seed: int,
    trace_first: bool = False,
    progress: bool = True,
    env_cache: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Run every policy on the same ``n_episodes`` start times.

    Args:
        policies: ``{name: policy}``; each policy's ``action_mode`` selects the env it runs in
            (same data, range and settings otherwise).
        env_config: the ``EnvConfig`` (data, symbol, time range, costs).
        n_episodes: number of episodes per policy.
        seed: seeds the start times (episode ``i`` uses ``seed + i``).
        trace_first: also return the trace of each policy's first episode.
        progress: show a tqdm bar.
        env_cache: keep the envs (one per action mode) here between calls instead of
            closing them (train.py's periodic evaluation).

    Returns:
        ``(episodes, step_pnls, traces)``: one row per policy and episode (the env metrics of
        ``episode_columns`` first), the per-step PnL of each policy (all episodes
        concatenated), and ``{name: trace}`` of the first episodes.
    """
    from tqdm import tqdm

    envs: dict[str, Any] = {} if env_cache is None else env_cache

    def env_for(mode: str) -> Any:
        if mode not in envs:
            envs[mode] = make_env(utils.replace_flat(env_config, action_mode=mode))
        return envs[mode]

    default_mode = utils.get_flat(env_config, "action_mode")
    keys = episode_columns(_horizons(env_config))
    starts = episode_start_times(env_for(default_mode), n_episodes, seed)
    rows: list[dict[str, Any]] = []
    step_pnls: dict[str, np.ndarray] = {}
    traces: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(policies) * n_episodes, desc="evaluate", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        for name, policy in policies.items():
            env = env_for(getattr(policy, "action_mode", default_mode))
            per_step = []
            for i, t0 in enumerate(starts):
                t_start = time.perf_counter()
                ep, steps, trace = run_episode(env, policy, t0, seed + i, trace_first and i == 0)
                if trace is not None:
                    traces[name] = trace
                per_step.append(steps)
                row: dict[str, Any] = {"policy": name, "episode": i, "start_ts": t0, "seed": seed + i}
                row.update({k: ep.get(k, float("nan")) for k in keys})
                row.update({k: v for k, v in ep.items() if k not in row and np.isscalar(v)})
                row["max_drawdown"] = utils.max_drawdown(np.cumsum(steps))
                row["wall_s"] = time.perf_counter() - t_start
                rows.append(row)
                bar.set_postfix(policy=name, pnl=f"{float(ep.get('pnl', float('nan'))):.2f}")
                bar.update(1)
            step_pnls[name] = np.concatenate(per_step) if per_step else np.zeros(0)
    finally:
        bar.close()
        if env_cache is None:
            for env in envs.values():
                env.close()
    return pd.DataFrame(rows), step_pnls, traces


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
    })
    return row


def summarise(
    episodes: pd.DataFrame,
    step_pnls: dict[str, np.ndarray],
    env_config: Any,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per policy with the metrics of ``summary_columns`` (formulas in the README section "Research workflow").

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
        row: dict[str, Any] = {"policy": name, "n_episodes": len(g)}
        row.update(_pnl_stats(np.asarray(g["pnl"], dtype=np.float64), step_pnls.get(name, np.zeros(0)),
                              ppy_ep, ppy_step, seed))
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
    cols = ["policy", "pnl_mean", "pnl_std", "pnl_ci95_low", "pnl_ci95_high",
            "sharpe_episode", "sortino_episode", "max_drawdown_max", "fill_ratio",
            "adverse_selection_ratio", *mk, "maker_volume_ratio", "fees_mean",
            "inventory_abs_mean"]
    short = {"pnl_ci95_low": "ci95_lo", "pnl_ci95_high": "ci95_hi", "sharpe_episode": "sharpe/ep",
             "sortino_episode": "sortino/ep", "max_drawdown_max": "max_dd",
             "adverse_selection_ratio": "adv_sel", "maker_volume_ratio": "maker_ratio",
             "inventory_abs_mean": "|inv|", "fees_mean": "fees"}
    short.update({c: c.replace("markout_bps_", "mkout_") for c in mk})
    table = summary[cols].rename(columns=short)
    return table.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def table_footnote(summary: pd.DataFrame) -> str:
    """The lines printed under ``format_table``: what the columns mean and the annualisation."""
    ann = summary["annualisation"].iloc[0] if len(summary) else ""
    return ("pnl, ci95, max_dd, fees in quote currency per episode; sharpe/ep, sortino/ep = "
            "mean/std of episode PnL (not annualised)\n"
            f"annualisation of the *_ann Sharpe/Sortino columns of evaluation_summary.csv: {ann}")


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
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate ``policies`` and write ``out_dir`` (summary, episodes, plots, meta).

    Files: ``evaluation_summary.csv``, ``episodes.csv``, ``evaluation_comparison.png``,
    ``evaluation_meta.json`` and, with ``visualize_first``, ``episode_first_<policy>.png``
    for every policy.

    Returns:
        ``(summary, episodes)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = {} if env_cache is None else env_cache
    try:
        episodes, step_pnls, traces = evaluate_policies(
            policies, env_config, n_episodes, seed, trace_first=visualize_first, progress=progress,
            env_cache=cache,
        )
    finally:
        if env_cache is None:
            for env in cache.values():
                env.close()
    summary = summarise(episodes, step_pnls, env_config, seed=seed)
    utils.atomic_write_text(out / "evaluation_summary.csv", summary.to_csv(index=False))
    utils.atomic_write_text(out / "episodes.csv", episodes.to_csv(index=False))
    plots.plot_evaluation_comparison(summary, episodes, out / "evaluation_comparison.png",
                                     markout_columns(_horizons(env_config)))
    where = utils.get_flat(env_config, "symbol") or _data_name(env_config)
    for name, trace in traces.items():
        plots.plot_episode(
            trace, out / f"episode_first_{name}.png",
            title=(f"{name} — first evaluation episode, {where}, "
                   f"start_ts={trace['ts'][0] if trace['ts'] else '?'}"),
        )
    meta = {
        "env_config": utils.dataclass_to_dict(env_config),
        "policies": list(policies),
        "n_episodes": n_episodes,
        "seed": seed,
        "start_ts": sorted(set(int(v) for v in episodes["start_ts"])),
        "wall_s": time.perf_counter() - t0,
        **(extra_meta or {}),
    }
    utils.atomic_write_json(out / "evaluation_meta.json", meta)
    return summary, episodes


def _data_name(env_config: Any) -> str:
    d = utils.get_flat(env_config, "data_path")
    first = os.fspath(d).split(os.pathsep)[0] if isinstance(d, str | os.PathLike) else d[0]
    return Path(first).name
