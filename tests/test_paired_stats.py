"""Tests of paired_stats: the paired statistics by hand on small tables, a naive bootstrap, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import paired_stats as ps


def test_sign_and_wilcoxon_by_hand():
    # diffs 1..5 all positive: sign test 2 * 0.5**5; exact Wilcoxon: W- = 0 has probability
    # 1 / 2**5 under H0, two-sided 2 / 32
    r = ps.paired_difference(np.array([2.0, 3.0, 4.0, 5.0, 6.0]), np.ones(5))
    assert r.mean == pytest.approx(3.0)
    assert r.sign_p == pytest.approx(0.0625)
    assert r.wilcoxon_p == pytest.approx(0.0625)
    assert r.share_positive == 1.0 and r.n_episodes == 5 and r.n_models == 1
    # 3 positive, 1 negative, one tie dropped: P(X <= 1), X ~ Bin(4, 1/2) = 5/16, two-sided 10/16
    assert ps.sign_test_p([1.0, 2.0, 3.0, -1.0, 0.0]) == pytest.approx(10 / 16)


def test_constant_difference_gives_a_degenerate_ci():
    r = ps.paired_difference(np.array([[1.5, 2.5, 3.5]] * 2), np.array([0.5, 1.5, 2.5]))
    assert (r.mean, r.ci_lo, r.ci_hi) == pytest.approx((1.0, 1.0, 1.0))


def test_two_level_bootstrap_equals_a_naive_loop_with_the_same_draws():
    rng = np.random.default_rng(5)
    agent = rng.normal(0.3, 1.0, (3, 12))
    base = rng.normal(0.0, 1.0, 12)
    r = ps.paired_difference(agent, base, n_boot=500, seed=11)
    draws = np.random.default_rng(11)
    e_idx = [draws.integers(0, 12, 12) for _ in range(500)]
    s_idx = [draws.integers(0, 3, 3) for _ in range(500)]
    d = agent - base
    naive = np.array([d[s][:, e].mean() for s, e in zip(s_idx, e_idx, strict=True)])
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert (r.ci_lo, r.ci_hi) == pytest.approx((lo, hi), rel=1e-12)
    assert r.mean == pytest.approx(d.mean())


def test_seed_spread_widens_the_interval():
    base = np.zeros(30)
    ep = np.random.default_rng(1).normal(0, 0.1, 30)
    same = ps.paired_difference(np.stack([ep + 1.0] * 3), base, seed=0)
    spread = ps.paired_difference(np.stack([ep + 0.0, ep + 1.0, ep + 2.0]), base, seed=0)
    assert spread.mean == pytest.approx(same.mean)
    assert (spread.ci_hi - spread.ci_lo) > 5 * (same.ci_hi - same.ci_lo)


def test_paired_table_pairs_by_episode_and_is_deterministic():
    rows = []
    for model in ("seed0", "seed1"):
        for e in range(4):
            rows.append({"model": model, "policy": "agent", "episode": e, "pnl": 1.0 + e + (model == "seed1")})
            rows.append({"model": model, "policy": "fixed_spread", "episode": e, "pnl": float(e)})
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=3)     # row order must not matter
    t1 = ps.paired_table(df)
    t2 = ps.paired_table(df)
    pd.testing.assert_frame_equal(t1, t2)
    row = t1.iloc[0]
    assert row["baseline"] == "fixed_spread"
    assert row["diff_mean"] == pytest.approx(1.5)    # (1 + 2) / 2 per episode
    assert row["n_models"] == 2 and row["n_episodes"] == 4
    assert row["sign_p"] == pytest.approx(0.125)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="episodes per model"):
        ps.paired_difference(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match="at least 2"):
        ps.paired_difference(np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="finite"):
        ps.paired_difference(np.array([1.0, np.nan]), np.ones(2))
    df = pd.DataFrame({"policy": ["agent", "agent", "glft"], "episode": [0, 1, 0], "pnl": [1.0, 2.0, 0.0]})
    with pytest.raises(ValueError, match="lacks episodes"):
        ps.paired_table(df)
    with pytest.raises(ValueError, match="no rows of policy"):
        ps.paired_table(df[df.policy == "glft"])
