"""sim_exchange's model objects: queue, fill and latency models, registries, config validation.

The fill scenarios of the exchange itself are in tests/test_env_exchange.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

import sim_exchange as sx
from messages import DeltaMessage, SnapshotMessage
from order_book import OrderBook
from sim_exchange import (
    FILL_MODELS,
    LATENCY_MODELS,
    QUEUE_MODELS,
    BboCrossFill,
    ConstantLatency,
    ExchangeConfig,
    LognormalLatency,
    LogQueue,
    PowerQueue,
    QueueFill,
    RiskAverseQueue,
    SimExchange,
)


def _book():
    book = OrderBook("X", tick_size=0.5)
    book.apply(SnapshotMessage(ts=0, symbol="X", update_id=1, tick_size=0.5,
                               bids=[(100, 5.0), (99, 4.0)], asks=[(102, 5.0), (103, 4.0)]))
    return book


@pytest.mark.parametrize("model,front,back,want", [
    (PowerQueue(3.0), 5.0, 5.0, 0.5),
    (PowerQueue(2.0), 1.0, 3.0, 9 / 10),
    (PowerQueue(3.0), 0.0, 0.0, 1.0),                     # empty level: "behind"
    (LogQueue(), 1.0, 3.0, math.log(4) / (math.log(4) + math.log(2))),
    (RiskAverseQueue(), 5.0, 1.0, 1.0),
], ids=["power-even", "power-n2", "power-empty", "log", "risk-averse"])
def test_queue_models_closed_form(model, front, back, want):
    assert model.prob_behind(front, back) == pytest.approx(want)


def test_registries_name_every_builtin_model():
    assert QUEUE_MODELS == {"power": PowerQueue, "log": LogQueue, "risk_averse": RiskAverseQueue}
    assert FILL_MODELS == {"queue": QueueFill, "bbo_cross": BboCrossFill, "fifo": sx.FifoFill}
    assert LATENCY_MODELS == {"constant": ConstantLatency, "lognormal": LognormalLatency}
    cfg = ExchangeConfig(queue_model="power", queue_power=2.5)
    assert QUEUE_MODELS[cfg.queue_model].from_config(cfg) == PowerQueue(2.5)


def test_adding_a_queue_model_is_one_registered_class():
    @sx.register_queue_model("front_first")
    @dataclass(frozen=True)
    class FrontFirst:                                     # every cancellation is ahead of us
        @classmethod
        def from_config(cls, config):
            return cls()

        def prob_behind(self, front, back):
            return 0.0

    try:
        cfg = ExchangeConfig(queue_model="front_first")    # validation reads the registry
        book = _book()
        ex = SimExchange(0.5, cfg)
        o = ex.submit_limit(0, +1, 100, 1.0, latency=0.0)
        ex.process_events(0, book, None, inclusive=True)
        assert isinstance(ex.fill_rule.queue, FrontFirst) and o.queue_ahead == 5.0
        ex.on_book(book, DeltaMessage(ts=1, symbol="X", update_id=2, tick_size=0.5, bids=[(100, 3.0)], asks=[]), None)
        assert o.queue_ahead == 3.0                       # front' = 5 - 2 (all of it ahead)
    finally:
        QUEUE_MODELS.pop("front_first", None)
    with pytest.raises(ValueError, match="queue_model must be one of"):
        ExchangeConfig(queue_model="front_first")


def test_registering_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        sx.register_fill_model("queue")(type("Other", (), {}))


@pytest.mark.parametrize("bad,match", [
    (dict(fill_model="magic"), "fill_model must be one of"),
    (dict(queue_model="fifo"), "queue_model"),
    (dict(latency_distribution="pareto"), "latency_distribution"),
    (dict(entry_latency_ms=-1.0), "entry_latency_ms"),
    (dict(latency_sigma=-0.1), "latency_sigma"),
    (dict(taker_fee_bps=-1.0), "taker_fee_bps"),
    (dict(maker_fee_bps=float("nan")), "maker_fee_bps"),
], ids=lambda v: str(v) if isinstance(v, str) else next(iter(v)))
def test_invalid_exchange_config(bad, match):
    with pytest.raises(ValueError, match=match):
        ExchangeConfig(**bad)


def test_suspicious_exchange_config_warns():
    with pytest.warns(UserWarning, match="zero order latency"):
        ExchangeConfig(entry_latency_ms=0.0, cancel_latency_ms=0.0)
    with pytest.warns(UserWarning, match="rebate"):
        ExchangeConfig(maker_fee_bps=-6.0, taker_fee_bps=5.5)


def test_latency_models():
    assert ConstantLatency().sample(7.0, None) == 7.0
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    z = rng_b.standard_normal()
    assert LognormalLatency(0.4).sample(10.0, rng_a) == pytest.approx(10.0 * math.exp(0.4 * z))
    state = rng_a.bit_generator.state
    assert LognormalLatency(0.4).sample(0.0, rng_a) == 0.0 and rng_a.bit_generator.state == state   # no draw


def test_exchange_draws_the_configured_latencies():
    ex = SimExchange(0.5, ExchangeConfig(entry_latency_ms=12.0, cancel_latency_ms=30.0))
    o = ex.submit_limit(100.0, +1, 100, 1.0)
    assert o.active_ts == 112.0
    ex.cancel(101.0, o)
    assert o.cancel_ts == 131.0
    m = ex.submit_market(100.0, -1, 1.0)
    assert m.active_ts == 112.0
    lo = SimExchange(0.5, ExchangeConfig(latency_distribution="lognormal", latency_sigma=0.5),
                     rng=np.random.default_rng(0))
    z = np.random.default_rng(0).standard_normal()
    assert lo.submit_limit(0.0, +1, 100, 1.0).active_ts == pytest.approx(10.0 * math.exp(0.5 * z))


def test_exchange_applies_every_book_message_itself():
    """Who applies a message to the book never depends on how many orders are live."""
    book = _book()
    ex = SimExchange(0.5)
    assert ex.n_live == 0
    ex.on_book(book, DeltaMessage(ts=1, symbol="X", update_id=2, tick_size=0.5, bids=[(101, 2.0)], asks=[]), None)
    assert book.best_bid() == (101, 2.0)
    ex.submit_limit(1, +1, 99, 1.0, latency=0.0)
    ex.process_events(1, book, None, inclusive=True)
    assert ex.n_live == 1
    ex.on_book(book, DeltaMessage(ts=2, symbol="X", update_id=3, tick_size=0.5, bids=[(101, 0.0)], asks=[]), None)
    assert book.best_bid() == (100, 5.0)


def test_queue_ahead_read():
    book = _book()
    ex = SimExchange(0.5)
    o = ex.submit_limit(0, +1, 100, 1.0, latency=5.0)
    assert ex.queue_ahead(o, book) == 5.0                 # pending: the displayed size at its price
    ex.process_events(5, book, None, inclusive=True)
    o.queue_ahead = 2.0
    assert ex.queue_ahead(o, book) == 2.0                 # live: its own queue estimate


def test_bbo_cross_rule_never_fills_on_trades_or_levels():
    rule = BboCrossFill()
    o = sx.SimOrder(1, +1, 100, 1.0, 0, 0.0, 0.0, remaining=1.0)
    assert rule.level_change(o, 5.0, 1.0) == 0.0 and rule.trade(o, 99, 3.0, 3.0) == (0.0, 3.0)
    assert not rule.uses_queue and QueueFill.uses_queue


def test_queue_fill_rounds_partial_fills_to_lots():
    rule = QueueFill(PowerQueue(), lot_size=0.1)
    o = sx.SimOrder(1, +1, 100, 1.0, 0, 0.0, 0.0, remaining=1.0, queue_ahead=0.0)
    q, left = rule.trade(o, 100, 0.37, 0.37)
    assert q == pytest.approx(0.3) and left == pytest.approx(0.07)
