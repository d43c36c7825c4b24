"""market_features: hand-computed values for every feature and a no-look-ahead test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from data_processor import DeltaMessage, SnapshotMessage, TradeMessage
from market_features import (
    FEATURE_NAMES,
    FeatureConfig,
    MarketFeatures,
    book_imbalance,
    depth_slope,
)
from order_book import OrderBook

IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}


def snap(ts, bids, asks):
    return SnapshotMessage(ts=ts, symbol="X", bids=bids, asks=asks, update_id=1, tick_size=1.0)


def delta(ts, bids=(), asks=()):
    return DeltaMessage(ts=ts, symbol="X", bids=list(bids), asks=list(asks), update_id=2, tick_size=1.0)


def trade(ts, side, size, price=100):
    return TradeMessage(ts=ts, symbol="X", price=price, size=size, side=side, tick_size=1.0)


def feed(feats, book, msgs):
    for m in msgs:
        if isinstance(m, TradeMessage):
            feats.on_trade(m.ts, m.side, m.size)
        else:
            book.apply(m)
            feats.on_book(book, m.ts)


def test_book_features_by_hand():
    book = OrderBook("X", 1.0)
    f = MarketFeatures()
    bids = [(100, 3.0), (99, 1.0), (98, 2.0)]
    asks = [(102, 1.0), (103, 1.0), (104, 4.0)]
    feed(f, book, [snap(0, bids, asks)])
    v = f.values(book, 0)
    assert v[IDX["mid"]] == 101.0
    assert v[IDX["microprice"]] == pytest.approx((100 * 1 + 102 * 3) / 4)
    assert v[IDX["spread_ticks"]] == 2.0
    assert v[IDX["spread_bps"]] == pytest.approx(2 / 101 * 1e4)
    assert v[IDX["imbalance_1"]] == pytest.approx((3 - 1) / 4)
    assert v[IDX["imbalance_5"]] == pytest.approx((6 - 6) / 12)
    # bid cum sizes 3, 4, 6 at distances 0, 1, 2 -> slope 1.5; ask cum 1, 2, 6 -> 2.5
    assert v[IDX["depth_slope_bid"]] == pytest.approx(1.5)
    assert v[IDX["depth_slope_ask"]] == pytest.approx(2.5)
    assert v[IDX["spread_zscore"]] == 0.0        # one sample
    assert not np.isnan(v).any()


def test_ofi_realised_vol_and_spread_zscore():
    book = OrderBook("X", 1.0)
    f = MarketFeatures(FeatureConfig(ofi_window_ms=1000, vol_short_ms=1000, vol_long_ms=10_000, spread_window_ms=10_000))
    feed(f, book, [snap(0, [(100, 5.0)], [(101, 3.0)]),
                   delta(100, bids=[(100, 7.0)]),                 # e = +2
                   delta(200, asks=[(101, 0.0), (102, 4.0)]),     # ask up: e = +3; mid 100.5 -> 101
                   delta(1500, bids=[(101, 1.0)])])               # bid up: e = +1; mid 101 -> 101.5
    v = f.values(book, 1500)
    assert v[IDX["ofi"]] == pytest.approx(1.0)       # only the update at 1500 is in (500, 1500]
    assert f.values(book, 1050)[IDX["ofi"]] == pytest.approx(1.0)
    r1 = math.log(101 / 100.5) * 1e4
    r2 = math.log(101.5 / 101) * 1e4
    assert v[IDX["realised_vol_short_bps"]] == pytest.approx(abs(r2))
    assert v[IDX["realised_vol_long_bps"]] == pytest.approx(math.sqrt(r1 * r1 + r2 * r2))
    spreads = np.array([1.0, 1.0, 2.0, 1.0])
    z = (1.0 - spreads.mean()) / spreads.std()
    assert v[IDX["spread_zscore"]] == pytest.approx(z)


def test_trade_flow_and_vpin():
    book = OrderBook("X", 1.0)
    f = MarketFeatures(FeatureConfig(trade_window_ms=1000, vpin_bucket_volume=4.0, vpin_buckets=2))
    feed(f, book, [snap(0, [(100, 5.0)], [(101, 3.0)]), trade(10, +1, 3.0), trade(20, -1, 1.0)])
    v = f.values(book, 20)
    assert v[IDX["trade_flow_imbalance"]] == pytest.approx((3 - 1) / 4)
    assert v[IDX["vpin"]] == pytest.approx(abs(3 - 1) / 4)          # one full bucket
    feed(f, book, [trade(30, -1, 6.0)])              # bucket 2: 4 sell, then 2 sell in an open bucket
    assert f.vpin() == pytest.approx((0.5 + 1.0) / 2)
    feed(f, book, [trade(40, +1, 2.0)])              # bucket 3: |2 - 2| / 4 = 0; window of 2 buckets
    assert f.vpin() == pytest.approx((1.0 + 0.0) / 2)
    assert f.values(book, 2000)[IDX["trade_flow_imbalance"]] == 0.0   # window emptied


def test_kyle_lambda_recovers_a_linear_impact():
    book = OrderBook("X", 1.0)
    f = MarketFeatures(FeatureConfig(kyle_interval_ms=1000, kyle_window=10))
    feed(f, book, [snap(0, [(1000, 5.0)], [(1002, 5.0)])])
    mid_bid = 1000
    flows = [2.0, -1.0, 3.0, 0.5, -2.0]
    for k, q in enumerate(flows):
        t = 1000 * k + 10
        feed(f, book, [trade(t, 1 if q > 0 else -1, abs(q))])
        mid_bid += int(2 * q) if float(2 * q).is_integer() else 0
        feed(f, book, [snap(t + 5, [(mid_bid, 5.0)], [(mid_bid + 2, 5.0)])])   # mid moves 2 ticks per unit
    v = f.values(book, 1000 * len(flows) + 1)
    assert v[IDX["kyle_lambda"]] == pytest.approx(2.0)


def test_no_look_ahead():
    """Features at time t are identical whatever happens after t."""

    def stream(seed_after):
        before, after = np.random.default_rng(123), np.random.default_rng(seed_after)
        msgs = [snap(0, [(1000 - i, 1.0 + i) for i in range(12)], [(1001 + i, 1.0 + i) for i in range(12)])]
        for ts in range(100, 20_000, 100):
            gen = before if ts <= 10_000 else after
            p = int(gen.integers(990, 1000))
            msgs.append(delta(ts, bids=[(p, float(gen.integers(0, 5)))], asks=[(p + 12, float(gen.integers(0, 5)))]))
            msgs.append(trade(ts + 1, int(gen.choice([-1, 1])), float(gen.integers(1, 4))))
        return msgs

    results = []
    for seed_after in (1, 2):
        book = OrderBook("X", 1.0)
        f = MarketFeatures(FeatureConfig(vpin_bucket_volume=5.0, kyle_interval_ms=500, kyle_window=5))
        values_at_t = None
        for m in stream(seed_after):
            if m.ts > 10_050 and values_at_t is None:
                values_at_t = f.values(book, 10_050).copy()
            feed(f, book, [m])
        results.append((values_at_t, f.values(book, 20_000)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert not np.array_equal(results[0][1], results[1][1])      # the futures did differ


def test_config_validation():
    with pytest.raises(ValueError, match="vpin_bucket_volume"):
        FeatureConfig(vpin_bucket_volume=0.0)
    with pytest.raises(ValueError, match="kyle_window"):
        FeatureConfig(kyle_window=0)


def _slope_rounding_bound(distances, sizes):
    """Bound on how far two summation orders of ``depth_slope``'s dot products can put its result.

    ``x @ y`` of n terms summed in different orders (BLAS ``ddot`` with or without FMA, or a
    plain loop) differ by at most ~n·eps·Σ|x_i·y_i|; the numerator n·(x @ y) − Σx·Σy carries
    that n-fold and the denominator is exact (integer distances).
    """
    keep = sizes > 0
    x, y = distances[keep], np.cumsum(sizes[keep])
    n = len(x)
    den = n * float(x @ x) - float(x.sum()) ** 2
    if n < 2 or den <= 0:
        return 0.0
    eps = np.finfo(np.float64).eps
    return 4 * n * n * eps * float(np.abs(x) @ np.abs(y) + abs(x.sum() * y.sum())) / den


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 99_999)), min_size=0, max_size=14, unique_by=lambda x: x[0]),
       st.lists(st.tuples(st.integers(1, 40), st.integers(1, 99_999)), min_size=0, max_size=14, unique_by=lambda x: x[0]),
       st.integers(2, 12))
@example(bid_levels=[(1, 1), (2, 1), (13, 1)], ask_levels=[], slope_levels=3)  # 1 ulp apart with this BLAS
def test_list_path_equals_the_numpy_formulas(bid_levels, ask_levels, slope_levels):
    """values() (the env's pure-Python per-step path) against book_imbalance/depth_slope on book.depth().

    Imbalances: bit-identical (numpy's pairwise sum is reproduced). Slopes: within the
    rounding bound of two summation orders, because ``depth_slope``'s ``x @ y`` runs through
    the BLAS ``ddot`` kernel, whose accumulation order / FMA use depends on the BLAS build and
    CPU (this numpy's OpenBLAS differs from a plain loop in the last ulp on 3 terms), so no
    fixed Python order can match it bit for bit on every machine.
    """
    bids = [(1000 - d, s / 1000) for d, s in bid_levels]      # sizes with 3 decimals, as in feeds
    asks = [(1001 + d, s / 1000) for d, s in ask_levels]
    book = OrderBook("X", tick_size=1.0)
    book.apply(snap(0, bids, asks))
    feats = MarketFeatures(FeatureConfig(slope_levels=slope_levels))
    v = feats.values(book, 0)
    db, da = book.depth(max(10, slope_levels))
    bb, ba = book.best_bid(), book.best_ask()
    for j, n in ((IDX["imbalance_1"], 1), (IDX["imbalance_5"], 5), (IDX["imbalance_10"], 10)):
        assert v[j] == book_imbalance(db[:, 1], da[:, 1], n)
    for name, best, dist, sizes in (
            ("depth_slope_bid", bb, (bb[0] if bb else 0) - db[:slope_levels, 0], db[:slope_levels, 1]),
            ("depth_slope_ask", ba, da[:slope_levels, 0] - (ba[0] if ba else 0), da[:slope_levels, 1])):
        want = depth_slope(dist, sizes) if best else 0.0
        assert abs(v[IDX[name]] - want) <= _slope_rounding_bound(dist, sizes), (name, v[IDX[name]], want)
    # the env's call: integer tick prices read straight from the book (OrderBook.top), unpadded lists
    k = max(10, slope_levels)
    bp, bs, ap, as_ = book.top(k)
    assert (bp, ap) == (list(reversed(book.bids.keys()))[:k], list(book.asks.keys())[:k])
    row = MarketFeatures(FeatureConfig(slope_levels=slope_levels)).values_from_levels(0, bb, ba, bp, bs, ap, as_)
    assert row == v.tolist()


def test_vpin_bucket_resolution():
    assert FeatureConfig().vpin_bucket_volume is None
    assert FeatureConfig().resolve_vpin_bucket(0.2, 0.01).vpin_bucket_volume == pytest.approx(4.0)
    assert FeatureConfig().resolve_vpin_bucket(0.0001, 0.01).vpin_bucket_volume == 0.01   # at least a lot
    assert MarketFeatures()._vpin_v == 1.0            # standalone default without data
    with pytest.raises(ValueError, match="vpin_bucket_volume"):
        FeatureConfig(vpin_bucket_volume=-1.0)
