"""Paired comparison of policies evaluated on the very same episodes, over several training seeds.

One job: turn per-episode results (one row per model, policy and episode) into the
statistics a sceptical reviewer asks for — per-policy means with confidence intervals and,
for every baseline, the *paired* difference agent − baseline on the same episodes with a
bootstrap 95 % CI and sign / Wilcoxon signed-rank p-values.

Public names:

- ``PairedDifference``: the result of one agent-vs-baseline comparison.
- ``paired_difference(agent, baseline, ...)``: the comparison for an agent matrix
  ``(n_models, n_episodes)`` against a baseline vector ``(n_episodes,)``.
- ``paired_table(episodes, ...)``: every baseline of an evaluation's per-episode table
  against the agent, as a ``DataFrame``.
- ``sign_test_p(diffs)``: the two-sided exact sign test.
- ``bootstrap_mean_ci(values, ...)``: the two-level bootstrap CI of the mean of a
  ``(n_models, n_episodes)`` grid (the CI of ``paired_difference``; ``evaluation.summarise``
  uses it for the agent's own mean over several models).

Method (written once here; the docs link to it):

- Pairing. Every policy ran on the same episode start times and env seeds, so episode
  ``e`` of the agent and of a baseline saw the same market. The unit of comparison is the
  per-episode difference ``d[s, e] = agent_s[e] - baseline[e]`` for each trained model ``s``
  (e.g. one per training seed). Baselines do not depend on the agent's seed.
- Point estimate: the mean of ``d`` over models and episodes.
- CI: a two-level percentile bootstrap. Each replicate resamples the episodes (with
  replacement, keeping the pairs together) and, independently, the models, and takes the
  mean of ``d`` over the resampled grid. With one model this is the ordinary paired
  bootstrap over episodes; with several it also carries the seed-to-seed spread of training
  into the interval. Seeded (``seed``), so the same table gives the same interval.
- p-values on the per-episode differences averaged over models, ``d̄[e]``: the exact
  two-sided sign test (ties dropped) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  two-sided, zero differences dropped; ``nan`` with fewer than 2 non-zero differences).
  Both are tests of "no difference", not of the CI's coverage; the CI is the primary figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = ["PairedDifference", "bootstrap_mean_ci", "paired_difference", "paired_table", "sign_test_p"]


@dataclass(frozen=True)
class PairedDifference:
    """Agent − baseline on the same episodes (quote currency per episode for PnL)."""

    mean: float
    """Mean of the paired differences over models and episodes."""
    ci_lo: float
    """Lower end of the bootstrap CI of ``mean``."""
    ci_hi: float
    """Upper end of the bootstrap CI of ``mean``."""
    sign_p: float
    """Two-sided exact sign-test p-value of the model-averaged per-episode differences."""
    wilcoxon_p: float
    """Two-sided Wilcoxon signed-rank p-value of the same differences (nan if < 2 non-zero)."""
    n_episodes: int
    """Episodes paired."""
    n_models: int
    """Trained models (seeds) averaged."""
    share_positive: float
    """Share of episodes where the model-averaged difference is > 0."""


def sign_test_p(diffs: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided sign test of "median difference 0"; zero differences are dropped.

    Args:
        diffs: paired differences.

    Returns:
        ``min(1, 2 * P(X <= min(n+, n-)))`` for ``X ~ Binomial(n+ + n-, 1/2)``; 1.0 when no
        difference is non-zero.

    >>> sign_test_p([1, 2, 3, 4, 5])          # 5 of 5 positive: 2 * 0.5**5
    0.0625
    >>> sign_test_p([1, -1, 0])
    1.0
    """
    d = np.asarray(diffs, dtype=np.float64)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    n = pos + neg
    if n == 0:
        return 1.0
    k = min(pos, neg)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def _wilcoxon_p(d: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    nz = d[d != 0]
    if len(nz) < 2:
        return float("nan")
    return float(wilcoxon(nz, alternative="two-sided").pvalue)


def bootstrap_mean_ci(values: np.ndarray, *, n_boot: int = 10_000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Two-level percentile-bootstrap CI of the mean of a ``(n_models, n_episodes)`` grid.

    Each replicate resamples the episodes (columns) and, independently, the models (rows)
    with replacement and takes the mean over the resampled grid (module docstring). With
    one model it is the ordinary bootstrap over episodes.

    Args:
        values: ``(n_models, n_episodes)`` (or ``(n_episodes,)``) finite values.
        n_boot: bootstrap replicates.
        level: CI level.
        seed: seeds the bootstrap.

    Returns:
        ``(lo, hi)``.

    >>> bootstrap_mean_ci(np.array([[1.0, 1.0], [3.0, 3.0]]), n_boot=200)[0] >= 1.0
    True
    >>> bootstrap_mean_ci(np.full((2, 3), 2.5))
    (2.5, 2.5)
    """
    d = np.atleast_2d(np.asarray(values, dtype=np.float64))
    n_s, n_e = d.shape
    rng = np.random.default_rng(seed)
    # resample episodes and models independently; counts make the mean one einsum
    w_e = np.stack([np.bincount(rng.integers(0, n_e, n_e), minlength=n_e) for _ in range(n_boot)])
    w_s = np.stack([np.bincount(rng.integers(0, n_s, n_s), minlength=n_s) for _ in range(n_boot)])
    boot = np.einsum("bs,se,be->b", w_s, d, w_e) / (n_s * n_e)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_difference(agent: np.ndarray, baseline: np.ndarray, *, n_boot: int = 10_000,
                      level: float = 0.95, seed: int = 0) -> PairedDifference:
    """Paired agent − baseline difference with a two-level bootstrap CI (module docstring).

    Args:
        agent: ``(n_models, n_episodes)`` (or ``(n_episodes,)`` for one model) of the agent's
            per-episode values.
        baseline: ``(n_episodes,)`` of the baseline's values on the same episodes.
        n_boot: bootstrap replicates.
        level: CI level.
        seed: seeds the bootstrap.

    Returns:
        A ``PairedDifference``.

    Raises:
        ValueError: shapes do not pair up, fewer than 2 episodes, or a non-finite value.

    >>> r = paired_difference(np.array([[3.0, 1.0, 2.0, 4.0]]), np.array([1.0, 1.0, 1.0, 1.0]))
    >>> r.mean, r.sign_p, r.n_episodes, r.share_positive     # diffs 2, 0, 1, 3
    (1.5, 0.25, 4, 0.75)
    >>> r.ci_lo <= 1.5 <= r.ci_hi
    True
    """
    a = np.atleast_2d(np.asarray(agent, dtype=np.float64))
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"agent has {a.shape[1]} episodes per model but the baseline {b.shape[0]}")
    if b.shape[0] < 2:
        raise ValueError(f"need at least 2 paired episodes, got {b.shape[0]}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired values must be finite (an episode without a result cannot be paired)")
    d = a - b[None, :]
    n_s, n_e = d.shape
    lo, hi = bootstrap_mean_ci(d, n_boot=n_boot, level=level, seed=seed)
    per_episode = d.mean(axis=0)
    return PairedDifference(
        mean=float(d.mean()), ci_lo=float(lo), ci_hi=float(hi), sign_p=sign_test_p(per_episode),
        wilcoxon_p=_wilcoxon_p(per_episode), n_episodes=n_e, n_models=n_s,
        share_positive=float(np.mean(per_episode > 0)),
    )


def paired_table(episodes: pd.DataFrame, *, agent: str = "agent", metric: str = "pnl",
                 model_col: str = "model", episode_col: str = "episode", n_boot: int = 10_000,
                 seed: int = 0) -> pd.DataFrame:
    """Every baseline against the agent on the same episodes.

    Args:
        episodes: one row per (model, policy, episode) with columns ``policy``,
            ``episode_col``, ``metric`` and, for several models, ``model_col`` (baseline rows
            may carry any model value; a baseline evaluated once per model is averaged per
            episode — deterministic baselines give identical rows).
        agent: the policy name of the agent rows.
        metric: the column compared.
        model_col: column naming the model (e.g. the training seed's run); optional.
        episode_col: column of the episode index (the pairing key).
        n_boot: bootstrap replicates.
        seed: bootstrap seed.

    Returns:
        One row per baseline: ``baseline``, ``diff_mean``, ``diff_ci_lo``, ``diff_ci_hi``,
        ``sign_p``, ``wilcoxon_p``, ``n_episodes``, ``n_models``, ``share_positive``.

    Raises:
        ValueError: no agent rows, or a baseline missing episodes the agent has.
    """
    ag = episodes[episodes["policy"] == agent]
    if ag.empty:
        raise ValueError(f"no rows of policy {agent!r} to compare against")
    models = ag[model_col] if model_col in ag else pd.Series(0, index=ag.index)
    mat = ag.assign(_m=models.values).pivot_table(index="_m", columns=episode_col, values=metric,
                                                  aggfunc="mean")
    rows = []
    for name, grp in episodes[episodes["policy"] != agent].groupby("policy", sort=False):
        base = grp.groupby(episode_col)[metric].mean()
        missing = sorted(set(mat.columns) - set(base.index))
        if missing:
            raise ValueError(f"baseline {name!r} lacks episodes {missing[:5]} that the agent has")
        r = paired_difference(mat.to_numpy(), base.loc[mat.columns].to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({"baseline": name, **{("diff_" + k if k in ("mean", "ci_lo", "ci_hi") else k): v
                                          for k, v in asdict(r).items()}})
    return pd.DataFrame(rows)
