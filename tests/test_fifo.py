"""The exact ``fifo`` fill model (rule 6 of ``SimExchange``): hand-computed micro-scenarios.

Each scenario: a bid book of 5 units at 100 ticks (ask 3 at 102), our bid of 2 at 100 that
reaches the book at t=0 behind the 5 units; then order events at our price (the event and the
aggregated delta it causes, as an order-level feed yields them).
"""

from __future__ import annotations

import pytest

from messages import (
    ASK,
    BID,
    ORDER_ADD,
    ORDER_DELETE,
    ORDER_EXECUTE,
    ORDER_MODIFY,
    DeltaMessage,
    OrderMessage,
    SnapshotMessage,
)
from order_book import OrderBook
from sim_exchange import ExchangeConfig, SimExchange

TICK = 0.01


class Market:
    """A book at 100 x 5 / 102 x 3 with our bid of 2 at 100 resting behind the 5."""

    def __init__(self, size: float = 2.0, **cfg) -> None:
        self.book = OrderBook("X", TICK)
        self.book.apply(SnapshotMessage(0, "X", [(100, 5.0)], [(102, 3.0)], None, TICK))
        self.ex = SimExchange(TICK, ExchangeConfig(fill_model="fifo", **cfg))
        self.order = self.ex.submit_limit(0.0, BID, 100, size, latency=0.0)
        self.ex.process_events(0.0, self.book, 101.0, inclusive=True)
        assert self.order.queue_ahead == 5.0

    def event(self, ts: int, action: int, oid: int, size: float, price: int = 100, side: int = BID) -> None:
        """One order event and its delta, as the feed yields them (arrivals/cancels due first)."""
        ex, book = self.ex, self.book
        ex.process_events(ts, book, 101.0)
        ex.on_order(OrderMessage(ts, "X", action, oid, side, price, size, None, TICK), 101.0)
        level = book.size_at(side, price)
        new = level + size if action == ORDER_ADD else max(level - size, 0.0)
        lv = [(price, new)]
        ex.on_book(book, DeltaMessage(ts, "X", lv if side == BID else [], lv if side == ASK else [], None, TICK), 101.0)

    def filled(self) -> list[float]:
        return [f.size for f in self.ex.drain_fills()]


def test_queue_ahead_executed_then_the_excess_fills_us():
    m = Market()
    m.event(1, ORDER_EXECUTE, 1, 4.0)        # 4 of the 5 ahead executed
    assert m.order.queue_ahead == 1.0 and m.filled() == []
    m.event(2, ORDER_EXECUTE, 2, 3.0)        # 1 ahead, then 2 reach us
    assert m.order.queue_ahead == 0.0
    assert m.filled() == [2.0]
    assert m.ex.position == 2.0


def test_cancelled_ahead_advances_the_queue():
    m = Market()
    m.event(1, ORDER_DELETE, 1, 3.0)         # an order ahead cancelled: 5 -> 2
    m.event(2, ORDER_MODIFY, 2, 1.0)         # a partial cancel ahead: 2 -> 1
    assert m.order.queue_ahead == 1.0 and m.filled() == []
    m.event(3, ORDER_EXECUTE, 2, 1.0)        # the last one ahead executed: 1 -> 0, nothing left
    assert m.order.queue_ahead == 0.0 and m.filled() == []
    m.event(4, ORDER_EXECUTE, 7, 0.5)        # an order placed before the recording: ahead of us
    assert m.filled() == [0.5]               # ... but the queue is empty: the 0.5 reaches us


def test_cancelled_behind_does_not_advance_the_queue():
    m = Market()
    m.event(1, ORDER_ADD, 10, 4.0)           # joins behind us
    m.event(2, ORDER_DELETE, 10, 4.0)        # cancelled behind us
    assert m.order.queue_ahead == 5.0
    m.event(3, ORDER_EXECUTE, 1, 5.0)        # the 5 ahead executed: queue empty, nothing for us
    assert m.order.queue_ahead == 0.0 and m.filled() == []


def test_partial_executions_of_an_order_behind_us_fill_us():
    m = Market()
    m.event(1, ORDER_ADD, 10, 4.0)
    m.event(2, ORDER_DELETE, 1, 5.0)         # everything ahead cancelled
    m.event(3, ORDER_EXECUTE, 10, 1.5)       # the order behind us executes: we were passed
    assert m.filled() == [1.5]
    m.event(4, ORDER_EXECUTE, 10, 1.0)       # 0.5 left for us, the rest is the other order's
    assert m.filled() == [0.5]
    assert m.order.remaining == 0.0 and m.ex.position == 2.0


def test_execution_through_our_price_fills_us():
    m = Market()
    m.event(1, ORDER_EXECUTE, 3, 1.0, price=99)   # a bid below ours executed: the level emptied
    assert m.filled() == [1.0]


def test_asks_and_trades_do_not_touch_our_bid():
    m = Market()
    m.event(1, ORDER_EXECUTE, 4, 3.0, price=102, side=ASK)
    m.ex.on_trade(1, -1, 100, 10.0, 101.0)   # a trade print: the order events carry executions
    assert m.order.queue_ahead == 5.0 and m.filled() == []


def test_our_cancel_in_flight_keeps_the_fills_before_it_takes_effect():
    m = Market()
    m.event(1, ORDER_DELETE, 1, 5.0)         # queue empty
    m.ex.cancel(10.0, m.order, latency=5.0)  # effective at t=15
    m.event(12, ORDER_EXECUTE, 7, 1.0)       # before the cancel lands: fills 1
    assert m.filled() == [1.0]
    m.event(16, ORDER_EXECUTE, 7, 1.0)       # after: the order is gone
    assert m.filled() == [] and m.ex.position == 1.0
    assert m.ex.orders_cancelled == 1


def test_two_of_our_orders_share_an_execution_best_price_first():
    m = Market(size=1.0)
    o2 = m.ex.submit_limit(0.0, BID, 99, 1.0, latency=0.0)
    m.ex.process_events(0.0, m.book, 101.0, inclusive=True)
    m.event(1, ORDER_DELETE, 1, 5.0)
    m.event(2, ORDER_EXECUTE, 8, 1.5, price=99)   # through 100 (fills our 1), 0.5 left for 99
    fills = m.ex.drain_fills()
    assert [(f.price, f.size) for f in fills] == [(100.0, 1.0), (99.0, 0.5)]
    assert o2.remaining == 0.5


def test_queue_ahead_is_capped_by_a_corrected_level():
    m = Market()
    m.ex.on_book(m.book, DeltaMessage(1, "X", [(100, 3.0)], [], None, TICK), 101.0)
    assert m.order.queue_ahead == 3.0


def test_fifo_refuses_l2_data(shared_data):
    from event_driven_env import MarketMakingEnv

    with pytest.raises(ValueError, match="needs order-level data"):
        MarketMakingEnv(data_path=str(shared_data / "bybit" / "2024-12-01_XRPUSDT_ob500.data"), fill_model="fifo")
