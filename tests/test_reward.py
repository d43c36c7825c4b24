"""reward.py: each variant in closed form in both units, the unit identity, and the env's use of it.

Micro-scenario used throughout: tick_size 0.01, order_size 0.1, so one tick-lot is
0.01 x 0.1 = 0.001 quote currency; inventory 0.3 = 3 lots; sigma 2 ticks/sqrt(s); dt 0.5 s.
"""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_market
from event_driven_env import DISCRETE_ACTIONS, MarketMakingEnv
from reward import (
    REWARD_VARIANTS,
    InventoryPenaltyReward,
    PnLReward,
    Reward,
    RewardConfig,
    TerminalInventoryPenalty,
    register_reward,
)

TICK, ORDER = 0.01, 0.1
TICK_LOT = TICK * ORDER                # 0.001 quote per tick-lot
Q, SIGMA, DT = 0.3, 2.0, 0.5           # 3 lots


def reward(unit, variant="pnl", gamma=0.1, kappa=0.0):
    return Reward(RewardConfig(variant, unit, inventory_penalty_gamma=gamma, terminal_inventory_penalty=kappa),
                  TICK, ORDER)


@pytest.mark.parametrize("unit,want", [("tick_lots", 0.05 / TICK_LOT), ("quote", 0.05)])
def test_pnl_variant(unit, want):
    r = reward(unit)
    assert isinstance(r.variant, PnLReward) and not r.uses_sigma
    assert r.to_unit(r.step(0.05, Q, DT, SIGMA)) == pytest.approx(want, rel=1e-12)   # = 50 tick-lots


@pytest.mark.parametrize("unit", ["tick_lots", "quote"])
def test_running_inventory_penalty_closed_form(unit):
    """gamma*sigma^2*q^2*dt = 0.1 * 4 * 9 * 0.5 = 1.8 tick-lots = 0.0018 quote."""
    r = reward(unit, "pnl_inventory_penalty", gamma=0.1)
    assert isinstance(r.variant, InventoryPenaltyReward) and r.uses_sigma
    got = r.to_unit(r.step(0.05, Q, DT, SIGMA))
    want = {"tick_lots": 50.0 - 1.8, "quote": 0.05 - 0.0018}[unit]
    assert got == pytest.approx(want, rel=1e-12)
    assert r.to_unit(r.step(0.0, -Q, DT, SIGMA)) == pytest.approx(-1.8 if unit == "tick_lots" else -0.0018, rel=1e-12)


@pytest.mark.parametrize("unit", ["tick_lots", "quote"])
def test_terminal_inventory_penalty_closed_form(unit):
    """kappa*q^2 = 0.5 * 9 = 4.5 tick-lots = 0.0045 quote, on top of the closing PnL."""
    r = reward(unit, kappa=0.5)
    got = r.to_unit(r.close(-0.002, Q))
    want = {"tick_lots": -2.0 - 4.5, "quote": -0.002 - 0.0045}[unit]
    assert got == pytest.approx(want, rel=1e-12)
    assert r.to_unit(r.close(0.0, 0.0)) == 0.0           # flat at the end: no penalty


def test_variant_formulas():
    assert PnLReward().running_penalty(3.0, 2.0, 0.5) == 0.0
    assert InventoryPenaltyReward(0.1).running_penalty(3.0, 2.0, 0.5) == pytest.approx(1.8)
    assert TerminalInventoryPenalty(0.5).penalty(-3.0) == 4.5


def test_quote_is_tick_lots_times_tick_lot_for_every_term():
    """The fixed bug: in quote units both penalties used to be subtracted unconverted."""
    rng = np.random.default_rng(0)
    for variant in REWARD_VARIANTS:
        tl = reward("tick_lots", variant, gamma=0.3, kappa=0.7)
        qu = reward("quote", variant, gamma=0.3, kappa=0.7)
        for _ in range(50):
            de, inv, dt, sig = rng.normal(0, 0.01), rng.normal(0, 0.5), rng.uniform(0, 1), rng.uniform(0, 5)
            assert qu.to_unit(qu.step(de, inv, dt, sig)) == pytest.approx(
                tl.to_unit(tl.step(de, inv, dt, sig)) * TICK_LOT, rel=1e-12, abs=1e-15)
            assert qu.to_unit(qu.close(de, inv)) == pytest.approx(tl.to_unit(tl.close(de, inv)) * TICK_LOT,
                                                                  rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("bad,match", [(dict(reward="sharpe"), "reward must be one of"),
                                       (dict(reward_unit="usd"), "reward_unit"),
                                       (dict(inventory_penalty_gamma=-1.0), "inventory_penalty_gamma"),
                                       (dict(terminal_inventory_penalty=-0.1), "terminal_inventory_penalty")],
                         ids=["reward", "unit", "gamma", "kappa"])
def test_invalid_reward_config(bad, match):
    with pytest.raises(ValueError, match=match):
        RewardConfig(**bad)


def test_adding_a_variant_is_one_registered_class():
    @register_reward("flat_fee")
    class FlatFee:
        uses_sigma = False

        @classmethod
        def from_config(cls, config):
            return cls()

        def running_penalty(self, q_lots, sigma, dt_s):
            return 1.0                                    # one tick-lot per step

    try:
        r = Reward(RewardConfig(reward="flat_fee", reward_unit="quote"), TICK, ORDER)
        assert r.to_unit(r.step(0.0, 0.0, 1.0)) == pytest.approx(-TICK_LOT)
    finally:
        REWARD_VARIANTS.pop("flat_fee", None)


# ----------------------------------------------------------------- in the env
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return str(synthetic_market.generate_file(tmp_path_factory.mktemp("rw") / "s.jsonl", hours=0.02, seed=4))


def _episode(synth, tmp_path, **kw):
    env = MarketMakingEnv(data_path=synth, cache_dir=str(tmp_path / "c"), episode_length_s=20.0, warmup_s=2.0,
                          reward="pnl_inventory_penalty", inventory_penalty_gamma=0.2,
                          terminal_inventory_penalty=0.5, **kw)
    env.reset(seed=1)
    buy = DISCRETE_ACTIONS.index("market_buy")
    rewards = []
    for i in range(10_000):
        _, r, term, trunc, info = env.step(buy if i < 3 else DISCRETE_ACTIONS.index("both_offset_+1"))
        rewards.append(r)
        if term or trunc:
            return env, np.array(rewards), info


def test_env_rewards_in_both_units_differ_by_the_tick_lot_only(synth, tmp_path):
    env_tl, r_tl, info_tl = _episode(synth, tmp_path, reward_unit="tick_lots")
    env_q, r_q, info_q = _episode(synth, tmp_path, reward_unit="quote")
    assert info_tl["episode"]["pnl"] == info_q["episode"]["pnl"]        # same episode
    assert env_tl._feats.sigma_per_sqrt_s(int(env_tl._now)) > 0         # the running penalty is on
    assert info_tl["episode"]["inventory_abs_mean"] > 0
    np.testing.assert_allclose(r_q, r_tl * env_tl.tick_size * env_tl.order_size, rtol=1e-10, atol=1e-14)
