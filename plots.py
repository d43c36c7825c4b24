"""Figures of a training run and of an evaluation (matplotlib, Agg backend, atomic PNG saves).

One job: draw. Every number drawn comes from elsewhere: the training log written by
``train.py``, the evaluation tables of ``evaluate.py`` and, for the episode figure, the
env's own per-fill markouts (``info["episode"]["fills"]``); nothing is recomputed here.

Public names:

- ``save_figure``: render a figure to PNG in memory and write it atomically.
- ``plot_training_curves``: the training curves of a run (``training_curves.png``), with
  the collapse diagnostics (``ACTION_GROUP_COLUMNS`` and the other ``diag/`` columns).
- ``plot_evaluation_comparison``: the policies of an evaluation side by side.
- ``plot_episode``: one episode of one policy: quotes and fills, inventory, PnL split, markouts.
- ``plot_sweep``: a sweep of ``sweep.py``: the objective by hyperparameter and the seed spread
  of every configuration.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from utils import atomic_write_bytes, horizon_label


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (render to memory, then atomic write) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _col(df: Any, name: str) -> np.ndarray | None:
    if name in df.columns:
        values = np.asarray(df[name], dtype=np.float64)
        if np.isfinite(values).any():
            return values
    return None


def _merged_legend(ax: Any, twin: Any, **kw: Any) -> None:
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    if h1 + h2:
        ax.legend(h1 + h2, l1 + l2, fontsize=8, **kw)


# ---------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------


class _LogLines:
    """Draws columns of a training log against the environment steps."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.x = np.asarray(log["timesteps"], dtype=np.float64) if len(log) else np.array([])

    def __call__(self, ax: Any, col: str, label: str, marker_always: bool = False, **kw: Any) -> None:
        # Episode metrics exist only for updates in which an episode finished: join the
        # points that exist instead of leaving gaps (markers show where they are).
        y = _col(self.log, col)
        if y is not None:
            ok = np.isfinite(y)
            marker = "." if marker_always or ok.sum() < 60 else None
            ax.plot(self.x[ok], y[ok], label=label, marker=marker, **kw)


def _reward_panel(ax: Any, line: _LogLines, eval_log: Any) -> None:
    line(ax, "reward", "episode reward", color="tab:blue")
    ax.set_ylabel("reward")
    ax2 = ax.twinx()
    line(ax2, "pnl", "episode PnL (train)", marker_always=True, color="tab:orange")
    if eval_log is not None and len(eval_log):
        ax2.plot(eval_log["timesteps"], eval_log["eval_pnl_mean"], "o--", color="tab:red",
                 label="PnL (held-out eval)")
    # A policy that never quotes never trades: its PnL is exactly 0 every episode.
    ax2.axhline(0.0, color="black", lw=1.0, ls=":",
                label="do nothing (never quote): PnL = 0 per episode")
    ax2.set_ylabel("PnL (quote ccy)")
    _align_zero(ax, ax2)
    _merged_legend(ax, ax2, loc="best")
    ax.set_title("Reward vs PnL (0 = the value of doing nothing)")


def _align_zero(ax: Any, ax2: Any) -> None:
    """Put 0 at the same height on both y axes (the do-nothing line serves both)."""
    for a in (ax, ax2):
        lo, hi = a.get_ylim()
        if not (lo < 0.0 < hi):
            a.set_ylim(min(lo, -abs(hi) * 0.05 - 1e-9), max(hi, abs(lo) * 0.05 + 1e-9))
    (l1, h1), (l2, h2) = ax.get_ylim(), ax2.get_ylim()
    f = max(-l1 / (h1 - l1), -l2 / (h2 - l2))  # height of 0 as a share of each axis
    f = min(max(f, 0.05), 0.95)
    ax.set_ylim(min(l1, -f * h1 / (1 - f)), max(h1, -l1 * (1 - f) / f))
    ax2.set_ylim(min(l2, -f * h2 / (1 - f)), max(h2, -l2 * (1 - f) / f))


def _loss_panel(ax: Any, line: _LogLines) -> None:
    line(ax, "policy_loss", "policy loss")
    line(ax, "value_loss", "value loss")
    ax.set_yscale("symlog", linthresh=1e-3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Losses")


def _entropy_panel(ax: Any, line: _LogLines) -> None:
    line(ax, "entropy", "policy entropy", color="tab:green")
    u = _col(line.log, "diag/entropy_uniform")
    if u is not None:
        h = float(np.nanmax(u))
        ax.axhline(h, color="black", ls=":", lw=1.0,
                   label=f"uniform policy: ln {int(round(np.exp(h)))} = {h:.2f}")
        ax.set_ylim(0.0, h * 1.08)  # 0 = deterministic; the whole range, not the noise near ln n
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Entropy (falls as the policy commits)")


def _explained_variance_panel(ax: Any, line: _LogLines) -> None:
    line(ax, "explained_variance", "explained variance", color="tab:purple")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axhline(1.0, color="black", lw=0.6, ls=":")
    ax.set_title("Value function: explained variance (1 = perfect, <= 0 = useless)")


ACTION_GROUP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("diag/action_hold", "hold"), ("diag/action_quote_bid", "quote bid"),
    ("diag/action_quote_ask", "quote ask"), ("diag/action_quote_both", "quote both"),
    ("diag/action_cancel", "cancel"), ("diag/action_market", "market order"),
)
"""Training-log columns of the discrete action groups and their labels (stacked in the figure)."""


def _actions_panels(ax: Any, ax2: Any, line: _LogLines) -> None:
    """Discrete: the share of each action group and the quote actions' offsets; continuous: each side's offset."""
    log = line.log
    shares = [(_col(log, c), label) for c, label in ACTION_GROUP_COLUMNS]
    if any(v is not None for v, _ in shares):
        ys = [np.nan_to_num(v) if v is not None else np.zeros_like(line.x) for v, _ in shares]
        ax.stackplot(line.x, *ys, labels=[label for _, label in shares], alpha=0.85)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
        ax.set_title("Actions taken (share per update)")
        # the offsets of the quote actions taken: quoting ever further behind is the other
        # road to passivity (quotes resting where nobody trades)
        for side, color in (("bid", "tab:green"), ("ask", "tab:red")):
            line(ax2, f"diag/{side}_offset_mean", f"{side} quotes: mean offset", color=color)
        ax2.axhline(0.0, color="black", lw=0.8)
        ax2.set_ylabel("ticks (0 = join the best, > 0 = behind, < 0 = inside)")
        if ax2.get_legend_handles_labels()[0]:
            ax2.legend(fontsize=8)
        ax2.set_title("Offset of the quote actions taken")
        return
    for a, side, color in ((ax, "bid", "tab:green"), (ax2, "ask", "tab:red")):
        mean, lo, mid, hi = (_col(log, f"diag/{side}_offset_{k}") for k in ("mean", "q10", "q50", "q90"))
        if mean is not None:
            a.fill_between(line.x, lo, hi, color=color, alpha=0.2, label="10-90 % of actions")
            a.plot(line.x, mid, color=color, lw=1.0, ls="--", label="median")
            a.plot(line.x, mean, color=color, lw=1.5, label="mean")
            a.axhline(0.0, color="black", lw=0.8)
            a.legend(fontsize=8)
        a.set_ylabel("ticks (0 = join the best, > 0 = behind, < 0 = inside)")
        a.set_title(f"Quoted {side} offset (continuous action)")


def _quoted_panel(ax: Any, line: _LogLines) -> None:
    line(ax, "diag/quoted_bid_share", "bid resting (training rollout)", color="tab:green")
    line(ax, "diag/quoted_ask_share", "ask resting (training rollout)", color="tab:red")
    line(ax, "eval/quoted_bid_share", "bid (held-out eval, deterministic)", marker_always=True,
         color="tab:green", ls="--")
    line(ax, "eval/quoted_ask_share", "ask (held-out eval, deterministic)", marker_always=True,
         color="tab:red", ls="--")
    ax.set_ylim(-0.02, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Share of decision steps with a quote (0 = passive)")


def _fills_panel(ax: Any, line: _LogLines) -> None:
    line(ax, "diag/fills_per_episode", "rollout rate x steps per episode", color="tab:blue")
    line(ax, "n_fills", "finished training episodes", marker_always=True, color="tab:orange", ls="none")
    line(ax, "eval/n_fills", "held-out eval (deterministic)", marker_always=True, color="tab:red", ls="--")
    ax.axhline(0.0, color="black", lw=0.8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Fills per episode")


def _step_axes(axes: Any) -> None:
    from matplotlib.ticker import EngFormatter, MaxNLocator

    for ax in axes.flat:
        ax.set_xlabel("environment steps")
        # 20k, 40k, ... instead of 20000 40000 running into each other.
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.grid(alpha=0.3)
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)


def plot_training_curves(log: Any, path: str | os.PathLike, eval_log: Any = None) -> Path:
    """Draw the training curves of a run into one PNG (3 x 4 panels, x axis: environment steps).

    Row 1, outcomes: episode reward vs episode PnL (with the held-out evaluation PnL when
    given, and the value of doing nothing: a policy that never quotes earns exactly 0 per
    episode), fill ratio, adverse-selection ratio, maker-volume ratio. Row 2, learning:
    inventory (mean |q| and max |q|), policy and value losses, entropy with the uniform
    policy's entropy as a reference (discrete), explained variance. Row 3, collapse
    diagnostics (``diag/`` columns): the actions taken (discrete: share of each action
    group, stacked, and the mean tick offset of the quote actions per side; continuous:
    the mean and 10/50/90 % quantiles of each side's quoted offset), the share of decision
    steps with a resting bid / ask quote and the fills per episode, each for the sampled policy of the training rollouts
    and, where a periodic held-out evaluation ran, the deterministic policy. Collapse to
    passivity shows as hold + cancel -> 1 or the quotes' offsets growing, quoted shares and
    fills -> 0, entropy falling and the PnL going to the do-nothing line.

    Args:
        log: ``pandas.DataFrame`` of ``training_log.csv`` (columns as documented there).
        path: the PNG to write.
        eval_log: optional DataFrame with ``timesteps`` and ``eval_pnl_mean`` columns.

    Returns:
        The written path.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(20, 11.5), constrained_layout=True)
    line = _LogLines(log)
    _reward_panel(axes[0, 0], line, eval_log)
    for ax, col, title in (
        (axes[0, 1], "fill_ratio", "Fill ratio (fills / orders placed)"),
        (axes[0, 2], "adverse_selection_ratio", "Adverse-selection ratio"),
        (axes[0, 3], "maker_volume_ratio", "Maker-volume ratio"),
    ):
        line(ax, col, col)
        ax.set_title(title)
    ax = axes[1, 0]
    line(ax, "inventory_abs_mean", "mean |inventory|")
    line(ax, "inventory_max_abs", "max |inventory|", linestyle="--")
    ax.set_title("Inventory (lots)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _loss_panel(axes[1, 1], line)
    _entropy_panel(axes[1, 2], line)
    _explained_variance_panel(axes[1, 3], line)
    _actions_panels(axes[2, 0], axes[2, 1], line)
    _quoted_panel(axes[2, 2], line)
    _fills_panel(axes[2, 3], line)
    _step_axes(axes)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------
# Evaluation comparison
# ---------------------------------------------------------------------------------------


def _paired_panel(ax: Any, paired: Any) -> None:
    """Agent − baseline on the same episodes: mean with its paired bootstrap CI, sign-test p."""
    ok = paired is not None and len(paired) and np.isfinite(np.asarray(paired["diff_mean"], float)).any()
    if ok:
        names = list(paired["baseline"])
        pos = np.arange(len(names))
        mean = np.asarray(paired["diff_mean"], dtype=np.float64)
        lo = np.asarray(paired["diff_ci_lo"], dtype=np.float64)
        hi = np.asarray(paired["diff_ci_hi"], dtype=np.float64)
        colors = ["tab:green" if a > 0 else "tab:red" if b < 0 else "tab:gray" for a, b in zip(lo, hi, strict=True)]
        ax.bar(pos, mean, color=colors, yerr=np.vstack([mean - lo, hi - mean]), capsize=4)
        for x, m, p in zip(pos, mean, np.asarray(paired["sign_p"], dtype=np.float64), strict=True):
            ax.annotate(f"p={p:.2g}", (x, m), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 3), textcoords="offset points")
        ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=9)
        r = paired.iloc[0]
        ax.set_title(f"Agent − baseline PnL, paired ({int(r['n_episodes'])} ep, "
                     f"{int(r['n_models'])} model(s), 95% CI)", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no paired comparison\n(needs the agent, a baseline, >= 2 episodes)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Agent − baseline PnL, paired")
    ax.axhline(0, color="black", lw=0.8)
    ax.grid(alpha=0.3, axis="y")


def _quoted_bars(ax: Any, summary: Any, pos: np.ndarray, names: list[str]) -> None:
    for col, dx, color, label in (("quoted_bid_share", -0.2, "tab:green", "bid"),
                                  ("quoted_ask_share", 0.2, "tab:red", "ask")):
        if col in summary.columns:
            ax.bar(pos + dx, np.asarray(summary[col], dtype=np.float64), width=0.4, color=color, label=label)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title("Share of steps with a resting quote")


def plot_evaluation_comparison(
    summary: Any, episodes: Any, path: str | os.PathLike, markout_columns: Sequence[str] = (),
    paired: Any = None,
) -> Path:
    """Compare the policies of an evaluation in one PNG.

    Panels: mean PnL with its 95% bootstrap CI; the PnL of each episode (box plot with the
    points; every model's episodes for the agent); fill ratio; the paired difference agent −
    each baseline with its bootstrap CI and sign-test p (green: CI above 0, red: below);
    adverse-selection ratio; mean |inventory|; mean markout curve by horizon; share of
    steps with a resting bid / ask quote.

    Args:
        summary: ``pandas.DataFrame`` of ``evaluation_summary.csv`` (one row per policy).
        episodes: ``pandas.DataFrame`` of ``episodes.csv`` (one row per model, policy and episode).
        path: the PNG to write.
        markout_columns: the ``markout_bps_<h>`` columns of ``summary``, shortest first.
        paired: ``pandas.DataFrame`` of ``paired_differences.csv``, or ``None``.

    Returns:
        The written path.
    """
    plt = _pyplot()
    names = list(summary["policy"])
    pos = np.arange(len(names))
    colors = [f"C{i}" for i in range(len(names))]
    fig, axes = plt.subplots(2, 4, figsize=(20, 8), constrained_layout=True)
    _paired_panel(axes[0, 3], paired)
    _quoted_bars(axes[1, 3], summary, pos, names)
    ax = axes[0, 0]
    mean = np.asarray(summary["pnl_mean"], dtype=np.float64)
    lo = np.asarray(summary["pnl_ci95_low"], dtype=np.float64)
    hi = np.asarray(summary["pnl_ci95_high"], dtype=np.float64)
    ax.bar(pos, mean, color=colors, yerr=np.vstack([mean - lo, hi - mean]), capsize=4)
    ax.set_title("Mean PnL per episode (95% bootstrap CI)")
    ax.axhline(0, color="black", lw=0.8)
    ax = axes[0, 1]
    data = [np.asarray(episodes.loc[episodes["policy"] == n, "pnl"], dtype=np.float64) for n in names]
    ax.boxplot(data, positions=pos, widths=0.5, showfliers=False)
    for i, d in enumerate(data):
        jitter = (np.arange(d.size) - d.size / 2) * (0.3 / max(d.size, 1))
        ax.plot(np.full(d.size, pos[i]) + jitter, d, "o", color=colors[i], alpha=0.6, ms=4)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_title("PnL of each episode")
    for ax, col, title in (
        (axes[0, 2], "fill_ratio", "Fill ratio"),
        (axes[1, 0], "adverse_selection_ratio", "Adverse-selection ratio"),
        (axes[1, 1], "inventory_abs_mean", "Mean |inventory| (lots)"),
    ):
        if col in summary.columns:
            ax.bar(pos, np.asarray(summary[col], dtype=np.float64), color=colors)
        ax.set_title(title)
    for ax in (*axes[0, :3], *axes[1, :2]):
        ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    ax = axes[1, 2]
    if markout_columns:
        labels = [c.replace("markout_bps_", "") for c in markout_columns]
        for i, n in enumerate(names):
            ax.plot(labels, np.asarray(summary.loc[summary["policy"] == n, list(markout_columns)],
                                       dtype=np.float64).reshape(-1), "o-", color=colors[i], label=n)
        ax.axhline(0, color="black", lw=0.8)
        ax.legend(fontsize=8)
    ax.set_title("Mean markout of fills (bps; < 0 = adverse)")
    ax.set_xlabel("horizon")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------
# One episode
# ---------------------------------------------------------------------------------------


def fill_markout_rows(fills: Sequence[dict[str, Any]], n_horizons: int) -> np.ndarray:
    """The env's markouts of each fill as an ``(n_fills, n_horizons)`` array (``nan`` = unresolved).

    >>> fill_markout_rows([{"markouts_bps": [1.5, None]}, {}], 2)
    array([[1.5, nan],
           [nan, nan]])
    """
    out = np.full((len(fills), n_horizons), np.nan)
    for i, f in enumerate(fills):
        for j, v in enumerate((f.get("markouts_bps") or [])[:n_horizons]):
            if v is not None:
                out[i, j] = float(v)
    return out


def _quotes_panel(ax: Any, t: np.ndarray, t0: float, trace: dict[str, Any], fills: list[dict],
                  title: str) -> None:
    ax.plot(t, np.asarray(trace["mid"], dtype=np.float64), color="black", lw=1.0, label="mid")
    for key, color, label in (("best_bid", "tab:green", "best bid"), ("best_ask", "tab:red", "best ask")):
        if key in trace:
            ax.plot(t, np.asarray(trace[key], dtype=np.float64), color=color, lw=0.5, alpha=0.35,
                    label=label)
    ax.step(t, np.asarray(trace["quote_bid"], dtype=np.float64), where="post", color="tab:green",
            lw=1.3, label="our bid quote")
    ax.step(t, np.asarray(trace["quote_ask"], dtype=np.float64), where="post", color="tab:red",
            lw=1.3, label="our ask quote")
    for side, marker, color, label in ((1, "^", "tab:green", "our buy fill"),
                                       (-1, "v", "tab:red", "our sell fill")):
        fs = [f for f in fills if int(f["side"]) == side]
        if fs:
            ft = (np.array([f["ts"] for f in fs], dtype=np.float64) - t0) / 1000.0
            fp = np.array([f["price"] for f in fs], dtype=np.float64)
            maker = np.array([bool(f.get("maker", True)) for f in fs])
            ax.scatter(ft[maker], fp[maker], marker=marker, s=70, color=color, edgecolor="black",
                       zorder=5, label=f"{label} (maker)")
            if (~maker).any():
                ax.scatter(ft[~maker], fp[~maker], marker=marker, s=70, facecolor="none",
                           edgecolor=color, zorder=5, label=f"{label} (taker)")
    ax.set_ylabel("price")
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    ax.set_title(title or "Episode")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def _pnl_panel(ax: Any, t: np.ndarray, ts: np.ndarray, trace: dict[str, Any], fills: list[dict]) -> None:
    """Cumulative PnL and its split on the step grid: spread capture, fees, inventory PnL."""
    mid = np.asarray(trace["mid"], dtype=np.float64)
    pnl = np.asarray(trace["pnl"], dtype=np.float64)
    spread = np.zeros_like(t)
    fees = np.zeros_like(t)
    for f in fills:
        k = int(np.searchsorted(ts, float(f["ts"]), side="left"))
        k = min(k, max(ts.size - 1, 0))
        # the mid at the fill: the env's when it gives one, else the last sampled mid before it
        m = f.get("mid")
        if m is None:
            j = max(int(np.searchsorted(ts, float(f["ts"]), side="right")) - 1, 0)
            m = mid[j] if mid.size else float(f["price"])
        spread[k:] += int(f["side"]) * (float(m) - float(f["price"])) * float(f["size"])
        fees[k:] += float(f.get("fee", 0.0))
    ax.plot(t, pnl, color="black", lw=1.6, label="total PnL")
    ax.plot(t, spread, color="tab:blue", label="spread capture")
    ax.plot(t, pnl - spread + fees, color="tab:orange", label="inventory PnL")
    ax.plot(t, -fees, color="tab:gray", label="−fees (rebates > 0)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel("cumulative PnL")
    ax.set_xlabel("time since episode start (s)")
    ax.legend(fontsize=8, ncol=4, loc="upper left")


def _markout_panel(ax: Any, fills: list[dict], horizons_ms: Sequence[float]) -> None:
    labels = [horizon_label(float(h)) for h in horizons_ms]
    if fills and labels:
        mk = fill_markout_rows(fills, len(labels))
        xs = np.arange(len(labels))
        for row, f in zip(mk, fills, strict=True):
            ax.plot(xs, row, color="tab:green" if int(f["side"]) > 0 else "tab:red", alpha=0.25, lw=0.8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan horizons
            ax.plot(xs, np.nanmean(mk, axis=0), "o-", color="black", lw=2,
                    label=f"mean over {len(fills)} fills")
        ax.set_xticks(xs, labels)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no fills in this episode", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("markout horizon (green = buys, red = sells)")
    ax.set_ylabel("markout (bps)")
    ax.grid(alpha=0.3)


def plot_episode(trace: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Draw one episode of a policy: quotes and fills, inventory, PnL decomposition, markouts.

    Panels (time in seconds from the episode start):

    1. mid price with the best bid/ask, the agent's resting bid (green) and ask (red)
       quotes, and its fills (green ▲ = our buy, red ▼ = our sell; filled = maker);
    2. inventory (lots);
    3. cumulative PnL and its split: spread capture ``Σ side·(mid_at_fill − price)·size``,
       fees (cumulative, drawn as −fees), inventory PnL = total − spread capture + fees;
    4. the env's markout of every fill at each of its horizons (bps) and their mean.

    Args:
        trace: dict with equal-length arrays ``ts`` (ms), ``mid``, ``best_bid``,
            ``best_ask``, ``quote_bid``, ``quote_ask`` (nan where no order), ``inventory``,
            ``pnl``; ``fills``: the env's ``info["episode"]["fills"]`` (dicts with ``ts``,
            ``side``, ``price``, ``size``, ``maker``, ``fee``, ``mid`` and ``markouts_bps``);
            ``markout_horizons_ms``: the env's ``info["episode"]["markout_horizons_ms"]``.
        path: the PNG to write.
        title: figure title.

    Returns:
        The written path.
    """
    plt = _pyplot()
    ts = np.asarray(trace["ts"], dtype=np.float64)
    t0 = ts[0] if ts.size else 0.0
    t = (ts - t0) / 1000.0
    fills = list(trace.get("fills", []))
    fig = plt.figure(figsize=(14, 12), constrained_layout=True)
    gs = fig.add_gridspec(4, 1, height_ratios=[3, 1.2, 2, 1.8])
    ax0 = fig.add_subplot(gs[0])
    ax1 = fig.add_subplot(gs[1], sharex=ax0)
    ax2 = fig.add_subplot(gs[2], sharex=ax0)
    _quotes_panel(ax0, t, t0, trace, fills, title)
    ax1.step(t, np.asarray(trace["inventory"], dtype=np.float64), where="post", color="tab:purple")
    ax1.axhline(0, color="black", lw=0.6)
    ax1.set_ylabel("inventory (lots)")
    _pnl_panel(ax2, t, ts, trace, fills)
    for ax in (ax0, ax1, ax2):
        ax.grid(alpha=0.3)
    plt.setp(ax0.get_xticklabels(), visible=False)
    plt.setp(ax1.get_xticklabels(), visible=False)
    _markout_panel(fig.add_subplot(gs[3]), fills, trace.get("markout_horizons_ms") or ())
    return save_figure(fig, path)


def _param_panel(ax: Any, trials: Any, configs: Any, param: str, objective: str) -> None:
    """Objective of every finished trial against one swept value, with the mean per value."""
    ok = trials[trials["status"] == "finished"]
    values = list(dict.fromkeys(configs[param].tolist())) if len(configs) else []
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and len(values) > 1
    order = sorted(values) if numeric else values
    pos = {v: i for i, v in enumerate(order)}
    for seed, g in ok.groupby("seed"):
        x = np.array([pos.get(v, np.nan) for v in g[param]], dtype=np.float64)
        ax.scatter(x + 0.06 * (int(seed) % 5 - 2), g["objective"].astype(float), s=18, alpha=0.7,
                   label=f"seed {seed}")
    means = ok.groupby(param)["objective"].mean() if len(ok) else {}
    ys = [float(means[v]) if v in means else np.nan for v in order]
    ax.plot(range(len(order)), ys, "k-", lw=1.2, marker="_", ms=16, label="mean over seeds and other values")
    ax.set_xticks(range(len(order)), [f"{v:.4g}" if isinstance(v, float) else str(v) for v in order])
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel(param)
    ax.set_ylabel(objective)
    ax.grid(alpha=0.3)


def plot_sweep(trials: Any, configs: Any, params: Sequence[str], path: str | os.PathLike,
               objective: str = "objective", best: str | None = None) -> Path:
    """The figure of a sweep (``sweep.py``): the objective by hyperparameter and by configuration.

    Top row: one panel per swept parameter: every finished trial's objective at its value
    (one colour per seed) and the mean per value. Bottom: every configuration's seeds (dots),
    their mean (bar) and ±1 std, best first, the best configuration highlighted: the seed
    spread of the best configuration beside the others.

    Args:
        trials: ``summary.csv`` (one row per trial: ``status``, ``seed``, the parameters, ``objective``).
        configs: ``configs.csv`` (one row per configuration, ranked; ``label``, ``objective_mean``,
            ``objective_std``, ``objective_by_seed``).
        params: the swept parameters (columns of both tables).
        path: the PNG to write.
        objective: the objective's name (axis label).
        best: the ``label`` of the best configuration.

    Returns:
        The written path.
    """
    plt = _pyplot()
    n = max(1, len(params))
    fig = plt.figure(figsize=(max(10, 4.2 * n), 8.5), constrained_layout=True)
    gs = fig.add_gridspec(2, n, height_ratios=[1, 1.15])
    for i, p in enumerate(params):
        ax = fig.add_subplot(gs[0, i])
        _param_panel(ax, trials, configs, p, objective)
        if i == 0:
            ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[1, :])
    labels = list(configs["label"]) if len(configs) else []
    for i, row in enumerate(configs.itertuples()):
        by_seed = [float(v) for v in str(row.objective_by_seed).split()] if str(row.objective_by_seed) not in ("", "nan") else []
        colour = "tab:red" if row.label == best else "tab:blue"
        if np.isfinite(row.objective_mean):
            ax.bar(i, row.objective_mean, color=colour, alpha=0.25, width=0.6)
        if np.isfinite(row.objective_std):
            ax.errorbar(i, row.objective_mean, yerr=row.objective_std, color=colour, capsize=4)
        ax.scatter(np.full(len(by_seed), i), by_seed, color=colour, s=22, zorder=3)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(range(len(labels)), [lb.replace(", ", "\n") for lb in labels], fontsize=7)
    ax.set_ylabel(f"{objective}\n(dots: seeds; bar: mean; line: ±1 std)")
    ax.set_title(f"configurations ranked by mean {objective}; best in red" if best else
                 "configurations (no finished trial yet)")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)
