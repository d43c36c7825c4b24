"""Hand-computable scenarios for every fill rule of sim_exchange.SimExchange, fees, liquidation, markouts."""

from __future__ import annotations

import math

import pytest

from data_processor import DeltaMessage, SnapshotMessage
from order_book import OrderBook
from sim_exchange import ExchangeConfig, Fill, MarkoutTracker, SimExchange, markout_bps

TICK = 0.5


def snap(ts, bids, asks):
    return SnapshotMessage(ts=ts, symbol="X", bids=bids, asks=asks, update_id=1, tick_size=TICK)


def delta(ts, bids=(), asks=()):
    return DeltaMessage(ts=ts, symbol="X", bids=list(bids), asks=list(asks), update_id=2, tick_size=TICK)


def make(fill_model="queue", bids=((100, 5.0), (99, 4.0)), asks=((102, 5.0), (103, 4.0)), has_trades=True, **kw):
    book = OrderBook("X", tick_size=TICK)
    book.apply(snap(0, list(bids), list(asks)))
    cfg = ExchangeConfig(fill_model=fill_model, maker_fee_bps=kw.pop("maker", 0.0), taker_fee_bps=kw.pop("taker", 0.0), **kw)
    ex = SimExchange(TICK, cfg, has_trades=has_trades)
    return book, ex


def live_bid(book, ex, price=100, size=3.0, now=0.0):
    o = ex.submit_limit(now, +1, price, size, latency=0.0)
    ex.process_events(now, book, None, inclusive=True)
    return o


def test_queue_ahead_then_partial_fill():
    book, ex = make()
    o = live_bid(book, ex)
    assert o.queue_ahead == 5.0                      # joined behind the displayed 5
    ex.on_trade(1, -1, 100, 3.0, 101.0)              # sell 3 at our price: queue 5 -> 2, no fill
    assert ex.position == 0 and o.queue_ahead == 2.0 and o.remaining == 3.0
    ex.on_trade(2, -1, 100, 4.0, 101.0)              # sell 4: 2 consume the queue, 2 fill us
    assert ex.position == 2.0 and o.remaining == 1.0 and o.queue_ahead == 0.0
    fills = ex.drain_fills()
    assert [(f.side, f.price, f.size, f.maker) for f in fills] == [(1, 100.0, 2.0, True)]


def test_trade_through_fills_fully():
    book, ex = make()
    o = live_bid(book, ex)
    ex.on_trade(1, -1, 99, 0.1, 101.0)               # a sell printed below our bid
    assert ex.position == 3.0 and o.remaining == 0.0 and not ex.orders


def test_buy_trade_does_not_touch_bids():
    book, ex = make()
    live_bid(book, ex)
    ex.on_trade(1, +1, 100, 50.0, 101.0)
    assert ex.position == 0.0


@pytest.mark.parametrize("fill_model", ["queue", "bbo_cross"])
def test_crossing_fills_fully(fill_model):
    book, ex = make(fill_model)
    live_bid(book, ex)
    ex.on_book(book, delta(1, asks=[(102, 0.0), (103, 0.0), (100, 2.0)], bids=[(100, 0.0)]), 101.0)
    assert ex.position == 3.0
    assert ex.drain_fills()[0].price == 100.0


def test_bbo_cross_ignores_trades():
    book, ex = make("bbo_cross")
    live_bid(book, ex)
    ex.on_trade(1, -1, 99, 100.0, 101.0)
    assert ex.position == 0.0


def test_one_unit_of_trade_never_fills_two_orders():
    book, ex = make(bids=((99, 4.0),))
    a = ex.submit_limit(0, +1, 100, 1.0, latency=0.0)   # empty level: queue ahead 0
    b = ex.submit_limit(0, +1, 99, 1.0, latency=0.0)    # behind 4 at 99
    ex.process_events(0, book, None, inclusive=True)
    b.queue_ahead = 0.0                               # pretend the 4 ahead left, so only the budget limits
    ex.on_trade(1, -1, 99, 1.0, 100.0)               # 1 unit: through our 100 bid (fills it), nothing left for 99
    assert a.remaining == 0.0 and b.remaining == 1.0 and ex.position == 1.0


def test_entry_latency_delays_a_fill():
    book, ex = make(bids=((99, 4.0),))
    o = ex.submit_limit(0, +1, 100, 1.0, latency=10.0)
    ex.process_events(5, book, None)                 # not yet at the exchange
    ex.on_trade(5, -1, 100, 1.0, 100.5)              # would fill an order with empty queue
    assert ex.position == 0.0 and ex.n_live == 0
    ex.process_events(15, book, None)
    assert o.queue_ahead == 0.0 and ex.n_live == 1
    ex.on_trade(15, -1, 100, 1.0, 100.5)
    assert ex.position == 1.0


def test_fill_while_cancel_in_flight_stands():
    book, ex = make()
    o = live_bid(book, ex)
    ex.cancel(0, o, latency=10.0)
    ex.process_events(5, book, None)
    ex.on_trade(5, -1, 99, 1.0, 100.5)               # trade-through before the cancel lands
    assert ex.position == 3.0 and ex.orders_cancelled == 0
    ex.process_events(20, book, None)
    assert ex.orders_cancelled == 0 and not ex.orders


def test_cancel_takes_effect_after_latency():
    book, ex = make()
    o = live_bid(book, ex)
    ex.cancel(0, o, latency=10.0)
    ex.process_events(12, book, None)
    ex.on_trade(12, -1, 99, 1.0, 100.5)
    assert ex.position == 0.0 and ex.orders_cancelled == 1


def test_cancel_cannot_overtake_its_order():
    book, ex = make()
    o = ex.submit_limit(0, +1, 100, 1.0, latency=10.0)
    ex.cancel(1, o, latency=1.0)
    assert o.cancel_ts == 10.0


def test_probabilistic_queue_advance_power_model():
    book, ex = make(queue_power=3.0)
    o = live_bid(book, ex)                            # front 5
    ex.on_book(book, delta(1, bids=[(100, 10.0)]), 101.0)      # 5 join behind: back 5
    assert o.queue_ahead == 5.0
    ex.on_book(book, delta(2, bids=[(100, 6.0)]), 101.0)       # 4 cancelled, p_behind = 0.5
    # front' = 5 - 0.5*4 + min(5 - 0.5*4, 0) = 3
    assert o.queue_ahead == pytest.approx(3.0)


def test_risk_averse_queue_only_moves_on_trades():
    book, ex = make(queue_model="risk_averse")
    o = live_bid(book, ex)
    ex.on_book(book, delta(1, bids=[(100, 10.0)]), 101.0)
    ex.on_book(book, delta(2, bids=[(100, 6.0)]), 101.0)       # 4 cancelled behind us
    assert o.queue_ahead == 5.0
    ex.on_book(book, delta(3, bids=[(100, 2.0)]), 101.0)       # 4 more: only 1 left behind -> 3 ahead went
    assert o.queue_ahead == pytest.approx(2.0)


def test_level_decrease_explained_by_trade_is_not_counted_twice():
    book, ex = make()
    o = live_bid(book, ex)
    ex.on_trade(1, -1, 100, 2.0, 101.0)               # queue 5 -> 3
    ex.on_book(book, delta(2, bids=[(100, 3.0)]), 101.0)       # the book shows the same 2 gone
    assert o.queue_ahead == 3.0


def test_fallback_without_trades_treats_decreases_as_executions():
    book, ex = make(has_trades=False)
    o = live_bid(book, ex, size=3.0)
    ex.on_book(book, delta(1, bids=[(100, 1.0)]), 101.0)       # 4 executed: all ahead of us
    assert o.queue_ahead == 1.0 and ex.position == 0.0
    ex.on_book(book, delta(2, bids=[(100, 0.0)]), 101.0)       # removed: 1 ahead, nothing fills us
    ex.on_book(book, delta(3, bids=[(100, 0.5)]), 101.0)
    assert ex.position == 0.0


def test_fees_and_rebates():
    book, ex = make(maker=2.0, taker=5.5)
    live_bid(book, ex, size=1.0)
    ex.on_trade(1, -1, 99, 1.0, 101.0)               # maker buy 1 at 100 ticks = 50.0 quote
    assert ex.fees == pytest.approx(50.0 * 2e-4)
    assert ex.cash == pytest.approx(-50.0 - 0.01)
    book2, ex2 = make(maker=-1.0, taker=5.5)
    live_bid(book2, ex2, size=1.0)
    ex2.on_trade(1, -1, 99, 1.0, 101.0)
    assert ex2.fees == pytest.approx(-0.005) and ex2.cash == pytest.approx(-50.0 + 0.005)
    ex2.submit_market(2, -1, 1.0, latency=0.0)       # taker sell 1 at best bid 100 = 50.0
    ex2.process_events(2, book2, 101.0, inclusive=True)
    assert ex2.fees == pytest.approx(-0.005 + 50.0 * 5.5e-4)
    assert ex2.position == 0.0 and ex2.taker_volume == 1.0


def test_market_order_walks_visible_levels():
    book, ex = make()
    assert book.walk(+1, 7.0) == (7.0, pytest.approx((5 * 102 + 2 * 103) / 7))
    assert book.walk(+1, 20.0) == (9.0, pytest.approx((5 * 102 + 4 * 103) / 9))
    assert book.walk(+1, 7.0, limit=102) == (5.0, 102.0)
    assert book.walk(-1, 6.0) == (6.0, pytest.approx((5 * 100 + 99) / 6))
    assert book.walk(-1, 12.0, fill_rest_at_worst=True) == (12.0, pytest.approx((5 * 100 + 7 * 99) / 12))


def test_crossing_limit_order_takes_then_rests():
    book, ex = make()
    o = ex.submit_limit(0, +1, 102, 8.0, latency=0.0)
    ex.process_events(0, book, 101.0, inclusive=True)
    assert ex.taker_volume == 5.0 and o.remaining == 3.0 and o.queue_ahead == 0.0


def test_liquidation_walks_book_with_taker_fee():
    book, ex = make(bids=((100, 1.0), (99, 1.0)), taker=10.0)
    ex.position = 3.0
    cost, fee = ex.liquidate(book, 5, 101.0)
    vwap = (100 + 99 + 99) / 3                       # the third unit at the worst visible price
    assert ex.position == 0.0
    assert fee == pytest.approx(vwap * TICK * 3 * 1e-3)
    assert cost == pytest.approx((101.0 - vwap) * TICK * 3 + fee)


def test_markout_arithmetic():
    f_buy = Fill(ts=1000, side=1, price=100.0, size=1.0, maker=True, fee=0.0, mid=100.5, oid=1)
    f_sell = Fill(ts=1000, side=-1, price=101.0, size=1.0, maker=True, fee=0.0, mid=100.5, oid=2)
    mt = MarkoutTracker((100.0, 1000.0))
    mt.add(f_buy)
    mt.add(f_sell)
    mt.resolve(1100, 99.0)                           # due 1100 is not < 1100: still open
    assert f_buy.markout_mids == [None, None]
    mt.resolve(1101, 99.0)                           # mid at t+100ms = 99
    mt.resolve(2500, 102.0)                          # mid at t+1s = 102
    assert markout_bps(f_buy, 0) == pytest.approx((99 - 100) / 100 * 1e4)
    assert markout_bps(f_sell, 0) == pytest.approx(-(99 - 101) / 101 * 1e4)
    assert markout_bps(f_buy, 1) == pytest.approx(200.0)
    assert not mt.pending and math.isinf(mt.next_due)
