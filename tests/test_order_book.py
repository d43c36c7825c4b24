"""Tests of order_book.OrderBook: hand-computed scenarios, a naive-model property test, stress."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import messages
import messages as messages_mod
from order_book import ASK, BID, OrderBook

# every test here runs with the compiled per-level loops and with the pure-Python ones
pytestmark = pytest.mark.usefixtures("both_loops")

# Short constructors of the real message classes (messages.py) with test defaults.


def SnapshotMessage(ts, bids=(), asks=(), update_id=None, symbol="T"):  # noqa: N802
    return messages.SnapshotMessage(ts=ts, symbol=symbol, bids=list(bids), asks=list(asks),
                                    update_id=update_id, tick_size=1.0)


def DeltaMessage(ts, bids=(), asks=(), update_id=None, symbol="T"):  # noqa: N802
    return messages.DeltaMessage(ts=ts, symbol=symbol, bids=list(bids), asks=list(asks),
                                 update_id=update_id, tick_size=1.0)


def TradeMessage(ts, price=0, size=0.0, side=1, symbol="T"):  # noqa: N802
    return messages.TradeMessage(ts=ts, symbol=symbol, price=price, size=size, side=side, tick_size=1.0)


def _book(bids, asks, tick_size=1.0):
    book = OrderBook("T", tick_size)
    book.apply(SnapshotMessage(ts=1, bids=bids, asks=asks, update_id=1))
    return book


# ----------------------------------------------------------------- hand-computed scenarios


def test_empty_book():
    book = OrderBook()
    assert book.best_bid() is None and book.best_ask() is None
    assert book.mid() is None and book.microprice() is None and book.spread() is None
    assert book.mid_price() is None and book.best_bid_price() is None
    assert not book.crossed and len(book) == 0 and book.ts is None
    bids, asks = book.depth(3)
    assert bids.shape == (3, 2) and asks.shape == (3, 2) and not bids.any() and not asks.any()
    book.check_invariants()


def test_snapshot_queries():
    book = _book(bids=[(99, 1.0), (100, 3.0), (97, 2.0)], asks=[(103, 5.0), (101, 1.0)])
    assert book.best_bid() == (100, 3.0)
    assert book.best_ask() == (101, 1.0)
    assert book.spread() == 1
    assert book.mid() == 100.5
    # microprice = (100 * 1 + 101 * 3) / (3 + 1) = 403 / 4
    assert book.microprice() == pytest.approx(100.75)
    assert book.size_at(BID, 99) == 1.0 and book.size_at(ASK, 103) == 5.0
    assert book.size_at(BID, 101) == 0.0 and book.size_at(ASK, 100) == 0.0
    bids, asks = book.depth(4)
    np.testing.assert_array_equal(bids, [[100, 3.0], [99, 1.0], [97, 2.0], [0, 0]])
    np.testing.assert_array_equal(asks, [[101, 1.0], [103, 5.0], [0, 0], [0, 0]])
    bids, asks = book.depth(1)
    np.testing.assert_array_equal(bids, [[100, 3.0]])
    np.testing.assert_array_equal(asks, [[101, 1.0]])
    assert book.depth(0)[0].shape == (0, 2)
    # depth() must not build sortedcontainers' positional index (it would tax every later
    # insert/remove of the hot path).
    assert not book.bids._list._index and not book.asks._list._index
    book.check_invariants()


def test_delta_update_insert_remove():
    book = _book(bids=[(100, 3.0), (99, 1.0)], asks=[(101, 1.0), (102, 2.0)])
    book.apply(DeltaMessage(ts=2, update_id=2, bids=[(100, 0.0), (98, 4.0), (99, 1.5)], asks=[(101, 0.5)]))
    assert dict(book.bids) == {99: 1.5, 98: 4.0}
    assert dict(book.asks) == {101: 0.5, 102: 2.0}
    assert book.best_bid() == (99, 1.5) and book.best_ask() == (101, 0.5)
    assert book.ts == 2 and book.update_id == 2 and book.n_applied == 2
    # Removing an absent level is a no-op; levels within one delta apply in order.
    book.apply(DeltaMessage(ts=3, update_id=3, bids=[(50, 0.0)], asks=[(105, 1.0), (105, 0.0), (104, 2.0)]))
    assert dict(book.asks) == {101: 0.5, 102: 2.0, 104: 2.0}
    assert 50 not in book.bids and 105 not in book.asks
    book.check_invariants()


def test_snapshot_replaces_everything_and_drops_zero_levels():
    book = _book(bids=[(100, 3.0)], asks=[(101, 1.0)])
    book.apply(SnapshotMessage(ts=5, update_id=9, bids=[(90, 1.0), (89, 0.0)], asks=[(95, 2.0)]))
    assert dict(book.bids) == {90: 1.0} and dict(book.asks) == {95: 2.0}
    assert book.ts == 5 and book.update_id == 9


def test_trade_is_ignored_and_unknown_type_refused():
    book = _book(bids=[(100, 3.0)], asks=[(101, 1.0)])
    before = book.copy()
    book.apply(TradeMessage(ts=9, price=100, size=1.0, side=-1))
    assert book == before and book.ts == 1
    with pytest.raises(TypeError, match="SnapshotMessage, DeltaMessage or TradeMessage"):
        book.apply({"type": "delta"})


def test_price_variants_are_rounded_to_the_tick():
    book = _book(bids=[(651142, 6.054)], asks=[(651143, 1.0)], tick_size=0.1)
    assert book.best_bid_price() == (65114.2, 6.054)
    assert book.best_ask_price() == (65114.3, 1.0)
    assert book.mid_price() == 65114.25
    assert book.spread_price() == 0.1
    assert book.microprice_price() == pytest.approx((651142 * 1.0 + 651143 * 6.054) / 7.054 * 0.1)


def test_check_invariants_catches_broken_books():
    book = _book(bids=[(100, 1.0)], asks=[(101, 1.0)])
    book.apply(DeltaMessage(ts=2, bids=[(102, 1.0)]))  # crossed
    assert book.crossed
    with pytest.raises(AssertionError, match="crossed book"):
        book.check_invariants()
    book.check_invariants(allow_crossed=True)
    bad = _book(bids=[(100, 1.0)], asks=[(101, 1.0)])
    bad.apply(DeltaMessage(ts=2, asks=[(103, -1.0)]))  # the loader never lets this through
    with pytest.raises(AssertionError, match="bad size -1.0 at price 103"):
        bad.check_invariants()
    nan = _book(bids=[(100, float("nan"))], asks=[])
    with pytest.raises(AssertionError, match="bad size nan"):
        nan.check_invariants()
    floats = OrderBook()
    floats.bids[100.5] = 1.0
    with pytest.raises(AssertionError, match="non-integer price key"):
        floats.check_invariants()


def test_bad_arguments():
    with pytest.raises(ValueError, match="tick_size must be > 0"):
        OrderBook(tick_size=0)
    with pytest.raises(ValueError, match="side must be"):
        OrderBook().size_at(0, 100)
    with pytest.raises(ValueError, match="depth n must be"):
        OrderBook().depth(-1)
    with pytest.raises(ValueError, match="lacks"):
        OrderBook.from_state({"tick_size": 1.0})


def test_copy_and_state_roundtrip(tmp_path):
    book = _book(bids=[(100, 3.0), (99, 1.0)], asks=[(101, 1.0), (102, 2.0)], tick_size=0.01)
    book.apply(DeltaMessage(ts=7, update_id=12, bids=[(98, 2.5)]))
    twin = book.copy()
    twin.apply(DeltaMessage(ts=8, update_id=13, bids=[(100, 0.0)]))
    assert book.best_bid() == (100, 3.0) and twin.best_bid() == (99, 1.0)  # independent

    np.savez(tmp_path / "ckpt.npz", **book.state())
    with np.load(tmp_path / "ckpt.npz") as data:
        restored = OrderBook.from_state(data)
    assert restored == book
    assert (restored.symbol, restored.tick_size, restored.ts, restored.update_id, restored.n_applied) == (
        "T", 0.01, 7, 12, 2,
    )
    assert all(type(k) is int for k in restored.bids)
    restored.check_invariants()
    # The restored book keeps working.
    restored.apply(DeltaMessage(ts=9, update_id=13, asks=[(101, 0.0)]))
    assert restored.best_ask() == (102, 2.0)


def test_real_classes():
    """The book accepts data_processor's own message classes (once that module exists)."""
    dp = pytest.importorskip("data_processor")
    book = OrderBook("BTCUSDT", 0.1)
    fields = dict(ts=1, symbol="BTCUSDT", update_id=1, tick_size=0.1)
    book.apply(dp.SnapshotMessage(bids=[(100, 1.0)], asks=[(102, 2.0)], **fields))
    book.apply(dp.DeltaMessage(bids=[(101, 1.0)], asks=[(102, 0.0), (103, 1.0)], **{**fields, "ts": 2}))
    book.apply(dp.TradeMessage(ts=3, symbol="BTCUSDT", price=101, size=1.0, side=-1, tick_size=0.1))
    assert book.best_bid() == (101, 1.0) and book.best_ask() == (103, 1.0) and book.ts == 2


# ------------------------------------------------------- property test vs a naive dict model


def _model_best(levels: dict, side: int):
    if not levels:
        return None
    price = max(levels) if side == BID else min(levels)
    return price, levels[price]


_prices = st.integers(min_value=90, max_value=110)
_sizes = st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=1e6, allow_nan=False))
_levels = st.lists(st.tuples(_prices, _sizes), max_size=12)
_msgs = st.lists(st.tuples(st.booleans(), _levels, _levels), min_size=1, max_size=40)


def _apply_model(model_bids, model_asks, is_snapshot, bids, asks):
    if is_snapshot:
        model_bids.clear()
        model_asks.clear()
    for model, levels in ((model_bids, bids), (model_asks, asks)):
        for price, size in levels:
            if size:
                model[price] = size
            else:
                model.pop(price, None)


@settings(max_examples=120, deadline=None)
@given(first_bids=_levels, first_asks=_levels, stream=_msgs)
def test_book_matches_naive_model(first_bids, first_asks, stream):
    book = OrderBook("T", 1.0)
    model_bids: dict = {}
    model_asks: dict = {}
    messages = [SnapshotMessage(ts=0, bids=first_bids, asks=first_asks, update_id=0)]
    for i, (is_snapshot, bids, asks) in enumerate(stream, start=1):
        cls = SnapshotMessage if is_snapshot and i % 3 == 0 else DeltaMessage
        messages.append(cls(ts=i, bids=bids, asks=asks, update_id=i))
    for msg in messages:
        _apply_model(model_bids, model_asks, isinstance(msg, messages_mod.SnapshotMessage), msg.bids, msg.asks)
        book.apply(msg)
        try:
            # Random deltas may cross the book; crossing itself is the loader's error to raise.
            book.check_invariants(allow_crossed=True)
            assert dict(book.bids) == model_bids and dict(book.asks) == model_asks
            assert book.best_bid() == _model_best(model_bids, BID)
            assert book.best_ask() == _model_best(model_asks, ASK)
            assert book.crossed == bool(
                model_bids and model_asks and max(model_bids) >= min(model_asks)
            )
            n = 3
            depth_bids, depth_asks = book.depth(n)
            want_bids = sorted(model_bids.items(), reverse=True)[:n]
            want_asks = sorted(model_asks.items())[:n]
            want_bids += [(0, 0.0)] * (n - len(want_bids))
            want_asks += [(0, 0.0)] * (n - len(want_asks))
            np.testing.assert_array_equal(depth_bids, np.array(want_bids, dtype=float).reshape(n, 2))
            np.testing.assert_array_equal(depth_asks, np.array(want_asks, dtype=float).reshape(n, 2))
        except AssertionError:
            print(f"failing message: {msg!r}")
            raise
    # Snapshot-then-deltas equals a fresh snapshot of the final state.
    fresh = OrderBook("T", 1.0)
    fresh.apply(SnapshotMessage(ts=99, bids=list(model_bids.items()), asks=list(model_asks.items())))
    assert fresh == book
    assert OrderBook.from_state(book.state()) == book


def test_seeded_stress_against_model():
    """sortedcontainers-style randomized stress: many levels, many deltas, invariants each step."""
    rng = random.Random(20240718)
    book = OrderBook("T", 0.1)
    model_bids = {p: float(rng.randint(1, 50)) for p in range(9_000, 10_000)}
    model_asks = {p: float(rng.randint(1, 50)) for p in range(10_001, 11_000)}
    book.apply(SnapshotMessage(ts=0, bids=list(model_bids.items()), asks=list(model_asks.items())))
    for i in range(1, 3_001):
        mid = 10_000 + rng.randint(-20, 20)
        bids = [(rng.randint(mid - 1200, mid - 1), rng.choice([0.0, rng.random() * 10])) for _ in range(8)]
        asks = [(rng.randint(mid + 1, mid + 1200), rng.choice([0.0, rng.random() * 10])) for _ in range(8)]
        msg = DeltaMessage(ts=i, bids=bids, asks=asks, update_id=i)
        _apply_model(model_bids, model_asks, False, bids, asks)
        book.apply(msg)
        try:
            assert book.best_bid() == _model_best(model_bids, BID)
            assert book.best_ask() == _model_best(model_asks, ASK)
            if i % 250 == 0:
                book.check_invariants(allow_crossed=True)
                assert dict(book.bids) == model_bids and dict(book.asks) == model_asks
        except AssertionError:
            print(f"failing delta #{i}: {msg!r}")
            raise


@pytest.mark.parametrize("load", [4, 1000])
def test_inlined_sorted_list_paths_under_churn(load):
    """The inlined SortedList add/remove: sublist splits and merges (tiny ``load``), the
    single-sublist case (default load) and a positional index built by a consumer in between,
    checked with sortedcontainers' ``_check`` after every delta."""
    rng = random.Random(load)
    book = OrderBook("T", 1.0)
    book.bids._reset(load)
    book.asks._reset(load)
    model_bids: dict = {}
    model_asks: dict = {}
    book.apply(SnapshotMessage(ts=0, bids=[(p, 1.0) for p in range(100, 140)], asks=[(p, 1.0) for p in range(141, 181)]))
    _apply_model(model_bids, model_asks, True, [(p, 1.0) for p in range(100, 140)], [(p, 1.0) for p in range(141, 181)])
    for i in range(1, 1_500):
        bids = [(rng.randint(60, 140), rng.choice([0.0, 0.0, float(rng.randint(1, 9))])) for _ in range(rng.randint(0, 12))]
        asks = [(rng.randint(141, 221), rng.choice([0.0, 0.0, float(rng.randint(1, 9))])) for _ in range(rng.randint(0, 12))]
        msg = DeltaMessage(ts=i, bids=bids, asks=asks, update_id=i)
        _apply_model(model_bids, model_asks, False, bids, asks)
        book.apply(msg)
        if i % 97 == 0 and len(book.bids) > 3:
            book.bids.keys()[len(book.bids) // 2]  # builds the positional index
            book.asks.keys()[:2]
        try:
            book.check_invariants(allow_crossed=True)
            assert dict(book.bids) == model_bids and dict(book.asks) == model_asks
            assert list(book.bids) == sorted(model_bids) and list(book.asks) == sorted(model_asks)
        except AssertionError:
            print(f"failing delta #{i}: {msg!r}")
            raise
    assert max(len(book.bids._list._lists), len(book.asks._list._lists)) > (1 if load == 4 else 0)


# ----------------------------------------------------------------- top / walk / library pin
@pytest.mark.parametrize("n_levels", [3, 50, 3000])   # 3000: more keys than one sorted sublist holds
def test_top_equals_depth(n_levels):
    book = _book(bids=[(10_000 - 2 * i, 1.0 + i) for i in range(n_levels)],
                 asks=[(10_001 + 3 * i, 2.0 + i) for i in range(n_levels)])
    for n in (0, 1, 5, 10, n_levels, n_levels + 5):
        bp, bs, ap, as_ = book.top(n)
        db, da = book.depth(n)
        k = min(n, n_levels)
        assert (bp, bs) == (db[:k, 0].astype(int).tolist(), db[:k, 1].tolist())
        assert (ap, as_) == (da[:k, 0].astype(int).tolist(), da[:k, 1].tolist())
    assert not book.bids._list._index and not book.asks._list._index   # no positional index built


def test_walk_takes_the_visible_levels():
    book = _book(bids=[(100, 5.0), (99, 4.0)], asks=[(102, 5.0), (103, 4.0)])
    assert book.walk(BID, 7.0) == (7.0, pytest.approx((5 * 102 + 2 * 103) / 7))
    assert book.walk(BID, 20.0) == (9.0, pytest.approx((5 * 102 + 4 * 103) / 9))
    assert book.walk(BID, 20.0, fill_rest_at_worst=True) == (20.0, pytest.approx((5 * 102 + 15 * 103) / 20))
    assert book.walk(BID, 7.0, limit=102) == (5.0, 102.0)
    assert book.walk(ASK, 6.0, limit=100) == (5.0, 100.0)
    assert book.walk(ASK, 1.0, limit=101) == (0.0, 0.0)
    assert _book(bids=[], asks=[]).walk(BID, 1.0) == (0.0, 0.0)
    book.check_invariants()                              # walking never changes the book
    assert book.best_ask() == (102, 5.0)


def test_sortedcontainers_version_is_checked(monkeypatch):
    import sortedcontainers

    import order_book

    order_book._check_sortedcontainers()                 # the installed, supported version
    monkeypatch.setattr(sortedcontainers, "__version__", "2.5.0")
    with pytest.raises(ImportError, match=r"sortedcontainers 2\.5\.0 is installed.*pip install sortedcontainers==2\.4\.0"):
        order_book._check_sortedcontainers()
    monkeypatch.undo()
    monkeypatch.delattr(sortedcontainers.SortedList, "_expand")
    with pytest.raises(ImportError, match="_expand"):
        order_book._check_sortedcontainers()
