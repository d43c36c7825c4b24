"""Degenerate-result checks of an evaluation: what makes a table of numbers *not* a finding.

One job: look at an evaluation's episodes and summary and flag what a sceptical reviewer
would reject — each as a warning printed under the tables and a ``flags`` entry of the
policy's row in ``evaluation_summary.csv`` (``;``-separated names):

| flag | condition | what it means |
|---|---|---|
| ``range_shorter_than_episode`` | the evaluation range holds less data than one ``episode_length_s`` | every episode is the whole range: one episode, repeated |
| ``repeated_starts`` | fewer distinct start times than episodes requested | the same episode counted several times |
| ``overlapping_episodes`` | the range fits fewer non-overlapping episodes than requested | correlated episodes, CIs too narrow |
| ``zero_variance`` | the policy's PnL is the same on every episode | no spread: CIs, Sharpe and p-values are meaningless |
| ``calibration_failed`` / ``calibration_few_orders`` | AS/GLFT intensity fit failed (A = k = 1 per tick) or used fewer than ``MIN_CALIBRATION_ORDERS`` aggressive orders | AS/GLFT quote with an arbitrary or noisy intensity |

Annualised Sharpe/Sortino (``*_ann`` columns) are left empty, with the reason in the
``annualisation`` column, unless the episodes are independent (no flag above but
calibration), at least ``MIN_ANNUALISE_EPISODES`` and of non-zero spread: multiplying a
per-episode ratio by ``sqrt(periods per year)`` (~324 for 5-minute episodes) turns noise on a
few correlated episodes into figures such as −2,817.

Public names: ``MIN_CALIBRATION_ORDERS``, ``MIN_ANNUALISE_EPISODES``, ``ANNUALISED_COLUMNS``,
``check`` (both below, logging the warnings), ``degenerate_flags``, ``annualisation_note``,
``apply_flags``, ``blank_paired`` (no CI or p-value over copies of one episode).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ANNUALISED_COLUMNS", "MIN_ANNUALISE_EPISODES", "MIN_CALIBRATION_ORDERS", "annualisation_note",
           "apply_flags", "blank_paired", "check", "degenerate_flags"]

MIN_CALIBRATION_ORDERS = 50
"""Fewer aggressive orders than this in the AS/GLFT intensity fit is flagged."""
MIN_ANNUALISE_EPISODES = 20
"""Annualised ratios need at least this many independent episodes."""
ANNUALISED_COLUMNS = ("sharpe_episode_ann", "sortino_episode_ann", "sharpe_step_ann", "sortino_step_ann")
"""The summary columns emptied when annualising is not meaningful."""
_CALIBRATED = ("avellaneda_stoikov", "glft")

logger = logging.getLogger(__name__)


def check(summary: pd.DataFrame, episodes: pd.DataFrame, n_episodes: int, n_fit: int, range_s: float,
          episode_length_s: float, calibration: Mapping[str, Any] | None
          ) -> tuple[pd.DataFrame, dict[str, list[str]], list[str]]:
    """``degenerate_flags`` then ``apply_flags``; logs each warning. Returns ``(summary, flags, warnings)``."""
    flags, warns = degenerate_flags(summary, episodes, n_episodes, n_fit, range_s, episode_length_s, calibration)
    for w in warns:
        logger.warning("%s", w)
    return apply_flags(summary, flags), flags, warns


def degenerate_flags(summary: pd.DataFrame, episodes: pd.DataFrame, n_episodes: int, n_fit: int,
                     range_s: float, episode_length_s: float,
                     calibration: Mapping[str, Any] | None) -> tuple[dict[str, list[str]], list[str]]:
    """``({policy: [flag, ...]}, [warning line, ...])`` of one evaluation (flags in the module docstring).

    Args:
        summary: one row per policy (``evaluation.summarise``).
        episodes: one row per model, policy and episode.
        n_episodes: episodes requested per policy.
        n_fit: non-overlapping episodes the range holds (``evaluation.episodes_that_fit``).
        range_s: seconds of data in the evaluation range.
        episode_length_s: the configured episode length.
        calibration: the AS/GLFT calibration record (``n_orders``, ``fit``) or ``None``.

    >>> s = pd.DataFrame({"policy": ["agent", "glft"], "pnl_std": [0.0, 1.0]})
    >>> e = pd.DataFrame({"start_ts": [5, 5]})
    >>> flags, warns = degenerate_flags(s, e, 2, 0, 13.0, 300.0, {"fit": "ok", "n_orders": 9})
    >>> flags["agent"], flags["glft"]
    (['range_shorter_than_episode', 'repeated_starts', 'overlapping_episodes', 'zero_variance'], \
['range_shorter_than_episode', 'repeated_starts', 'overlapping_episodes', 'calibration_few_orders'])
    """
    common, warns = [], []
    distinct = int(episodes["start_ts"].nunique()) if len(episodes) else 0
    if range_s < episode_length_s:
        common.append("range_shorter_than_episode")
        warns.append(f"degenerate: the evaluation range holds {range_s:.1f} s of data, less than one "
                     f"{episode_length_s:g} s episode: every episode is that whole range")
    if distinct < n_episodes:
        common.append("repeated_starts")
        warns.append(f"degenerate: {n_episodes} episodes requested but only {distinct} distinct start time(s): "
                     f"the same episode is counted {n_episodes / max(distinct, 1):.0f} times on average; "
                     "CIs and p-values treat copies as independent evidence")
    if n_fit < n_episodes:
        common.append("overlapping_episodes")
    flags: dict[str, list[str]] = {}
    zero = []
    for _, row in summary.iterrows():
        own = list(common)
        std = float(row["pnl_std"])
        if math.isfinite(std) and std == 0.0:
            own.append("zero_variance")
            zero.append(str(row["policy"]))
        if str(row["policy"]) in _CALIBRATED:
            own += _calibration_flags(calibration)
        flags[str(row["policy"])] = own
    if zero:
        warns.append(f"degenerate: {', '.join(zero)} scored the same PnL on every episode (std 0): no spread, "
                     "nothing to compare")
    cal = _calibration_flags(calibration)
    if cal and any(p in flags for p in _CALIBRATED):
        warns.append(f"degenerate: AS/GLFT intensity {_calibration_text(calibration)}: their quotes rest on it")
    return flags, warns


def _calibration_flags(calibration: Mapping[str, Any] | None) -> list[str]:
    if not calibration or "fit" not in calibration:
        return []
    if calibration["fit"] != "ok":
        return ["calibration_failed"]
    return ["calibration_few_orders"] if int(calibration.get("n_orders", 0)) < MIN_CALIBRATION_ORDERS else []


def _calibration_text(calibration: Mapping[str, Any]) -> str:
    if calibration["fit"] != "ok":
        return f"fit {calibration['fit']} (A = k = 1 per tick used)"
    return f"fitted on {calibration['n_orders']} aggressive orders (< {MIN_CALIBRATION_ORDERS})"


def blank_paired(paired: pd.DataFrame, flags: dict[str, list[str]]) -> pd.DataFrame:
    """The paired table with its CIs and p-values emptied (NaN) when episodes are repeated copies.

    Copies of one episode are not independent evidence: 30 copies give a sign-test p of 2e-9
    for a single comparison. The differences themselves stay.

    >>> t = pd.DataFrame({"diff_mean": [1.0], "diff_ci_lo": [1.0], "diff_ci_hi": [1.0], "sign_p": [2e-9],
    ...                   "wilcoxon_p": [4e-8]})
    >>> blank_paired(t, {"agent": ["repeated_starts"]})[["diff_mean", "sign_p"]].values.tolist()
    [[1.0, nan]]
    """
    if not any("repeated_starts" in f for f in flags.values()) or paired.empty:
        return paired
    out = paired.copy()
    out[["diff_ci_lo", "diff_ci_hi", "sign_p", "wilcoxon_p"]] = np.nan
    return out


def annualisation_note(flags: list[str], n_episodes: int, std: float) -> str | None:
    """Why the annualised ratios of a row are left empty, or ``None`` when they are reported.

    >>> annualisation_note([], 30, 1.0) is None
    True
    >>> annualisation_note(["overlapping_episodes"], 30, 1.0)
    'not annualised: overlapping_episodes'
    >>> annualisation_note([], 5, 1.0)
    'not annualised: 5 episodes (< 20)'
    """
    blocking = [f for f in flags if not f.startswith("calibration")]
    if blocking:
        return f"not annualised: {', '.join(blocking)}"
    if n_episodes < MIN_ANNUALISE_EPISODES:
        return f"not annualised: {n_episodes} episodes (< {MIN_ANNUALISE_EPISODES})"
    if not (math.isfinite(std) and std > 0):
        return "not annualised: no spread (std 0 or undefined)"
    return None


def apply_flags(summary: pd.DataFrame, flags: dict[str, list[str]]) -> pd.DataFrame:
    """The summary with its ``flags`` column filled and the annualised columns emptied where not meaningful.

    Emptied cells are NaN in the frame (an empty field in the CSV) and the reason replaces the
    ``annualisation`` text of that row; non-finite non-annualised ratios are NaN, never ±inf.
    """
    out = summary.copy()
    out["flags"] = [";".join(flags.get(str(p), [])) for p in out["policy"]]
    for i, row in out.iterrows():
        note = annualisation_note(flags.get(str(row["policy"]), []), int(row["n_episodes"]), float(row["pnl_std"]))
        if note is not None:
            out.loc[i, list(ANNUALISED_COLUMNS)] = np.nan
            out.loc[i, "annualisation"] = f"{note} (factors it would use: {row['annualisation']})"
    ratio_cols = [c for c in out.columns if c.startswith(("sharpe", "sortino"))]
    out[ratio_cols] = out[ratio_cols].astype(float).replace([np.inf, -np.inf], np.nan)
    return out
