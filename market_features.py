"""Causal market-microstructure features, updated incrementally message by message.

One job: turn the stream of book and trade messages into a fixed vector of features that
only ever uses events at or before the current time (exchange ``ts`` of the last message
folded in). Nothing here peeks at a later message: every rolling statistic is updated when
an event arrives and evicts events older than its window when it is read.

Public names:

- ``FEATURE_NAMES``: the order of the vector returned by ``MarketFeatures.values``.
- ``FeatureConfig``: window lengths and bucket sizes (frozen dataclass).
- ``MarketFeatures``: the incremental calculator (``on_book`` / ``on_trade`` / ``values``).
- ``RollingWindow``: time-windowed running sum / sum of squares (O(1) amortised).
- ``ofi_increment``, ``book_imbalance``, ``depth_slope``: the pure formulas, with doctests.

Features (prices in integer ticks inside, as in ``order_book``; sizes in the feed's base units).
"Sees" says which data a value may depend on: *book now* = the book after the last book
message with ``ts <= t``; *window W* = events with ``t - W < ts <= t``.

| # | name | formula | units | sees |
|---|------|---------|-------|------|
| 0 | ``mid`` | (best bid + best ask) / 2 | ticks | book now |
| 1 | ``microprice`` | (bid·ask_size + ask·bid_size) / (bid_size + ask_size) | ticks | book now |
| 2 | ``spread_ticks`` | best ask − best bid | ticks | book now |
| 3 | ``spread_bps`` | spread / mid · 1e4 | bps | book now |
| 4–6 | ``imbalance_{1,5,10}`` | (Σ bid size − Σ ask size) / Σ both, first n levels | [−1, 1] | book now |
| 7–8 | ``depth_slope_{bid,ask}`` | OLS slope of cumulative size on distance from the best (ticks), first ``slope_levels`` levels | size / tick | book now |
| 9 | ``ofi`` | Σ e_n over book messages in window ``ofi_window_ms`` (Cont, Kukanov & Stoikov 2014, eq. 10) | size | window |
| 10 | ``trade_flow_imbalance`` | (buy − sell aggressor volume) / (buy + sell) in ``trade_window_ms``; 0 without trades | [−1, 1] | window |
| 11 | ``realised_vol_short_bps`` | sqrt(Σ r²), r = log mid return between consecutive book messages, window ``vol_short_ms`` | bps | window |
| 12 | ``realised_vol_long_bps`` | same over ``vol_long_ms`` | bps | window |
| 13 | ``vpin`` | mean of abs(B − S) / V over the last ``vpin_buckets`` completed volume buckets of size V (Easley, López de Prado & O'Hara 2012) | [0, 1] | completed buckets |
| 14 | ``kyle_lambda`` | OLS slope of Δmid on signed volume over the last ``kyle_window`` closed intervals of ``kyle_interval_ms`` (Kyle 1985) | ticks / size | closed intervals |
| 15 | ``spread_zscore`` | (spread − mean) / std of spread samples (one per book message) in ``spread_window_ms`` | σ | window |

Conventions: a feature that is undefined (empty book side, no trades yet, fewer than two
samples, zero variance) is 0.0, never NaN. VPIN classifies volume by the recorded aggressor
side rather than Easley et al.'s bulk volume classification, because the feed gives the side
exactly; a trade larger than the room left in a bucket is split across buckets. Kyle's
lambda intervals are aligned to multiples of ``kyle_interval_ms`` in exchange time, so the
value at time t does not depend on where a replay started (given enough warm-up).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from itertools import accumulate
from operator import mul
from typing import Any

import numpy as np

from utils import check_settings

FEATURE_NAMES: tuple[str, ...] = (
    "mid",
    "microprice",
    "spread_ticks",
    "spread_bps",
    "imbalance_1",
    "imbalance_5",
    "imbalance_10",
    "depth_slope_bid",
    "depth_slope_ask",
    "ofi",
    "trade_flow_imbalance",
    "realised_vol_short_bps",
    "realised_vol_long_bps",
    "vpin",
    "kyle_lambda",
    "spread_zscore",
)
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and bucket sizes of ``MarketFeatures`` (all times in exchange milliseconds)."""

    ofi_window_ms: float = 1_000.0
    """Window of the rolling order-flow-imbalance sum, ms."""
    trade_window_ms: float = 5_000.0
    """Window of the trade-flow imbalance, ms."""
    vol_short_ms: float = 1_000.0
    """Window of the short realised volatility, ms."""
    vol_long_ms: float = 30_000.0
    """Window of the long realised volatility (also the env's sigma estimate), ms."""
    vpin_bucket_volume: float | None = None
    """Volume V of one VPIN bucket in base units; None = resolved from the data by the env (``resolve_vpin_bucket``: max(lot, 20 x the median trade size)); ``MarketFeatures`` on its own takes 1.0 for None."""
    vpin_buckets: int = 50
    """Number of completed buckets averaged by VPIN."""
    kyle_interval_ms: float = 1_000.0
    """Length of one Kyle's-lambda regression interval, ms."""
    kyle_window: int = 60
    """Number of closed intervals in the Kyle's-lambda regression."""
    spread_window_ms: float = 60_000.0
    """Window of the spread z-score statistics, ms."""
    slope_levels: int = 10
    """Levels per side used by the depth slope."""

    def __post_init__(self) -> None:
        for name in ("ofi_window_ms", "trade_window_ms", "vol_short_ms", "vol_long_ms",
                     "vpin_bucket_volume", "kyle_interval_ms", "spread_window_ms"):
            value = getattr(self, name)
            if value is None and name == "vpin_bucket_volume":
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"FeatureConfig.{name} must be a positive finite number, got {value!r}")
        for name in ("vpin_buckets", "kyle_window", "slope_levels"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"FeatureConfig.{name} must be an int >= 1, got {value!r}")
        check_settings(self, {n: (1e-3, 86_400_000.0) for n in (
            "ofi_window_ms", "trade_window_ms", "vol_short_ms", "vol_long_ms", "kyle_interval_ms",
            "spread_window_ms")})  # windows up to a day

    def resolve_vpin_bucket(self, median_trade_size: float, lot_size: float) -> FeatureConfig:
        """This config with ``vpin_bucket_volume`` set from the data when it is None.

        The bucket holds ``max(lot_size, 20 * median_trade_size)``: about twenty typical
        trades, so a bucket spans seconds on a liquid symbol. A set value is kept.

        >>> FeatureConfig().resolve_vpin_bucket(0.05, 0.01).vpin_bucket_volume
        1.0
        >>> FeatureConfig(vpin_bucket_volume=3.0).resolve_vpin_bucket(0.05, 0.01).vpin_bucket_volume
        3.0
        """
        if self.vpin_bucket_volume is not None:
            return self
        return replace(self, vpin_bucket_volume=max(lot_size, 20 * median_trade_size))


class RollingWindow:
    """Sum, sum of squares and count of values stamped with times inside ``(t - W, t]``.

    ``add`` and ``evict`` are O(1) amortised (a deque). The sums are kept incrementally and
    reset to exactly zero whenever the window empties, so float drift cannot accumulate
    across quiet periods.

    >>> w = RollingWindow(1000)
    >>> w.add(0, 2.0); w.add(500, 4.0); w.add(1200, 1.0)
    >>> w.count, w.total          # the value at ts=0 left the window (0 <= 1200 - 1000)
    (2, 5.0)
    >>> w.evict(3000); w.count, w.total
    (0, 0.0)
    """

    __slots__ = ("window", "_q", "total", "total_sq", "count")

    def __init__(self, window: float) -> None:
        self.window = float(window)
        self._q: deque[tuple[int, float]] = deque()
        self.total = 0.0
        self.total_sq = 0.0
        self.count = 0

    def add(self, ts: int, value: float) -> None:
        """Fold in ``value`` stamped ``ts`` (non-decreasing) and evict what left the window."""
        self._q.append((ts, value))
        self.total += value
        self.total_sq += value * value
        self.count += 1
        self.evict(ts)

    def evict(self, now: int) -> None:
        """Drop values with ``ts <= now - window``."""
        q = self._q
        limit = now - self.window
        while q and q[0][0] <= limit:
            _, v = q.popleft()
            self.total -= v
            self.total_sq -= v * v
            self.count -= 1
        if not q:
            self.total = 0.0
            self.total_sq = 0.0

    def mean_std(self) -> tuple[float, float]:
        """Mean and population standard deviation of the values in the window (0, 0 if empty)."""
        n = self.count
        if n == 0:
            return 0.0, 0.0
        mean = self.total / n
        var = max(self.total_sq / n - mean * mean, 0.0)
        return mean, math.sqrt(var)


def ofi_increment(prev_bid: tuple[int, float], prev_ask: tuple[int, float],
                  bid: tuple[int, float], ask: tuple[int, float]) -> float:
    """Order-flow-imbalance contribution e_n of one book update (Cont, Kukanov & Stoikov 2014).

    ``e_n = 1[P_b >= P_b'] q_b - 1[P_b <= P_b'] q_b' - 1[P_a <= P_a'] q_a + 1[P_a >= P_a'] q_a'``
    with primes for the previous best levels; positive = buying pressure.

    Args:
        prev_bid: previous best bid (price_ticks, size).
        prev_ask: previous best ask (price_ticks, size).
        bid: best bid after the update.
        ask: best ask after the update.

    Returns:
        e_n in base-size units.

    >>> ofi_increment((100, 5.0), (101, 3.0), (100, 7.0), (101, 3.0))   # bid size +2
    2.0
    >>> ofi_increment((100, 5.0), (101, 3.0), (100, 5.0), (102, 4.0))   # ask level 101 gone
    3.0
    """
    e = 0.0
    if bid[0] >= prev_bid[0]:
        e += bid[1]
    if bid[0] <= prev_bid[0]:
        e -= prev_bid[1]
    if ask[0] <= prev_ask[0]:
        e -= ask[1]
    if ask[0] >= prev_ask[0]:
        e += prev_ask[1]
    return e


def book_imbalance(bid_sizes: np.ndarray, ask_sizes: np.ndarray, n: int) -> float:
    """(Σ bid − Σ ask) / (Σ bid + Σ ask) over the first ``n`` levels; 0 for an empty book.

    >>> book_imbalance(np.array([3.0, 1.0]), np.array([1.0, 1.0]), 1)
    0.5
    >>> book_imbalance(np.array([3.0, 1.0]), np.array([1.0, 1.0]), 2)
    0.3333333333333333
    """
    b = float(bid_sizes[:n].sum())
    a = float(ask_sizes[:n].sum())
    tot = b + a
    return (b - a) / tot if tot > 0 else 0.0


def depth_slope(distances: np.ndarray, sizes: np.ndarray) -> float:
    """OLS slope of cumulative size on distance from the best price (ticks), empty rows ignored.

    Rows with size 0 are padding (``OrderBook.depth`` zero-pads). Fewer than two levels or
    all levels at the same distance give 0.

    >>> depth_slope(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))   # cum 1, 3, 6
    2.5
    """
    n = int(np.count_nonzero(sizes > 0))
    if n < 2:
        return 0.0
    if n < len(sizes):
        keep = sizes > 0
        x, y = distances[keep], np.cumsum(sizes[keep])
    else:
        x, y = distances, np.cumsum(sizes)
    sx, sy = float(x.sum()), float(y.sum())
    den = n * float(x @ x) - sx * sx
    if den <= 0:
        return 0.0
    return (n * float(x @ y) - sx * sy) / den


class MarketFeatures:
    """Incremental feature calculator; see the module docstring for every formula.

    Call ``on_book(book, ts)`` after each book message has been applied to ``book``,
    ``on_trade(ts, side, size)`` for each trade, and ``values(book, now)`` whenever a feature
    vector is wanted (decision times). The per-message work is a handful of float
    operations and deque appends; the depth-based features are computed only in ``values``.
    ``best_bid`` / ``best_ask`` hold the book's best ``(ticks, size)`` after the last book
    message folded in (None for an empty side); ``mid`` the last mid (ticks) seen with both sides.

    Args:
        config: windows and bucket sizes.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        c = self.config
        self._ofi = RollingWindow(c.ofi_window_ms)
        self._trade = RollingWindow(c.trade_window_ms)        # signed volume
        self._trade_abs = RollingWindow(c.trade_window_ms)    # unsigned volume
        self._rv_short = RollingWindow(c.vol_short_ms)
        self._rv_long = RollingWindow(c.vol_long_ms)
        self._spread = RollingWindow(c.spread_window_ms)
        self._read_windows = (self._ofi, self._trade, self._trade_abs, self._rv_short, self._rv_long)
        self.best_bid: tuple[int, float] | None = None   # (ticks, size) after the last book message
        self.best_ask: tuple[int, float] | None = None
        self.mid: float | None = None           # ticks, after the last book message
        self.ts: int | None = None               # last event time folded in
        # VPIN state
        self._bucket_fill = 0.0
        self._bucket_imb = 0.0                   # buy - sell volume in the open bucket
        self._vpin_buckets: deque[float] = deque(maxlen=c.vpin_buckets)
        self._vpin_sum = 0.0
        self._vpin_v = c.vpin_bucket_volume if c.vpin_bucket_volume is not None else 1.0
        # Kyle's lambda state: intervals [k*I, (k+1)*I)
        self._kyle_k: int | None = None
        self._kyle_mid0: float | None = None     # mid at the start of the open interval
        self._kyle_flow = 0.0
        self._kyle_pts: deque[tuple[float, float]] = deque()
        self._kx = self._ky = self._kxx = self._kxy = 0.0

    # ----------------------------------------------------------------- per-message updates
    def on_book(self, book: Any, ts: int) -> None:
        """Fold in the book state after a book message with exchange time ``ts`` (ms)."""
        self._kyle_roll(ts)
        self.ts = ts
        bb = book.best_bid()
        ba = book.best_ask()
        if bb is None or ba is None:
            self.best_bid, self.best_ask = bb, ba
            return
        if self.best_bid is not None and self.best_ask is not None:
            self._ofi.add(ts, ofi_increment(self.best_bid, self.best_ask, bb, ba))
        self.best_bid, self.best_ask = bb, ba
        mid = (bb[0] + ba[0]) * 0.5
        old = self.mid
        if old is not None and mid != old and old > 0 and mid > 0:
            r = math.log(mid / old) * 1e4
            r2 = r * r
            self._rv_short.add(ts, r2)
            self._rv_long.add(ts, r2)
        self.mid = mid
        if self._kyle_mid0 is None:
            self._kyle_mid0 = mid
        self._spread.add(ts, float(ba[0] - bb[0]))

    def on_trade(self, ts: int, side: int, size: float) -> None:
        """Fold in a trade: ``side`` +1 buyer-initiated, -1 seller-initiated; ``size`` base units."""
        self._kyle_roll(ts)
        self.ts = ts
        signed = side * size
        self._trade.add(ts, signed)
        self._trade_abs.add(ts, size)
        self._kyle_flow += signed
        # VPIN: pour the trade into volume buckets of size V, splitting across buckets.
        v_bucket = self._vpin_v
        left = size
        while left > 0:
            room = v_bucket - self._bucket_fill
            take = left if left < room else room
            self._bucket_fill += take
            self._bucket_imb += side * take
            left -= take
            if self._bucket_fill >= v_bucket * (1 - 1e-12):
                value = abs(self._bucket_imb) / v_bucket
                if len(self._vpin_buckets) == self._vpin_buckets.maxlen:
                    self._vpin_sum -= self._vpin_buckets[0]
                self._vpin_buckets.append(value)
                self._vpin_sum += value
                self._bucket_fill = 0.0
                self._bucket_imb = 0.0

    def _kyle_roll(self, ts: int) -> None:
        """Close every Kyle interval that ended at or before ``ts`` (before folding ``ts`` in)."""
        interval = self.config.kyle_interval_ms
        k = int(ts // interval)
        if self._kyle_k is None:
            self._kyle_k = k
            return
        if k <= self._kyle_k:
            return
        # close the open interval with the mid as it stands (all events < its end), then any
        # empty intervals in between contribute (0 flow, 0 mid change) points, capped.
        mid = self.mid
        dm = (mid - self._kyle_mid0) if (mid is not None and self._kyle_mid0 is not None) else 0.0
        self._kyle_add(self._kyle_flow, dm)
        n_empty = min(k - self._kyle_k - 1, self.config.kyle_window)
        for _ in range(n_empty):
            self._kyle_add(0.0, 0.0)
        self._kyle_k = k
        self._kyle_flow = 0.0
        self._kyle_mid0 = mid

    def _kyle_add(self, x: float, y: float) -> None:
        pts = self._kyle_pts
        pts.append((x, y))
        self._kx += x
        self._ky += y
        self._kxx += x * x
        self._kxy += x * y
        if len(pts) > self.config.kyle_window:
            ox, oy = pts.popleft()
            self._kx -= ox
            self._ky -= oy
            self._kxx -= ox * ox
            self._kxy -= ox * oy

    # ----------------------------------------------------------------- reads
    def kyle_lambda(self) -> float:
        """OLS slope of interval mid change (ticks) on signed volume; 0 with < 3 points or no variance."""
        n = len(self._kyle_pts)
        if n < 3:
            return 0.0
        sxx = self._kxx - self._kx * self._kx / n
        if sxx <= 1e-12 * max(self._kxx, 1e-300):
            return 0.0
        return (self._kxy - self._kx * self._ky / n) / sxx

    def vpin(self) -> float:
        """Mean bucket imbalance over the completed buckets (up to ``vpin_buckets``); 0 before the first."""
        n = len(self._vpin_buckets)
        return self._vpin_sum / n if n else 0.0

    def realised_vol_bps(self, now: int, long: bool = True) -> float:
        """sqrt(Σ r²) of log mid returns (bps) in the long (or short) window ending at ``now``."""
        w = self._rv_long if long else self._rv_short
        w.evict(now)
        return math.sqrt(max(w.total, 0.0))

    def sigma_per_sqrt_s(self, now: int) -> float:
        """Volatility estimate in ticks per sqrt(second) from the long realised-vol window.

        ``sigma = RV_long(bps) / 1e4 · mid / sqrt(vol_long_ms / 1000)``; 0 before any mid.
        """
        if self.mid is None:
            return 0.0
        return self.realised_vol_bps(now) / 1e4 * self.mid / math.sqrt(self.config.vol_long_ms / 1000.0)

    def values(self, book: Any, now: int, out: np.ndarray | None = None,
               depth: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The feature vector (order ``FEATURE_NAMES``) at exchange time ``now`` (ms).

        Args:
            book: the order book after every book message with ``ts <= now``.
            now: the current exchange time; windows cover ``(now - W, now]``.
            out: optional float array of length ``N_FEATURES`` to fill in place.
            depth: ``book.depth(k)`` with ``k >= max(10, slope_levels)`` if the caller has it.

        Returns:
            The filled array (float64 unless ``out`` says otherwise).
        """
        k = max(10, self.config.slope_levels)
        bids, asks = depth if depth is not None else book.depth(k)
        bid_px, bid_sz = bids[:k, 0].tolist(), bids[:k, 1].tolist()
        ask_px, ask_sz = asks[:k, 0].tolist(), asks[:k, 1].tolist()
        row = self.values_from_levels(now, book.best_bid(), book.best_ask(), bid_px, bid_sz, ask_px, ask_sz)
        if out is None:
            return np.array(row, dtype=np.float64)
        out[:] = row
        return out

    def values_from_levels(self, now: int, bb: tuple[int, float] | None, ba: tuple[int, float] | None,
                           bid_px: list, bid_sz: list, ask_px: list, ask_sz: list) -> list[float]:
        """``values`` from the top levels as plain lists (the env's per-step path, no numpy).

        The imbalances are bit-identical to ``book_imbalance`` (numpy's pairwise summation
        order is reproduced). The depth slopes equal ``depth_slope`` up to a few ulps of
        their terms: ``depth_slope``'s ``x @ y`` goes through the BLAS ``ddot`` kernel, whose
        accumulation (FMA contraction, blocking) depends on the BLAS build and the CPU,
        while this path always sums the products left to right (``_dot``).

        Args:
            now: the current exchange time (ms).
            bb: best bid ``(ticks, size)`` or None.
            ba: best ask ``(ticks, size)`` or None.
            bid_px: bid prices (ticks), best first; at least ``max(10, slope_levels)`` entries
                or every level of the side (missing levels are treated as empty).
            bid_sz: bid sizes, same order (size 0 = empty level).
            ask_px: ask prices (ticks), best first.
            ask_sz: ask sizes.

        Returns:
            A list of ``N_FEATURES`` floats in ``FEATURE_NAMES`` order.
        """
        c = self.config
        out = [0.0] * N_FEATURES
        self._kyle_roll(now)
        if bb is not None and ba is not None:
            mid = (bb[0] + ba[0]) * 0.5
            spread = float(ba[0] - bb[0])
            out[0] = mid
            tot = bb[1] + ba[1]
            out[1] = (bb[0] * ba[1] + ba[0] * bb[1]) / tot if tot > 0 else mid
            out[2] = spread
            out[3] = spread / mid * 1e4 if mid > 0 else 0.0
            sw = self._spread
            q = sw._q
            if q and q[0][0] <= now - sw.window:
                sw.evict(now)
            m, s = sw.mean_std()
            out[15] = (spread - m) / s if (s > 1e-12 and sw.count >= 2) else 0.0
        k = max(10, c.slope_levels)
        bsz = bid_sz[:k]
        asz = ask_sz[:k]
        if len(bsz) < k:
            bsz = bsz + [0.0] * (k - len(bsz))
        if len(asz) < k:
            asz = asz + [0.0] * (k - len(asz))
        # numpy's summation order: sequential below 8 elements, 8 pairwise accumulators from 8
        b0, b1, b2, b3, b4, b5, b6, b7, b8, b9 = bsz[:10]
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9 = asz[:10]
        tot = b0 + a0
        out[4] = (b0 - a0) / tot if tot > 0 else 0.0
        b = b0 + b1 + b2 + b3 + b4
        a = a0 + a1 + a2 + a3 + a4
        tot = b + a
        out[5] = (b - a) / tot if tot > 0 else 0.0
        b = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7)) + b8 + b9
        a = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + a8 + a9
        tot = b + a
        out[6] = (b - a) / tot if tot > 0 else 0.0
        n = c.slope_levels
        if bb is not None:
            b0 = bb[0]
            out[7] = _slope([b0 - p for p in bid_px[:n]], bid_sz[:n])
        if ba is not None:
            a0 = ba[0]
            out[8] = _slope([p - a0 for p in ask_px[:n]], ask_sz[:n])
        # evict what left each window (the check inlined: usually nothing has)
        for w in self._read_windows:
            q = w._q
            if q and q[0][0] <= now - w.window:
                w.evict(now)
        out[9] = self._ofi.total
        ta = self._trade_abs.total
        out[10] = self._trade.total / ta if ta > 0 else 0.0
        out[11] = math.sqrt(max(self._rv_short.total, 0.0))
        out[12] = math.sqrt(max(self._rv_long.total, 0.0))
        out[13] = self.vpin()
        out[14] = self.kyle_lambda()
        return out


def _np_sum(a: list[float]) -> float:
    """Sum of floats in numpy's float64 order (pairwise with 8 accumulators; exact for len <= 128).

    >>> _np_sum([0.1] * 10) == float(np.sum(np.full(10, 0.1)))
    True
    """
    n = len(a)
    if n < 8:
        r = 0.0
        for v in a:
            r += v
        return r
    if n > 128:
        return float(np.sum(np.asarray(a, dtype=np.float64)))
    r0, r1, r2, r3, r4, r5, r6, r7 = a[:8]
    m = n - n % 8
    for i in range(8, m, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    r = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(m, n):
        r += a[i]
    return r


def _dot(x: list[float], y: list[float]) -> float:
    """Dot product of two vectors: a plain left-to-right loop below 16 elements, ``np.dot`` above.

    The loop equals OpenBLAS's ``ddot`` on builds whose short-vector tail is a plain loop;
    others (FMA contraction) can differ in the last ulp, which is why the property test holds
    the slopes to a rounding-error bound rather than to bit identity.

    >>> _dot([1.0, 2.0], [3.0, 4.0])
    11.0
    """
    if len(x) >= 16:
        return float(np.asarray(x, dtype=np.float64) @ np.asarray(y, dtype=np.float64))
    r = 0.0
    for u, v in zip(x, y, strict=True):
        r += u * v
    return r


def _slope(distances: list, sizes: list[float]) -> float:
    """``depth_slope`` on plain lists of integer-tick distances (equal to a few ulps, see ``_dot``).

    The sums over distances are exact (integers); the size sums keep numpy's order.

    >>> _slope([0, 1, 2], [1.0, 2.0, 3.0])
    2.5
    """
    if min(sizes, default=0.0) > 0:
        x = distances
        y = list(accumulate(sizes))
    else:
        x = [d for d, s in zip(distances, sizes, strict=True) if s > 0]
        y = list(accumulate(s for s in sizes if s > 0))
    n = len(x)
    if n < 2:
        return 0.0
    sx = sum(x)
    den = n * sum(map(mul, x, x)) - sx * sx
    if den <= 0:
        return 0.0
    if n == 10:
        y0, y1, y2, y3, y4, y5, y6, y7, y8, y9 = y
        sy = ((y0 + y1) + (y2 + y3)) + ((y4 + y5) + (y6 + y7)) + y8 + y9
    else:
        sy = _np_sum(y)
    return (n * _dot(x, y) - sx * sy) / den
