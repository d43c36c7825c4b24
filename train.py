"""Train the PPO market maker: wire config, data, env, agent, logging, checkpoints and evaluation.

One job: the training CLI. ``python train.py`` with no arguments generates the synthetic
market once into ``data/``, trains on its first 70 % of time, evaluates on the last 30 %
during training (selecting ``best_model``) and at the end against the baselines (the same
episodes for every policy, with the paired agent − baseline differences, through
``evaluation.run_evaluation`` like ``evaluate.py``), and writes everything into
``results/<run_name>_<timestamp>/`` (files and columns in docs/workflow.md).

``--env as_model`` trains the same agent, through the same loop (log, plots, checkpoints,
Ctrl-C, ``--resume``), on the Avellaneda–Stoikov model market ``AvellanedaStoikov-v0``
instead: its parameters are the ``--as_*`` flags (``model_market_cli``), the PPO and loop
defaults are ``model_market.AS_PPO_DEFAULTS`` and ``model_market_cli.AS_TRAIN_DEFAULTS``, and
the periodic and final evaluations run on held-out simulated paths against the model's
closed-form strategies (``model_market.compare_with_references``).

Public names:

- ``TrainSettings``: the loop settings (budget, intervals, evaluation sizes).
- ``LOG_COLUMNS``: the columns of ``training_log.csv``.
- ``TrainingMonitor``: the ``PPOAgent.learn`` callback (CSV/TensorBoard logging, progress
  bar, periodic evaluation, checkpoints, NaN guard, Ctrl-C handling).
- ``ACTION_GROUPS`` / ``action_group`` / ``market_diagnostics``: the market's collapse
  diagnostics (``diag/`` keys: action groups, quoted offsets, fills per episode) derived
  from the agent's generic ones.
- ``TensorBoardWriter``: scalar event files through ``tf.summary.write`` (works without the
  ``tensorboard`` package, which is only needed to view them).
- ``build_parser`` / ``main``: the CLI (``python train.py --help``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

import cli  # sets TensorFlow's C++ log level; TensorFlow itself is imported later, by ppo_agent
import evaluation
import manifest
import model_market_cli as mmc
import plots
import train_plan
import utils
from cli import save_model
from train_plan import data_entry, device_info, git_commit, make_vector_env, package_versions

logger = logging.getLogger(__name__)

LOG_COLUMNS: tuple[str, ...] = (
    "update", "timesteps", "wall_s", "reward", "ep_len", "pnl", "fill_ratio",
    "adverse_selection_ratio", "maker_volume_ratio", "inventory_abs_mean", "inventory_max_abs",
    "markout_bps_1s", "fees", "policy_loss", "value_loss", "entropy", "approx_kl",
    "clip_fraction", "explained_variance", "grad_norm", "learning_rate", "steps_per_s",
    "time_env_s", "time_policy_s", "time_update_s", "eval_pnl_mean", "eval_pnl_std",
    "n_fills", "diag/action_hold", "diag/action_quote_bid", "diag/action_quote_ask",
    "diag/action_quote_both", "diag/action_cancel", "diag/action_market",
    "diag/bid_offset_mean", "diag/bid_offset_q10", "diag/bid_offset_q50", "diag/bid_offset_q90",
    "diag/ask_offset_mean", "diag/ask_offset_q10", "diag/ask_offset_q50", "diag/ask_offset_q90",
    "diag/quoted_bid_share", "diag/quoted_ask_share", "diag/fills_per_episode",
    "diag/entropy_uniform", "eval/quoted_bid_share", "eval/quoted_ask_share", "eval/n_fills",
)
"""Columns of ``training_log.csv`` (one row per PPO update; documented in docs/workflow.md).
The ``diag/`` and ``eval/`` columns carry the key of the same name (``market_diagnostics``,
``TrainingMonitor``)."""

ACTION_GROUPS: tuple[str, ...] = ("hold", "quote_bid", "quote_ask", "quote_both", "cancel", "market")
"""Groups of the discrete market actions in the ``diag/action_<group>`` keys (``action_group``)."""

_STAT_OF_COLUMN = {
    "reward": "rollout/ep_return_mean", "ep_len": "rollout/ep_len_mean",
    "pnl": "market/pnl", "fill_ratio": "market/fill_ratio",
    "adverse_selection_ratio": "market/adverse_selection_ratio",
    "maker_volume_ratio": "market/maker_volume_ratio",
    "inventory_abs_mean": "market/inventory_abs_mean", "inventory_max_abs": "market/inventory_max_abs",
    "markout_bps_1s": "market/markout_bps_1s", "fees": "market/fees", "n_fills": "market/n_fills",
    "policy_loss": "train/policy_loss", "value_loss": "train/value_loss", "entropy": "train/entropy",
    "approx_kl": "train/approx_kl", "clip_fraction": "train/clip_fraction",
    "explained_variance": "train/explained_variance", "grad_norm": "train/grad_norm",
    "learning_rate": "train/learning_rate", "steps_per_s": "time/steps_per_s",
    "time_env_s": "time/env_s", "time_policy_s": "time/policy_s", "time_update_s": "time/update_s",
}

TRAIN_PPO_DEFAULTS: dict[str, Any] = {
    "n_steps": 128, "batch_size": 256, "n_epochs": 4, "normalize_reward": True,
}
"""``PPOConfig`` fields whose default in ``train.py`` differs from the dataclass (SB3's) default.

Measured reasons (the README section "Research workflow"): SB3's 2048 x 64 x 10 epochs meant 640 minibatch steps of
the Conv1D+LSTM per 4096 env steps (updates ~70 % of the run at ~175 steps/s); 128 steps x 8
envs, minibatches of 256 and 4 epochs are 16 steps per 1024 env steps (~1,000-1,500 steps/s
on 2 cores). Reward normalisation: the env's reward is in tick x lot units (episode returns
~-1e4), which made the value loss ~1e4 and its gradient dominate the global-norm clip, so the
policy barely moved.
"""

def action_group(name: str) -> str:
    """The ``ACTION_GROUPS`` entry of a discrete action name (``event_driven_env.DISCRETE_ACTIONS``).

    >>> [action_group(n) for n in ("hold", "bid_offset_+1", "ask_offset_-2", "both_offset_+0",
    ...                            "cancel_all", "market_sell")]
    ['hold', 'quote_bid', 'quote_ask', 'quote_both', 'cancel', 'market']
    """
    for prefix, group in (("bid_", "quote_bid"), ("ask_", "quote_ask"), ("both_", "quote_both"),
                          ("cancel", "cancel"), ("market", "market")):
        if name.startswith(prefix):
            return group
    return "hold"


def market_diagnostics(stats: dict[str, float], action_names: Sequence[str] | None,
                       steps_per_episode: int) -> dict[str, float]:
    """The market's ``diag/`` keys derived from the agent's generic ones (``ppo_agent.action_diagnostics``).

    - discrete (``action_names`` given): ``diag/action_<group>`` = the summed
      ``diag/action_share_<i>`` of the actions of each of ``ACTION_GROUPS``;
      and ``diag/{bid,ask}_offset_mean``: the mean tick offset of the actions taken that
      quote that side (``<side>_offset_<o>`` and ``both_offset_<o>``, weighted by their
      shares; nan when none did): quoting ever further behind shows here;
    - continuous: ``diag/{bid,ask}_offset_{mean,q10,q50,q90}`` = ``diag/action{0,1}_...``
      (offsets in ticks from the best price of the side, as the env received them);
    - ``diag/fills_per_episode`` = ``diag/fills_per_step`` x ``steps_per_episode``: this
      rollout's fill rate as fills per episode (every update, unlike ``market/n_fills``,
      which exists only when an episode finished).

    >>> d = market_diagnostics({"diag/action_share_0": 0.5, "diag/action_share_1": 0.25,
    ...                         "diag/action_share_2": 0.25, "diag/fills_per_step": 0.01},
    ...                        ("hold", "bid_offset_+0", "cancel_all"), 300)
    >>> d["diag/action_hold"], d["diag/action_quote_bid"], d["diag/action_cancel"], d["diag/fills_per_episode"]
    (0.5, 0.25, 0.25, 3.0)
    >>> d["diag/bid_offset_mean"], d["diag/ask_offset_mean"]
    (0.0, nan)
    """
    out: dict[str, float] = {}
    if action_names is not None:
        shares = [stats.get(f"diag/action_share_{i}") for i in range(len(action_names))]
        if all(v is not None for v in shares):
            pairs = list(zip(shares, action_names, strict=True))
            for g in ACTION_GROUPS:
                out[f"diag/action_{g}"] = float(sum(v for v, n in pairs if action_group(n) == g))
            out.update(_discrete_offsets(pairs))
    else:
        for side, j in (("bid", 0), ("ask", 1)):
            for k in ("mean", "q10", "q50", "q90"):
                if f"diag/action{j}_{k}" in stats:
                    out[f"diag/{side}_offset_{k}"] = float(stats[f"diag/action{j}_{k}"])
    if "diag/fills_per_step" in stats:
        out["diag/fills_per_episode"] = float(stats["diag/fills_per_step"]) * steps_per_episode
    return out


def _discrete_offsets(pairs: Sequence[tuple[float, str]]) -> dict[str, float]:
    """``diag/{bid,ask}_offset_mean`` of the discrete quote actions taken (``market_diagnostics``)."""
    out = {}
    for side in ("bid", "ask"):
        w = [(v, int(n.rsplit("_", 1)[1])) for v, n in pairs if n.startswith((f"{side}_offset_", "both_offset_"))]
        total = sum(v for v, _ in w)
        out[f"diag/{side}_offset_mean"] = float(sum(v * o for v, o in w) / total) if total > 0 else math.nan
    return out


_NAN_KEYS = ("train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl", "train/loss")


@dataclass(frozen=True)
class TrainSettings:
    """Settings of the training loop (the env and PPO have their own configs)."""

    num_episodes: int = 60
    """Training budget in episodes of the length the training data allows (``episode_length_s``, or
    the whole training range when shorter; all envs together); used when ``total_timesteps`` is 0."""
    total_timesteps: int = 0
    """Training budget in environment steps (all envs together); 0 = ``num_episodes`` x steps
    per episode. With ``--resume`` it is the budget of the whole run, steps already done included."""
    n_envs: int = 8
    """Parallel environments of the rollout (episodes start at different times)."""
    vector_env: Literal["sync", "async"] = "sync"
    """``sync``: envs stepped in this process; ``async``: one subprocess per env."""
    checkpoint_interval: int = 20
    """Save a checkpoint every this many PPO updates (and on Ctrl-C)."""
    keep_checkpoints: int = 3
    """Number of most recent checkpoints kept."""
    eval_interval: int = 40
    """Evaluate on the held-out range every this many updates (selects ``best_model``); 0 = never."""
    eval_episodes: int = 2
    """Episodes of each periodic held-out evaluation (same start times every time)."""
    final_eval: bool = True
    """At the end, evaluate the final agent against the baselines on the held-out data."""
    final_eval_episodes: int = 30
    """Episodes per policy of the final evaluation (same start times for every policy; the
    paired agent − baseline CIs need enough of them)."""
    final_eval_figures: bool = True
    """Draw each policy's first held-out episode (``evaluation/episode_first_<policy>.png``) in
    the final evaluation; the sweeps of ``sweep.py`` turn it off (one figure per policy and trial)."""
    plot_interval: int = 20
    """Redraw ``training_curves.png`` every this many updates."""

    def __post_init__(self) -> None:
        for name in ("num_episodes", "n_envs", "checkpoint_interval", "keep_checkpoints",
                     "eval_episodes", "final_eval_episodes", "plot_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("total_timesteps", "eval_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class TensorBoardWriter:
    """Scalars to a TensorBoard event file.

    ``tf.summary.scalar`` needs the ``tensorboard`` package; ``tf.summary.write`` with the
    scalars-plugin metadata is what it does underneath and is part of TensorFlow itself.
    """

    def __init__(self, logdir: Path) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))
        self._meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Write every finite value under its (namespaced) key at ``step``."""
        tf = self._tf
        with self._writer.as_default():
            for k, v in values.items():
                if v is not None and np.isfinite(v):
                    tf.summary.write(k, tf.constant(float(v), tf.float32), step=int(step),
                                     metadata=self._meta)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


class TrainingMonitor:
    """``PPOAgent.learn`` callback: log, plot, evaluate, checkpoint, guard against NaN and Ctrl-C.

    Args:
        run_dir: the run folder.
        settings: loop settings.
        model_meta: written as ``env_config.json`` into every saved model/checkpoint.
        eval_fn: ``eval_fn(agent) -> (mean_pnl, std_pnl)`` or ``(mean_pnl, std_pnl, extra)``
            on the held-out range, or ``None``; ``extra`` maps ``eval/`` keys to values (the
            deterministic policy's quoted shares and fills per episode).
        total_timesteps: the run budget (for the progress bar).
        log_rows: rows of an earlier part of the run (resume).
        best_eval: best held-out mean PnL so far (resume).
        progress: show the tqdm bar.
        diagnostics: ``diagnostics(stats) -> dict`` of derived keys added to every update's
            stats (``market_diagnostics``), or ``None``.
    """

    def __init__(self, run_dir: Path, settings: TrainSettings, model_meta: dict[str, Any],
                 eval_fn: Any, total_timesteps: int, start_timesteps: int = 0,
                 log_rows: list[dict[str, Any]] | None = None, best_eval: float = -math.inf,
                 progress: bool = True, wall_offset: float = 0.0,
                 diagnostics: Callable[[dict[str, float]], dict[str, float]] | None = None) -> None:
        from tqdm import tqdm

        self.run_dir, self.settings, self.model_meta, self.eval_fn = run_dir, settings, model_meta, eval_fn
        self.diagnostics = diagnostics
        self.rows: list[dict[str, Any]] = list(log_rows or [])
        self.best_eval = best_eval
        self.stop_requested = False
        self.stop_signal = 0  # the signal that asked to stop (SIGINT or SIGTERM), 0 = none
        self.learn_steps, self.learn_s = 0, 0.0  # set by _learn_with_sigint
        self.stopped_by_nan: str | None = None
        self.last_checkpoint: Path | None = _latest_checkpoint(run_dir)
        self.tb = TensorBoardWriter(run_dir / "tensorboard")
        self.t0 = time.perf_counter() - wall_offset
        self.bar = tqdm(total=total_timesteps, initial=start_timesteps, unit="step", desc="train",
                        disable=not progress, dynamic_ncols=True, file=sys.stderr)

    # -- the callback -------------------------------------------------------------------

    def __call__(self, agent: Any, stats: dict[str, float]) -> bool:
        """Called by ``learn`` after every update; returning ``False`` stops training."""
        bad = [k for k in _NAN_KEYS if k in stats and not np.isfinite(stats[k])]
        if bad:
            where = self.last_checkpoint or "none saved yet"
            self.stopped_by_nan = (
                f"non-finite {', '.join(bad)} at update {agent.num_updates} (step {agent.num_timesteps}); "
                f"training stopped without saving these weights. Last good checkpoint: {where}. "
                "Try a lower --learning_rate or --max_grad_norm."
            )
            return False
        s = self.settings
        if self.diagnostics is not None:
            stats = {**stats, **self.diagnostics(stats)}
        row = {c: float(stats.get(k, math.nan)) for c, k in _STAT_OF_COLUMN.items()}
        row.update({c: float(stats.get(c, math.nan)) for c in LOG_COLUMNS if c.startswith("diag/")})
        row.update(update=agent.num_updates, timesteps=agent.num_timesteps,
                   wall_s=time.perf_counter() - self.t0,
                   eval_pnl_mean=math.nan, eval_pnl_std=math.nan)
        # Timestamps are not metrics (and would lose precision as float32 scalars).
        tb_values = {k: v for k, v in stats.items() if not k.endswith(("start_ts", "end_ts"))}
        if self.eval_fn is not None and s.eval_interval and agent.num_updates % s.eval_interval == 0:
            self._evaluate(agent, row, tb_values)
        self.rows.append(row)
        self._write_log()
        self.tb.scalars(tb_values, agent.num_timesteps)
        self.bar.update(max(0, agent.num_timesteps - self.bar.n))
        self.bar.set_postfix(reward=_f(row["reward"]), pnl=_f(row["pnl"]), fill=_f(row["fill_ratio"]),
                             adv=_f(row["adverse_selection_ratio"]), inv=_f(row["inventory_abs_mean"]),
                             eval=_f(self.best_eval), refresh=False)
        if agent.num_updates % s.checkpoint_interval == 0 or self.stop_requested:
            self.save_checkpoint(agent)
        if agent.num_updates % s.plot_interval == 0:
            self.plot()
        return not self.stop_requested

    def _evaluate(self, agent: Any, row: dict[str, Any], tb_values: dict[str, float]) -> None:
        mean, std, *rest = self.eval_fn(agent)
        extra = rest[0] if rest else {}
        row["eval_pnl_mean"], row["eval_pnl_std"] = mean, std
        tb_values["eval/pnl_mean"], tb_values["eval/pnl_std"] = mean, std
        row.update({k: float(v) for k, v in extra.items() if k in LOG_COLUMNS})
        tb_values.update(extra)
        if mean > self.best_eval:
            self.best_eval = mean
            save_model(agent, self.run_dir / "models" / "best_model", self.model_meta)
            logger.info("new best validation PnL %.4f at step %d: saved models/best_model", mean,
                        agent.num_timesteps)

    # -- outputs ------------------------------------------------------------------------

    def _write_log(self) -> None:
        df = pd.DataFrame(self.rows, columns=list(LOG_COLUMNS))
        utils.atomic_write_text(self.run_dir / "training_log.csv", df.to_csv(index=False))

    def plot(self) -> None:
        """Redraw ``training_curves.png`` from the log."""
        df = pd.DataFrame(self.rows, columns=list(LOG_COLUMNS))
        ev = df[np.isfinite(df["eval_pnl_mean"].astype(float))][["timesteps", "eval_pnl_mean"]]
        plots.plot_training_curves(df, self.run_dir / "training_curves.png", ev)

    def save_checkpoint(self, agent: Any) -> Path:
        """Save ``checkpoints/update_<n>`` (weights, optimiser, normaliser, counters) and ``latest.json``."""
        ckpt_root = self.run_dir / "checkpoints"
        path = ckpt_root / f"update_{agent.num_updates:06d}"
        save_model(agent, path, self.model_meta)
        utils.atomic_write_json(ckpt_root / "latest.json", {
            "checkpoint": path.name, "num_timesteps": agent.num_timesteps,
            "num_updates": agent.num_updates,
            "best_eval_pnl": self.best_eval if math.isfinite(self.best_eval) else None,
            "wall_s": time.perf_counter() - self.t0,
        })
        self.last_checkpoint = path
        old = sorted(p for p in ckpt_root.glob("update_*") if p.is_dir())
        for p in old[: max(0, len(old) - self.settings.keep_checkpoints)]:
            shutil.rmtree(p, ignore_errors=True)
        return path

    def close(self) -> None:
        """Close the progress bar and the TensorBoard writer."""
        self.bar.close()
        self.tb.close()


def _f(v: float) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3g}"


def _read_params(params_file: Path) -> dict[str, Any]:
    """A run's ``params.json`` (one-line error naming it when it is damaged)."""
    try:
        params = orjson.loads(params_file.read_bytes())
    except orjson.JSONDecodeError as e:
        raise utils.CliError(f"{params_file}: not valid JSON ({e}); the file is damaged") from None
    if not isinstance(params, dict):
        raise utils.CliError(f"{params_file}: not a run's parameters (a JSON {type(params).__name__})")
    return params


def _read_latest(run_dir: Path) -> dict[str, Any]:
    """``checkpoints/latest.json`` ({} when missing or damaged: the folders are what counts)."""
    try:
        latest = orjson.loads((run_dir / "checkpoints" / "latest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return latest if isinstance(latest, dict) else {}


def _latest_checkpoint(run_dir: Path, warn: bool = False) -> Path | None:
    """The newest intact checkpoint folder (``manifest.verify``), or None.

    ``latest.json``'s checkpoint first, then every ``update_*`` folder, newest first. With
    ``warn`` (resuming), each damaged or missing newer one is named in a warning and a damaged
    folder is renamed ``damaged_<name>`` (kept for inspection, out of the rotation).
    """
    root = run_dir / "checkpoints"
    named = _read_latest(run_dir).get("checkpoint")
    folders = sorted((p for p in root.glob("update_*") if p.is_dir()), reverse=True)
    if isinstance(named, str) and named:
        folders = [root / named, *(p for p in folders if p.name != named)]
    ckpt, skipped = manifest.newest_intact(folders)
    if warn:
        for p, why in skipped:
            logger.warning("checkpoint %s is not usable: %s", p, why)
            if p.is_dir():
                p.rename(p.with_name(f"damaged_{p.name}"))
        if skipped and ckpt is not None:
            logger.warning("resuming from the newest intact checkpoint, %s", ckpt.name)
    return ckpt


# --------------------------------------------------------------------------- CLI


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, dict[str, str]]]:
    """The parser and the ``{config name: {dest: field}}`` maps of the generated flags."""
    from event_driven_env import EnvConfig
    from ppo_config import PPOConfig

    p = utils.OneLineErrorParser(
        prog="train.py",
        description="Train the PPO market maker. With no arguments: synthetic market, train, "
                    "evaluate against the baselines, plots. @FILE reads flags from FILE, one per "
                    "line (e.g. the best.args of a sweep.py sweep).",
        fromfile_prefix_chars="@",
    )
    g = p.add_argument_group("data and run")
    g.add_argument("--data_path", nargs="+", default=None,
                   help="training recording(s): a file, several files or a glob (default: the "
                        "synthetic market, generated once into data/)")
    g.add_argument("--symbol", default=None, help="symbol to trade in files holding several")
    g.add_argument("--train_range", nargs=2, type=float, default=None, metavar=("START", "END"),
                   help="training (+ validation) time range as fractions of the recording; without --val_range "
                        "its last seventh is the validation range, so the default split is train 0-0.6, "
                        "validation 0.6-0.7, test 0.7-1 (default: 0 0.7, or 0 1 with --eval_data_path)")
    g.add_argument("--val_range", nargs=2, type=float, default=None, metavar=("START", "END"),
                   help="validation time range of the training recording: the periodic evaluation that "
                        "selects models/best_model runs on it (default: the last seventh of --train_range; given alone, training is 0 to its start)")
    g.add_argument("--eval_range", nargs=2, type=float, default=None, metavar=("START", "END"),
                   help="test time range of the final evaluation, never used for training or selection "
                        "(default: 0.7 1, or 0 1 of --eval_data_path)")
    g.add_argument("--eval_data_path", nargs="+", default=None,
                   help="separate test recording(s) instead of a time split")
    g.add_argument("--inventory_penalty", type=float, default=None, metavar="GAMMA",
                   help="train with the running inventory penalty: the same as --reward "
                        "pnl_inventory_penalty --inventory_penalty_gamma GAMMA (reward.py)")
    g.add_argument("--force", action="store_true",
                   help=f"run a budget of more than {train_plan.MAX_PASSES:g} passes over the training data "
                        "(refused otherwise)")
    g.add_argument("--env", choices=mmc.ENVS, default=None, help=mmc.ENV_HELP)
    g.add_argument("--seed", type=int, default=0, help="seed of weights, sampling and episode starts")
    g.add_argument("--run_name", default=None,
                   help="run folder prefix (default: ppo_<symbol>_<action_mode>_s<seed>)")
    g.add_argument("--results_dir", default="results", help="parent folder of the run folders")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest checkpoint (its saved config "
                        "is used; --total_timesteps/--num_episodes may raise the budget)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    maps = {
        "train": utils.add_dataclass_arguments(p, TrainSettings, title="training loop (TrainSettings)"),
        "env": utils.add_dataclass_arguments(
            p, EnvConfig, title="environment (EnvConfig)",
            exclude=("data_path", "symbol", "time_range", "seed")),
    }
    ppo_fields = set(utils.flat_field_paths(PPOConfig))  # leaves, the nested NetworkConfig's included
    clash = ppo_fields & (set(maps["env"].values()) | set(maps["train"].values()))
    maps["ppo"] = utils.add_dataclass_arguments(p, PPOConfig, title="PPO (PPOConfig)", exclude=clash,
                                                defaults=TRAIN_PPO_DEFAULTS)
    maps["ppo"].update(utils.add_dataclass_arguments(
        p, PPOConfig, title="PPO (PPOConfig), clashing names", prefix="ppo_",
        exclude=ppo_fields - clash, defaults=TRAIN_PPO_DEFAULTS))
    maps.update(mmc.add_as_arguments(p))
    return p, maps


_ACTIVE: dict[str, Any] = {"run_dir": None, "t0": 0.0}
"""The run folder of the run in progress (``None`` before it exists) and the process start:
what an interrupt or a disk-full error at any moment tells the user (``_interrupted``)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    _ACTIVE.update(run_dir=None, t0=time.perf_counter())

    def body() -> int:
        parser, maps = build_parser()
        return _train(parser.parse_args(argv), maps)

    return cli.run_cli("train.py", body, argv, interrupted=_interrupted, error_hint=_resume_hint)


def _interrupted() -> str:
    """The line after an interrupt that ended the run at once (second Ctrl-C, SIGTERM outside ``learn``)."""
    return _resume_hint() or "interrupted before training started; nothing saved"


def _resume_hint() -> str | None:
    """How to go on with the run in progress: its latest checkpoint and the resume command, or ``None``."""
    run_dir = _ACTIVE["run_dir"]
    if run_dir is None:
        return None
    ckpt = _latest_checkpoint(run_dir)
    if ckpt is None:
        return f"interrupted before the first checkpoint of {run_dir}: nothing to resume"
    return f"the run's latest checkpoint is {ckpt}. Resume with: python train.py --resume {run_dir}"


def _resolve_new_run(args: argparse.Namespace, maps: dict[str, dict[str, str]]) -> dict[str, Any]:
    from event_driven_env import EnvConfig
    from ppo_config import PPOConfig

    settings = utils.dataclass_from_args(TrainSettings, args, maps["train"])
    split = train_plan.data_split(args)
    train_plan.inventory_penalty_flag(args, maps["env"])
    base = utils.from_flat(EnvConfig, data_path=cli.env_data_path(split.train_files), symbol=args.symbol,
                           time_range=split.train_range)
    env_cfg = utils.dataclass_from_args(EnvConfig, args, maps["env"], base=base)
    train_plan.warn_ignored_reward_settings(args, maps["env"], env_cfg)
    ppo_base = utils.from_flat(PPOConfig, **TRAIN_PPO_DEFAULTS)
    ppo_cfg = utils.dataclass_from_args(PPOConfig, args, maps["ppo"], base=ppo_base)
    return {"settings": settings, "env": env_cfg, "ppo": ppo_cfg, "train_files": split.train_files,
            "eval_files": split.test_files, "train_range": split.train_range, "eval_range": split.test_range,
            "val_files": split.val_files, "val_range": split.val_range}


def _resume_run(args: argparse.Namespace, maps: dict[str, dict[str, str]]) -> tuple[Path, dict[str, Any], dict]:
    from event_driven_env import EnvConfig
    from ppo_config import PPOConfig

    run_dir = Path(args.resume)
    params_file = run_dir / "params.json"
    if not params_file.is_file():
        raise utils.CliError(f"--resume {run_dir}: no params.json there (not a run folder)")
    params = _read_params(params_file)
    given = [*_market_flags(args, maps), *(d for d in maps["ppo"] if hasattr(args, d))]
    if given:
        raise utils.CliError(f"--resume uses the run's saved config; cannot change {sorted(given)}")
    settings = utils.dataclass_from_dict(TrainSettings, params["train_settings"], source=str(params_file))
    # Loop settings (budget, intervals, final evaluation) may change on resume.
    settings = utils.dataclass_from_args(TrainSettings, args, maps["train"], base=settings)
    # The saved configs are nested dicts, or flat ones written before the nesting: both load.
    data = params["data"]
    test = data.get("test") or data["eval"]  # "eval": runs written before the validation split
    if "validation" not in data:
        logger.warning("%s predates the validation split: its best_model is selected on the test range %s",
                       run_dir, test["time_range"])
    val = data.get("validation") or test
    run = {
        "settings": settings,
        "env": utils.dataclass_from_dict(EnvConfig, params["env_config"], source=str(params_file)),
        "ppo": utils.dataclass_from_dict(PPOConfig, params["ppo_config"], source=str(params_file)),
        "train_files": [Path(f["path"]) for f in data["train"]["files"]],
        "eval_files": [Path(f["path"]) for f in test["files"]],
        "val_files": [Path(f["path"]) for f in val["files"]],
        "train_range": tuple(data["train"]["time_range"]),
        "eval_range": tuple(test["time_range"]),
        "val_range": tuple(val["time_range"]),
    }
    for f in data["train"]["files"] + test["files"] + val["files"]:
        p = Path(f["path"])
        if not p.is_file():
            raise utils.CliError(f"--resume: data file of the run not found: {p}")
    return run_dir, run, params


def _start_or_resume(args: argparse.Namespace, maps: dict[str, dict[str, str]], resume: Any,
                     new: Any) -> tuple[dict[str, Any], Path | None, dict[str, Any], Path | None]:
    """``(run, checkpoint, params, run_dir)``: the resumed run (``--resume``, which needs a checkpoint) or a new one."""
    if not args.resume:
        return new(args, maps), None, {}, None
    run_dir, run, params = resume(args, maps)
    ckpt = _latest_checkpoint(run_dir, warn=True)
    if ckpt is None:
        raise utils.CliError(f"--resume {run_dir}: no intact checkpoint to resume from")
    return run, ckpt, params, run_dir


def _train(args: argparse.Namespace, maps: dict[str, dict[str, str]]) -> int:
    if mmc.env_of_run(args.env, args.resume) == "as_model":
        return _train_as_model(args, maps)
    as_flags = mmc.given_as_flags(args, maps)
    if as_flags:
        raise utils.CliError(f"{as_flags} apply to --env as_model only")
    run, ckpt, params, run_dir = _start_or_resume(args, maps, _resume_run, _resolve_new_run)
    settings: TrainSettings = run["settings"]
    env_cfg = run["env"]
    eval_cfg = utils.replace_flat(env_cfg, data_path=cli.env_data_path(run["eval_files"]),
                                  time_range=run["eval_range"])
    val_cfg = utils.replace_flat(env_cfg, data_path=cli.env_data_path(run["val_files"]), time_range=run["val_range"])
    model_meta = cli.model_metadata(env_cfg, run["eval_files"], run["eval_range"],
                                    validation=(run["val_files"], run["val_range"]))
    envs = make_vector_env(env_cfg, settings.n_envs, settings.vector_env)
    try:
        budget = train_plan.log_plan(settings, env_cfg, envs, run, args.force)
    except BaseException:
        envs.close()
        raise
    total = budget.total_steps
    if ckpt is not None:
        agent, seed = _resumed_agent(run_dir, ckpt, params)
        params["train_settings"] = utils.dataclass_to_dict(settings)  # loop settings may change on resume
    else:
        agent, seed, run_dir, params = _new_run(args, run, envs, eval_cfg, val_cfg, budget)
        # The untrained agent: the final evaluation's reference row ("did it learn anything?").
        save_model(agent, run_dir / "models" / "initial_model", model_meta)
    params["total_timesteps"], params["budget"] = total, budget._asdict()
    _ACTIVE["run_dir"] = run_dir
    utils.atomic_write_json(run_dir / "params.json", params)
    logger.info("run folder: %s", run_dir)
    monitor = _make_monitor(run_dir, settings, model_meta, agent, ckpt is not None, total,
                            _periodic_eval_fn(val_cfg, settings, seed), args,
                            _diagnostics_fn(env_cfg, budget.steps_per_episode))
    _learn_with_sigint(agent, envs, total, monitor)
    final_eval = functools.partial(_final_evaluation, agent, env_cfg, eval_cfg, settings, seed, run_dir, args,
                                   run["val_range"])
    return _finish(agent, monitor, run_dir, model_meta, settings, final_eval)


def _resumed_agent(run_dir: Path, ckpt: Path, params: dict[str, Any]) -> tuple[Any, int]:
    """The agent of the latest checkpoint; records the resumption in ``params``."""
    from ppo_agent import PPOAgent

    agent = PPOAgent.load(ckpt)
    logger.info("resuming %s from %s at step %d (update %d)", run_dir, ckpt.name,
                agent.num_timesteps, agent.num_updates)
    params.setdefault("resumed", []).append({
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checkpoint": ckpt.name,
        "num_timesteps": agent.num_timesteps, "command": [sys.executable, *sys.argv]})
    return agent, agent.seed


def _new_run(args: argparse.Namespace, run: dict[str, Any], envs: Any, eval_cfg: Any, val_cfg: Any,
             budget: Any) -> tuple[Any, int, Path, dict[str, Any]]:
    """A fresh agent, its run folder (created) and the ``params.json`` record of the run."""
    from ppo_agent import PPOAgent

    env_cfg, seed = run["env"], args.seed
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, run["ppo"], seed=seed)
    symbol = utils.get_flat(env_cfg, "symbol") or _symbol_of(run["train_files"])
    run_name = args.run_name or f"ppo_{symbol}_{utils.get_flat(env_cfg, 'action_mode')}_s{seed}"
    run_dir = Path(args.results_dir) / f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=False)
    params = {
        "run_name": run_name, "run_dir": str(run_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv], "seed": seed, "git_commit": git_commit(),
        "env_config": utils.dataclass_to_dict(env_cfg),
        "eval_env_config": utils.dataclass_to_dict(eval_cfg),
        "validation_env_config": utils.dataclass_to_dict(val_cfg),
        "ppo_config": utils.dataclass_to_dict(run["ppo"]),
        "train_settings": utils.dataclass_to_dict(run["settings"]),
        # train: learning; validation: periodic evaluation selecting best_model; test: final evaluation only.
        "data": {"train": data_entry(run["train_files"], run["train_range"]),
                 "validation": data_entry(run["val_files"], run["val_range"]),
                 "test": data_entry(run["eval_files"], run["eval_range"])},
        "steps_per_episode": budget.steps_per_episode,
        "versions": package_versions(), "device": device_info(agent), "resumed": [],
    }
    return agent, seed, run_dir, params


def _periodic_eval_fn(eval_cfg: Any, settings: TrainSettings, seed: int
                      ) -> Callable[[Any], tuple[float, float]] | None:
    """``eval_fn(agent) -> (mean, std, extra)`` of the held-out PnL (same start times every time), or ``None``.

    ``extra``: ``eval/quoted_bid_share``, ``eval/quoted_ask_share`` and ``eval/n_fills``
    (means over the episodes) of the deterministic policy: the one that is evaluated, and
    the first to collapse to never quoting while the sampling policy still explores.
    """
    if not settings.eval_interval:
        return None
    env_cache: dict[str, Any] = {}
    action_mode = utils.get_flat(eval_cfg, "action_mode")

    def eval_fn(agent: Any) -> tuple[float, float, dict[str, float]]:
        policy = {"agent": evaluation.AgentPolicy(agent, action_mode)}
        eps, _, _ = evaluation.evaluate_policies(policy, eval_cfg, settings.eval_episodes, seed + 10_000,
                                                 progress=False, env_cache=env_cache)
        pnl = np.asarray(eps["pnl"], dtype=np.float64)
        extra = {f"eval/{k}": float(eps[k].mean()) for k in ("quoted_bid_share", "quoted_ask_share", "n_fills")
                 if k in eps}
        return float(pnl.mean()), float(pnl.std(ddof=1)) if pnl.size > 1 else math.nan, extra

    return eval_fn


def _make_monitor(run_dir: Path, settings: TrainSettings, model_meta: dict[str, Any], agent: Any,
                  resumed: bool, total: int, eval_fn: Any, args: argparse.Namespace,
                  diagnostics: Any = None) -> TrainingMonitor:
    """The ``learn`` callback; on resume it continues the log, the best PnL and the wall clock."""
    rows, best, wall = [], -math.inf, 0.0
    if resumed:
        log_file = run_dir / "training_log.csv"
        if log_file.is_file():
            df = pd.read_csv(log_file)
            rows = df[df["update"] <= agent.num_updates].to_dict("records")
        latest = _read_latest(run_dir)
        saved_best = latest.get("best_eval_pnl")  # None: no periodic evaluation yet
        best = -math.inf if saved_best is None else float(saved_best)
        wall = float(latest.get("wall_s", 0.0))
    return TrainingMonitor(run_dir, settings, model_meta, eval_fn, total,
                           start_timesteps=agent.num_timesteps, log_rows=rows, best_eval=best,
                           progress=not args.no_progress, wall_offset=wall, diagnostics=diagnostics)


def _diagnostics_fn(env_cfg: Any, steps: int | None = None) -> Callable[[dict[str, float]], dict[str, float]]:
    """``market_diagnostics`` for this env's action mode and episode length (``steps``: as the data allows)."""
    from event_driven_env import DISCRETE_ACTIONS

    steps = steps or train_plan.steps_per_episode(env_cfg)
    names = DISCRETE_ACTIONS if utils.get_flat(env_cfg, "action_mode") == "discrete" else None
    return functools.partial(market_diagnostics, action_names=names, steps_per_episode=steps)


def _learn_with_sigint(agent: Any, envs: Any, total: int, monitor: TrainingMonitor) -> None:
    """``agent.learn``; the first Ctrl-C or SIGTERM stops after the current update, a second one at once."""

    def on_signal(signum: int, frame: Any) -> None:
        if monitor.stop_signal:  # second signal: give up at once (``main`` says where to resume)
            raise cli.Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        monitor.stop_requested, monitor.stop_signal = True, signum
        logger.warning("%s: stopping after the current update, saving a checkpoint and the plots (press Ctrl-C "
                       "again to abort at once)", "Ctrl-C" if signum == signal.SIGINT else "SIGTERM")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    steps0, t0 = agent.num_timesteps, time.perf_counter()
    try:
        agent.learn(envs, total, callback=monitor)
    finally:
        monitor.learn_steps, monitor.learn_s = agent.num_timesteps - steps0, time.perf_counter() - t0
        for s, handler in previous.items():
            signal.signal(s, handler)
        monitor.close()
        envs.close()


def _finish(agent: Any, monitor: TrainingMonitor, run_dir: Path, model_meta: dict[str, Any],
            settings: TrainSettings, final_eval: Callable[[], None]) -> int:
    """After ``learn``: NaN stop, Ctrl-C/SIGTERM stop, or the final models and ``final_eval()``; the exit code."""
    if monitor.stopped_by_nan:
        print(f"train.py: error: {monitor.stopped_by_nan}", file=sys.stderr)
        monitor.plot()
        return 1
    if monitor.stop_requested:
        if monitor.last_checkpoint is None or not monitor.rows or \
                monitor.last_checkpoint.name != f"update_{agent.num_updates:06d}":
            monitor.save_checkpoint(agent)
        monitor.plot()
        print(_speed_line(monitor), file=sys.stderr)
        print(f"train.py: interrupted at step {agent.num_timesteps}; checkpoint saved. "
              f"Resume with: python train.py --resume {run_dir}", file=sys.stderr)
        return cli.interrupt_exit_code(monitor.stop_signal or signal.SIGINT)
    save_model(agent, run_dir / "models" / "final_model", model_meta)
    if not (run_dir / "models" / "best_model").is_dir():
        # No periodic evaluation ran (eval_interval 0 or fewer updates): best = final.
        save_model(agent, run_dir / "models" / "best_model", model_meta)
    monitor.save_checkpoint(agent)
    monitor.plot()
    if settings.final_eval:
        try:
            final_eval()
        except KeyboardInterrupt as exc:
            print(f"train.py: final evaluation interrupted; the trained models are in {run_dir / 'models'} "
                  f"(evaluate them with evaluate.py --model_path ...)", file=sys.stderr)
            return cli.interrupt_exit_code(exc)
    print(f"done: {run_dir}")
    print(_speed_line(monitor))
    return 0


def _speed_line(monitor: TrainingMonitor) -> str:
    """``elapsed ...; training N steps in S s = R steps/s``: what this run took, measured by itself."""
    rate = monitor.learn_steps / monitor.learn_s if monitor.learn_s > 0 else math.nan
    return (f"elapsed {time.perf_counter() - _ACTIVE['t0']:.0f} s in total (this process); training "
            f"{monitor.learn_steps:,} steps in {monitor.learn_s:.0f} s = {rate:,.0f} steps/s (periodic evaluations, "
            f"checkpoints and plots included)")


def _final_evaluation(agent: Any, env_cfg: Any, eval_cfg: Any, settings: TrainSettings, seed: int,
                      run_dir: Path, args: argparse.Namespace, val_range: Sequence[float]) -> None:
    """The final agent, the untrained one (reference) and the baselines on the test range."""
    cache: dict[str, Any] = {}
    # AS/GLFT calibrate on the training part: no look-ahead.
    calibration = {"data_path": utils.get_flat(env_cfg, "data_path"), "symbol": utils.get_flat(env_cfg, "symbol"),
                   "time_range": list(utils.get_flat(env_cfg, "time_range"))}
    mode = utils.get_flat(eval_cfg, "action_mode")
    policies = {}
    initial = run_dir / "models" / "initial_model"
    if initial.is_dir():  # runs started before it existed have none
        policies[evaluation.INITIAL_AGENT] = evaluation.AgentPolicy(cli.load_model(initial)[0], mode)
    policies.update(evaluation.build_baselines(eval_cfg, None, seed, cache, calibration))
    models = {f"{run_dir.name}-final_model": evaluation.AgentPolicy(agent, mode)}
    selection = (f"final evaluation of models/final_model (the last weights, not best_model) on the test range "
                 f"{tuple(utils.get_flat(eval_cfg, 'time_range'))}, never used for training or model selection "
                 f"(best_model was selected on the validation range {tuple(val_range)})")
    logger.info("%s: agent, %s; %d episodes each", selection, list(policies), settings.final_eval_episodes)
    result = evaluation.run_evaluation(
        policies, eval_cfg, run_dir / "evaluation", n_episodes=settings.final_eval_episodes,
        seed=seed, visualize_first=settings.final_eval_figures, progress=not args.no_progress, env_cache=cache,
        models=models, extra_meta={"model_path": str(run_dir / "models" / "final_model"), "calibration": calibration,
                                   "selection": selection},
    )
    for env in cache.values():
        env.close()
    print(evaluation.format_report(result))
    print(selection)


# --------------------------------------------------------------------------- --env as_model


def _market_flags(args: argparse.Namespace, maps: dict[str, dict[str, str]]) -> list[str]:
    """The market-only flags typed (data flags, ``EnvConfig`` fields), by dest."""
    given = [d for d in maps["env"] if hasattr(args, d)]
    given += [o for o in ("data_path", "eval_data_path", "train_range", "val_range", "eval_range", "symbol",
                          "inventory_penalty") if getattr(args, o) is not None]
    return sorted(given)


def _train_as_model(args: argparse.Namespace, maps: dict[str, dict[str, str]]) -> int:
    """``--env as_model``: ``_train``'s loop on ``AvellanedaStoikov-v0`` (``model_market_cli``)."""
    import model_market

    run, ckpt, params, run_dir = _start_or_resume(args, maps, _resume_as_run, _resolve_as_run)
    settings, cfg = run["settings"], run["as"]
    if settings.vector_env != "sync":
        raise utils.CliError("--vector_env async is not supported with --env as_model: its envs step in this "
                             "process (gym.make_vec sync; a model step costs microseconds)")
    if settings.final_eval and settings.final_eval_episodes < 2:
        raise utils.CliError("--final_eval_episodes must be >= 2 with --env as_model (paired statistics)")
    total = settings.total_timesteps or settings.num_episodes * cfg.n_steps
    mmc.check_training_seeds(run["seed"], settings.n_envs,
                             math.ceil(total / (settings.n_envs * run["ppo"].n_steps)))
    model_meta = mmc.as_model_metadata(run["setting"], cfg, run["training"])
    envs = model_market.make_as_envs(cfg, run["training"])
    if ckpt is not None:
        agent, _ = _resumed_agent(run_dir, ckpt, params)
        params["train_settings"] = utils.dataclass_to_dict(settings)
    else:
        agent, run_dir, params = _new_as_run(args, run, envs)
    params["total_timesteps"] = total
    utils.atomic_write_json(run_dir / "params.json", params)
    logger.info("run folder: %s (%s, budget %d steps, %d steps per episode)", run_dir, model_market.ENV_ID,
                total, cfg.n_steps)
    eval_fn = mmc.periodic_eval_fn(cfg, settings.eval_episodes) if settings.eval_interval else None
    diagnostics = functools.partial(market_diagnostics, action_names=None, steps_per_episode=cfg.n_steps)
    monitor = _make_monitor(run_dir, settings, model_meta, agent, ckpt is not None, total, eval_fn, args,
                            diagnostics)
    _learn_with_sigint(agent, envs, total, monitor)
    def final_eval() -> None:
        print(mmc.final_evaluation(agent, cfg, settings.final_eval_episodes, run_dir))

    return _finish(agent, monitor, run_dir, model_meta, settings, final_eval)


def _resolve_as_run(args: argparse.Namespace, maps: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The configs of a new ``--env as_model`` run (the ``AS_*`` defaults, then the typed flags)."""
    market = _market_flags(args, maps)
    if market:
        raise utils.CliError(f"{market} do not apply to --env as_model (the model market simulates its own paths)")
    settings = utils.dataclass_from_args(TrainSettings, args, maps["train"],
                                         base=TrainSettings(**mmc.AS_TRAIN_DEFAULTS))
    setting, cfg, training = mmc.as_configs_from_args(args, maps, settings.n_envs)
    return {"settings": settings, "setting": setting, "as": cfg, "training": training,
            "ppo": mmc.as_ppo_config_from_args(args, maps["ppo"]), "seed": args.seed}


def _resume_as_run(args: argparse.Namespace, maps: dict[str, dict[str, str]]
                   ) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The saved configs of an ``--env as_model`` run (loop settings may change, as for the market)."""
    from ppo_config import PPOConfig

    run_dir = Path(args.resume)
    params_file = run_dir / "params.json"
    params = _read_params(params_file)
    given = [*_market_flags(args, maps), *mmc.given_as_flags(args, maps), *(d for d in maps["ppo"] if hasattr(args, d))]
    if given:
        raise utils.CliError(f"--resume uses the run's saved config; cannot change {sorted(given)}")
    settings = utils.dataclass_from_dict(TrainSettings, params["train_settings"], source=str(params_file))
    settings = utils.dataclass_from_args(TrainSettings, args, maps["train"], base=settings)
    setting, cfg, training = mmc.as_configs_from_params(params, settings.n_envs, str(params_file))
    ppo = utils.dataclass_from_dict(PPOConfig, params["ppo_config"], source=str(params_file))
    return run_dir, {"settings": settings, "setting": setting, "as": cfg, "training": training, "ppo": ppo,
                     "seed": int(params["seed"])}, params


def _new_as_run(args: argparse.Namespace, run: dict[str, Any], envs: Any) -> tuple[Any, Path, dict[str, Any]]:
    """A fresh agent (seeded as ``model_market.train_as_model`` seeds it), its run folder and ``params.json``."""
    from ppo_agent import PPOAgent

    seed = run["seed"]
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, run["ppo"], seed=seed)
    run_name = args.run_name or f"ppo_as_model_{run['setting']}_s{seed}"
    run_dir = Path(args.results_dir) / f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=False)
    params = {
        "run_name": run_name, "run_dir": str(run_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, *sys.argv], "seed": seed, "git_commit": git_commit(),
        **mmc.as_model_metadata(run["setting"], run["as"], run["training"]),
        "ppo_config": utils.dataclass_to_dict(run["ppo"]),
        "train_settings": utils.dataclass_to_dict(run["settings"]), "steps_per_episode": run["as"].n_steps,
        "versions": package_versions(), "device": device_info(agent), "resumed": [],
    }
    return agent, run_dir, params


def _symbol_of(files: Sequence[Path]) -> str:
    """A symbol-like token of the first file name (``synth_ETHUSDT_2h_...`` -> ``ETHUSDT``).

    >>> _symbol_of([Path("data/synth_ETHUSDT_2h_seed7.jsonl")])
    'ETHUSDT'
    """
    for tok in re.split(r"[_.\-]", Path(files[0]).name if files else ""):
        if len(tok) >= 5 and tok.isalnum() and tok.isupper():
            return tok
    return "data"


if __name__ == "__main__":
    cli.exit_quietly(main())
