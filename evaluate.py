"""Evaluate a trained agent against the baseline market makers on the very same episodes.

One job: run every policy (the PPO agent and each baseline) on the same episode start times
of a recording, with the agent's normalisation statistics frozen, and write the per-episode
metrics, a per-policy summary, comparison plots and (optionally) a multi-panel figure of the
first episode.

Public names (``train.py`` reuses them for its final evaluation):

- ``AgentPolicy``: wraps a ``PPOAgent`` in the ``baselines.Policy`` interface.
- ``resolve_data_paths``: expand files/globs into existing files (clear error otherwise).
- ``load_model``: a saved agent plus the env config it was trained with.
- ``episode_start_times``: the seeded episode start times shared by every policy.
- ``run_episode``: one episode of one policy, its metrics and (optionally) its trace.
- ``evaluate_policies``: every policy on the same start times → ``episodes`` DataFrame.
- ``summarise``: one row per policy (formulas in the README section "Research workflow").
- ``run_evaluation``: all of the above, writing the output folder.
- ``main``: the CLI (``python evaluate.py --help``).

Example::

    python evaluate.py --model_path results/<run>/models/final_model
        --data_path ../shared/data/bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl
        --symbol ETHUSDT --visualize_first
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Hide TensorFlow's C++ INFO/WARNING logs; set before any module imports TensorFlow. A few
# start-up lines that TensorFlow prints before its logging is initialised still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402

import utils  # noqa: E402

logger = logging.getLogger(__name__)

MARKOUT_HORIZONS_MS: tuple[int, ...] = (100, 1_000, 5_000, 30_000)
"""Markout horizons reported by the env's episode metrics (``markout_bps_<h>``)."""

ENV_CONFIG_FILE = "env_config.json"
"""Written by train.py inside every saved model folder: the EnvConfig the agent was trained
with, so that evaluation rebuilds the same observation and action spaces."""

EPISODE_KEYS: tuple[str, ...] = (
    "pnl", "realised_pnl", "unrealised_pnl", "fees", "spread_capture", "inventory_pnl",
    "maker_volume", "taker_volume", "maker_volume_ratio", "fill_ratio", "n_fills",
    "adverse_selection_ratio", "markout_bps_100ms", "markout_bps_1s", "markout_bps_5s",
    "markout_bps_30s", "realised_spread_bps", "inventory_mean", "inventory_abs_mean",
    "inventory_max_abs", "orders_placed", "orders_cancelled", "liquidation_cost",
    "length_steps",
)
"""Keys of ``info["episode"]`` guaranteed by the env contract (docs/CONTRACTS.md)."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "policy", "n_episodes", "pnl_mean", "pnl_std", "pnl_ci95_low", "pnl_ci95_high",
    "pnl_median", "pnl_min", "pnl_max", "win_rate", "sharpe_episode", "sortino_episode",
    "sharpe_episode_ann", "sortino_episode_ann",
    "sharpe_step_ann", "sortino_step_ann", "max_drawdown_mean", "max_drawdown_max",
    "fill_ratio", "n_fills_mean", "adverse_selection_ratio", "markout_bps_100ms",
    "markout_bps_1s", "markout_bps_5s", "markout_bps_30s", "realised_spread_bps",
    "spread_capture_mean", "inventory_pnl_mean", "maker_volume_ratio", "maker_volume_mean",
    "taker_volume_mean", "fees_mean", "inventory_mean", "inventory_abs_mean",
    "inventory_max_abs", "liquidation_cost_mean", "annualisation",
)
"""Columns of ``evaluation_summary.csv``, in order (documented in the README section "Research workflow")."""


# --------------------------------------------------------------------------- policies


class AgentPolicy:
    """The PPO agent behind the ``baselines.Policy`` interface (deterministic actions).

    The agent's observation normaliser is frozen on construction (``freeze=True``):
    evaluation never updates statistics learned in training (``PPOAgent.predict`` never
    updates them either; freezing guards other agents).
    """

    def __init__(self, agent: Any, action_mode: str, deterministic: bool = True,
                 freeze: bool = True) -> None:
        self.agent = agent
        self.action_mode = action_mode
        self.deterministic = deterministic
        if freeze:  # train.py's periodic evaluation passes False: the run goes on learning
            _freeze_normaliser(agent)
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


def _freeze_normaliser(agent: Any) -> None:
    """Freeze every ``RunningMeanStd`` the agent holds (directly or in a dict/normaliser)."""
    if hasattr(agent, "set_training_mode"):
        agent.set_training_mode(False)
    seen: list[Any] = []
    for name in ("obs_rms", "obs_normalizer", "normalizer", "obs_norm", "ret_rms", "reward_rms"):
        seen.append(getattr(agent, name, None))
    while seen:
        obj = seen.pop()
        if isinstance(obj, utils.RunningMeanStd):
            obj.frozen = True
        elif isinstance(obj, dict):
            seen.extend(obj.values())
        elif obj is not None and hasattr(obj, "frozen"):
            obj.frozen = True
        elif obj is not None and hasattr(obj, "__dict__"):
            seen.extend(v for v in vars(obj).values() if isinstance(v, utils.RunningMeanStd | dict))


# --------------------------------------------------------------------------- inputs


def resolve_data_paths(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a file, several files or glob patterns into existing files, in sorted order per glob.

    Args:
        spec: one path/pattern or a sequence of them.

    Returns:
        The files, de-duplicated, in the order given.

    Raises:
        utils.CliError: for a path that does not exist or a glob that matches nothing.
    """
    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    out: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if glob.has_magic(s):
            matches = sorted(glob.glob(s))
            if not matches:
                raise utils.CliError(f"--data_path pattern {s!r} matches no file")
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(s)]
        for p in paths:
            if not p.is_file():
                raise utils.CliError(f"data file not found: {p}")
            if p not in out:
                out.append(p)
    if not out:
        raise utils.CliError("no data file given")
    return out


def env_data_path(paths: Sequence[Path]) -> str | tuple[str, ...]:
    """The ``EnvConfig.data_path`` value for a list of files (a str for one file)."""
    return str(paths[0]) if len(paths) == 1 else tuple(str(p) for p in paths)


def parse_range(text: Sequence[float] | None, flag: str) -> tuple[float, float] | None:
    """Validate a ``(start, end)`` fraction pair from the command line.

    >>> parse_range([0.7, 1.0], "--eval_range")
    (0.7, 1.0)
    """
    if text is None:
        return None
    lo, hi = (float(v) for v in text)
    if not (0.0 <= lo < hi <= 1.0):
        raise utils.CliError(f"{flag} must satisfy 0 <= start < end <= 1, got {lo} {hi}")
    return (lo, hi)


def load_model(model_path: str | os.PathLike) -> tuple[Any, dict[str, Any] | None]:
    """Load a saved agent and the env config saved beside it.

    Args:
        model_path: a folder written by ``PPOAgent.save`` (e.g. ``results/<run>/models/final_model``).

    Returns:
        ``(agent, env_config_dict)``; the dict is ``None`` when the folder has no
        ``env_config.json`` (then the current EnvConfig defaults are used, with a warning).

    Raises:
        utils.CliError: when the folder does not exist or cannot be loaded.
    """
    path = Path(model_path)
    if not path.is_dir():
        raise utils.CliError(f"model folder not found: {path}")
    from ppo_agent import PPOAgent

    try:
        agent = PPOAgent.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise utils.CliError(f"cannot load the model in {path}: {exc}") from exc
    cfg_file = path / ENV_CONFIG_FILE
    env_cfg = orjson.loads(cfg_file.read_bytes()) if cfg_file.is_file() else None
    if env_cfg is None:
        logger.warning("%s has no %s: using the default EnvConfig", path, ENV_CONFIG_FILE)
    return agent, env_cfg


# --------------------------------------------------------------------------- episodes


def make_env(env_config: Any) -> Any:
    """Build a ``MarketMakingEnv`` from an ``EnvConfig``."""
    from event_driven_env import MarketMakingEnv

    return MarketMakingEnv(env_config)


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


def run_episode(
    env: Any, policy: Any, start_ts: int, seed: int, record_trace: bool = False
) -> tuple[dict[str, Any], np.ndarray, dict[str, Any] | None]:
    """Run one episode of ``policy`` from ``start_ts``.

    Args:
        env: a ``MarketMakingEnv`` whose action mode matches ``policy.action_mode``.
        policy: any object with ``reset()`` and ``act(obs, info)``.
        start_ts: the episode start (exchange ms).
        seed: passed to ``env.reset`` (fixes any randomness inside the env).
        record_trace: keep the per-step market/quotes/fills for ``utils.plot_episode``.

    Returns:
        ``(episode_metrics, step_pnl, trace)``: the env's ``info["episode"]`` dict, the PnL of
        every step (differences of the cumulative ``info["pnl"]``), and the trace or ``None``.
    """
    obs, info = env.reset(seed=seed, options={"start_ts": int(start_ts)})
    policy.reset()
    pnls = [float(info.get("pnl", 0.0))]
    trace: dict[str, Any] | None = None
    if record_trace:
        trace = {k: [] for k in ("ts", "mid", "best_bid", "best_ask", "quote_bid", "quote_ask",
                                 "inventory", "pnl")}
        trace["fills"] = []
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
    trace["fills"].extend(dict(f) for f in info.get("fills", []) or [])


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
        ``(episodes, step_pnls, traces)``: one row per policy and episode, the per-step PnL
        of each policy (all episodes concatenated), and ``{name: trace}`` of the first episodes.
    """
    from tqdm import tqdm

    envs: dict[str, Any] = {} if env_cache is None else env_cache

    def env_for(mode: str) -> Any:
        if mode not in envs:
            envs[mode] = make_env(dataclasses.replace(env_config, action_mode=mode))
        return envs[mode]

    starts = episode_start_times(env_for(env_config.action_mode), n_episodes, seed)
    rows: list[dict[str, Any]] = []
    step_pnls: dict[str, np.ndarray] = {}
    traces: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(policies) * n_episodes, desc="evaluate", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    try:
        for name, policy in policies.items():
            env = env_for(getattr(policy, "action_mode", env_config.action_mode))
            per_step = []
            for i, t0 in enumerate(starts):
                t_start = time.perf_counter()
                ep, steps, trace = run_episode(env, policy, t0, seed + i, trace_first and i == 0)
                if trace is not None:
                    traces[name] = trace
                per_step.append(steps)
                row: dict[str, Any] = {"policy": name, "episode": i, "start_ts": t0, "seed": seed + i}
                row.update({k: ep.get(k, float("nan")) for k in EPISODE_KEYS})
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


def summarise(
    episodes: pd.DataFrame,
    step_pnls: dict[str, np.ndarray],
    episode_length_s: float,
    decision_interval_ms: float,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per policy with the metrics of ``SUMMARY_COLUMNS`` (formulas in the README section "Research workflow").

    Annualisation: per-episode ratios use ``365·86400 / episode_length_s`` periods a year,
    per-step ratios ``365·86400·1000 / decision_interval_ms``. Markouts and the
    adverse-selection ratio are averaged over episodes weighted by their number of fills.

    Args:
        episodes: from ``evaluate_policies``.
        step_pnls: from ``evaluate_policies``.
        episode_length_s: the episode length (for annualising per-episode ratios).
        decision_interval_ms: the step length (for annualising per-step ratios).
        seed: seed of the bootstrap.

    Returns:
        The summary DataFrame.
    """
    ppy_ep = utils.periods_per_year(episode_length_s)
    ppy_step = utils.periods_per_year(decision_interval_ms / 1000.0)
    rows = []
    for name, g in episodes.groupby("policy", sort=False):
        pnl = np.asarray(g["pnl"], dtype=np.float64)
        lo, hi = utils.bootstrap_ci(pnl, seed=seed)
        steps = step_pnls.get(name, np.zeros(0))
        fills = g["n_fills"]
        row = {
            "policy": name,
            "n_episodes": len(g),
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
            "max_drawdown_mean": float(g["max_drawdown"].mean()),
            "max_drawdown_max": float(g["max_drawdown"].max()),
            "fill_ratio": float(g["fill_ratio"].mean()),
            "n_fills_mean": float(fills.mean()),
            "adverse_selection_ratio": _weighted(g["adverse_selection_ratio"], fills),
            "markout_bps_100ms": _weighted(g["markout_bps_100ms"], fills),
            "markout_bps_1s": _weighted(g["markout_bps_1s"], fills),
            "markout_bps_5s": _weighted(g["markout_bps_5s"], fills),
            "markout_bps_30s": _weighted(g["markout_bps_30s"], fills),
            "realised_spread_bps": _weighted(g["realised_spread_bps"], fills),
            "spread_capture_mean": float(g["spread_capture"].mean()),
            "inventory_pnl_mean": float(g["inventory_pnl"].mean()),
            "maker_volume_ratio": _weighted(g["maker_volume_ratio"],
                                            g["maker_volume"] + g["taker_volume"]),
            "maker_volume_mean": float(g["maker_volume"].mean()),
            "taker_volume_mean": float(g["taker_volume"].mean()),
            "fees_mean": float(g["fees"].mean()),
            "inventory_mean": float(g["inventory_mean"].mean()),
            "inventory_abs_mean": float(g["inventory_abs_mean"].mean()),
            "inventory_max_abs": float(g["inventory_max_abs"].max()),
            "liquidation_cost_mean": float(g["liquidation_cost"].mean()),
            "annualisation": (f"episode: x sqrt({ppy_ep:g}) ({episode_length_s:g} s episodes, "
                              f"365-day year); step: x sqrt({ppy_step:g})"),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def format_table(summary: pd.DataFrame) -> str:
    """The terminal table: the headline columns of the summary, one row per policy.

    Sharpe and Sortino are shown *per episode* (not annualised): an annualised ratio of
    5-minute episodes multiplies by ``sqrt(105120)`` ~ 324 and mostly shows that factor; the
    annualised figures stay in ``evaluation_summary.csv`` (``*_ann``, formulas in
    the README section "Research workflow").
    """
    cols = ["policy", "pnl_mean", "pnl_std", "pnl_ci95_low", "pnl_ci95_high",
            "sharpe_episode", "sortino_episode", "max_drawdown_max", "fill_ratio",
            "adverse_selection_ratio", "markout_bps_1s", "maker_volume_ratio", "fees_mean",
            "inventory_abs_mean"]
    short = {"pnl_ci95_low": "ci95_lo", "pnl_ci95_high": "ci95_hi", "sharpe_episode": "sharpe/ep",
             "sortino_episode": "sortino/ep", "max_drawdown_max": "max_dd",
             "adverse_selection_ratio": "adv_sel", "markout_bps_1s": "mkout_1s",
             "maker_volume_ratio": "maker_ratio", "inventory_abs_mean": "|inv|",
             "fees_mean": "fees"}
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
    summary = summarise(episodes, step_pnls, env_config.episode_length_s,
                        env_config.decision_interval_ms, seed=seed)
    utils.atomic_write_text(out / "evaluation_summary.csv", summary.to_csv(index=False))
    utils.atomic_write_text(out / "episodes.csv", episodes.to_csv(index=False))
    markouts = [f"markout_bps_{utils.horizon_label(h)}" for h in MARKOUT_HORIZONS_MS]
    utils.plot_evaluation_comparison(summary, episodes, out / "evaluation_comparison.png", markouts)
    for name, trace in traces.items():
        utils.plot_episode(
            trace, out / f"episode_first_{name}.png",
            title=(f"{name} — first evaluation episode, {env_config.symbol or _data_name(env_config)}, "
                   f"start_ts={trace['ts'][0] if trace['ts'] else '?'}"),
            horizons_ms=MARKOUT_HORIZONS_MS,
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


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``evaluate.py``."""
    p = utils.OneLineErrorParser(
        prog="evaluate.py",
        description="Evaluate a trained agent and the baselines on the same episodes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model_path", default=None,
                   help="folder of a saved agent (results/<run>/models/final_model or best_model); "
                        "omit to evaluate the baselines only")
    p.add_argument("--data_path", nargs="+", default=None,
                   help="recording(s): one file, several files or a glob; default: the data the "
                        "model was trained on (or the synthetic market without a model)")
    p.add_argument("--symbol", default=None, help="symbol to use in files holding several")
    p.add_argument("--num_episodes", type=int, default=10, help="episodes per policy")
    p.add_argument("--baselines", nargs="*", default=None,
                   help="baselines to run (default: all of them; give no names for none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode start times")
    p.add_argument("--eval_range", nargs=2, type=float, default=None, metavar=("START", "END"),
                   help="time range as fractions of the recording; default: the held-out range "
                        "of the model's training run on its own data, else 0 1")
    p.add_argument("--visualize_first", action="store_true",
                   help="draw the multi-panel figure of each policy's first episode")
    p.add_argument("--out_dir", default="evaluation_results",
                   help="parent folder; results go to <out_dir>/<name>_<timestamp>/")
    p.add_argument("--name", default=None, help="run name (default: the model's run name, or 'baselines')")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def add_env_overrides(p: argparse.ArgumentParser) -> dict[str, str]:
    """Add the EnvConfig flags that override the model's saved env settings.

    For example a shorter ``--episode_length_s`` for a short recording. Settings that change
    the observation or action spaces are refused when a model is given.
    """
    from event_driven_env import EnvConfig

    return utils.add_dataclass_arguments(
        p, EnvConfig, title="environment overrides (EnvConfig; default: the model's training settings)",
        exclude=("data_path", "symbol", "time_range", "seed"))


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
        policies["agent"] = AgentPolicy(agent, env_config.action_mode)
    if baseline_names is not None and not baseline_names:
        if not policies:
            raise utils.CliError("nothing to evaluate: give --model_path or at least one baseline")
        return policies
    cache = {} if env_cache is None else env_cache
    if "continuous" not in cache:
        cache["continuous"] = make_env(dataclasses.replace(env_config, action_mode="continuous"))
    fit = None
    if calibration is not None and baseline_names_need_fit(baseline_names):
        try:
            fit = bl.calibrate_from_file(calibration["data_path"], symbol=calibration.get("symbol"),
                                         time_range=tuple(calibration.get("time_range", (0.0, 1.0))))
            logger.info("AS/GLFT intensity fit: A=%.4g /s, k=%.4g /tick (r2 %.2f, %d orders)",
                        fit.A, fit.k, fit.r2, fit.n_orders)
        except ValueError as exc:
            logger.warning("AS/GLFT intensity fit failed (%s): using A = k = 1 per tick", exc)
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


def resolve_env_config(
    saved: dict[str, Any] | None, args: argparse.Namespace, default_data: Callable[[], Path]
) -> Any:
    """The evaluation ``EnvConfig``: the saved training config with data/symbol/range overridden.

    ``saved`` is the content of a model's ``env_config.json``: ``{"env_config": {...},
    "held_out": {"data_path": ..., "time_range": [a, b]}}``. Without ``--data_path`` the
    held-out data and range of the training run are used; with it, the given files and
    ``--eval_range`` (default: the whole recording, which training never saw).
    """
    from event_driven_env import EnvConfig

    saved = saved or {}
    cfg_dict = saved.get("env_config")
    base = (utils.dataclass_from_dict(EnvConfig, cfg_dict, source="model env_config.json")
            if cfg_dict else EnvConfig())
    held_out = saved.get("held_out") or {}
    eval_range = parse_range(args.eval_range, "--eval_range")
    changes: dict[str, Any] = {}
    if args.data_path:
        changes["data_path"] = env_data_path(resolve_data_paths(args.data_path))
        changes["symbol"] = args.symbol
        changes["time_range"] = eval_range or (0.0, 1.0)
    else:
        if held_out.get("data_path"):
            changes["data_path"] = env_data_path(resolve_data_paths(held_out["data_path"]))
        else:
            changes["data_path"] = str(default_data())
        if args.symbol is not None:
            changes["symbol"] = args.symbol
        hr = held_out.get("time_range")
        changes["time_range"] = eval_range or (tuple(hr) if hr else (0.0, 1.0))
    try:
        return dataclasses.replace(base, **changes)
    except (ValueError, TypeError) as exc:
        raise utils.CliError(f"invalid evaluation settings: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        env_map = add_env_overrides(parser)
        args = parser.parse_args(argv)
        return _main(args, env_map)
    except KeyboardInterrupt:
        print("evaluate.py: interrupted", file=sys.stderr)
        return 130
    except (utils.CliError, ValueError, OSError) as exc:
        if debug:
            raise
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, env_map: dict[str, str]) -> int:
    if args.num_episodes < 1:
        raise utils.CliError(f"--num_episodes must be >= 1, got {args.num_episodes}")
    agent, saved = (None, None)
    if args.model_path:
        agent, saved = load_model(args.model_path)

    def default_data() -> Path:
        from synthetic_market import default_dataset

        return Path(default_dataset())

    env_config = resolve_env_config(saved, args, default_data)
    env_config = utils.dataclass_from_args(type(env_config), args, env_map, base=env_config)
    env_cache: dict[str, Any] = {}
    if agent is not None:
        env = env_cache[env_config.action_mode] = make_env(env_config)
        check_spaces(agent, env)
    calibration = calibration_data(saved, env_config, args)
    policies = build_policies(agent, env_config, args.baselines, args.seed, env_cache, calibration)
    name = args.name or (_run_name_of(args.model_path) if args.model_path else "baselines")
    out = Path(args.out_dir) / f"{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    data_files = resolve_data_paths(env_config.data_path)
    summary, _ = run_evaluation(
        policies, env_config, out, n_episodes=args.num_episodes, seed=args.seed,
        visualize_first=args.visualize_first, progress=not args.no_progress, env_cache=env_cache,
        extra_meta={"model_path": args.model_path, "command": sys.argv, "calibration": calibration,
                    "data_files": [{"path": str(p), "sha256": utils.sha256_file(p)} for p in data_files]},
    )
    for env in env_cache.values():
        env.close()
    print(format_table(summary))
    print(table_footnote(summary))
    print(f"wrote {out}")
    return 0


def _data_name(env_config: Any) -> str:
    d = env_config.data_path
    return Path(d if isinstance(d, str | os.PathLike) else d[0]).name


def check_spaces(agent: Any, env: Any) -> None:
    """Refuse an env whose observation/action spaces differ from the agent's (clear message)."""
    for what in ("observation_space", "action_space"):
        a, e = getattr(agent, what), getattr(env, what)
        if a != e:
            raise utils.CliError(f"the evaluation env's {what} {e} differs from the model's {a}: "
                                 "only data, symbol, range and episode/cost settings may change")


def calibration_data(saved: dict[str, Any] | None, env_config: Any, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """Data on which AS/GLFT fit their intensity.

    The run's training part of the same data; with another recording (``--data_path``), the
    evaluation range itself (in-sample for the baselines).
    """
    train = (saved or {}).get("env_config") or {}
    if not args.data_path and train.get("data_path"):
        return {"data_path": train["data_path"], "symbol": train.get("symbol"),
                "time_range": list(train.get("time_range", (0.0, 1.0)))}
    if args.data_path:
        logger.info("AS/GLFT intensity is fitted on the evaluation range itself (in-sample for "
                    "the baselines)")
    return {"data_path": env_config.data_path, "symbol": env_config.symbol,
            "time_range": list(env_config.time_range)}


def _run_name_of(model_path: str) -> str:
    p = Path(model_path).resolve()
    # results/<run>/models/<final_model|best_model>
    if p.parent.name == "models":
        return f"{p.parent.parent.name}-{p.name}"
    return p.name


if __name__ == "__main__":
    sys.exit(main())
