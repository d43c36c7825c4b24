"""Seeded synthetic limit-order-book market written in the exact Bybit v5 feed format.

One job: simulate an L2 order book driven by Poisson order flow around a latent efficient
price and write it as Bybit v5 JSONL (``orderbook.200`` snapshot + 100 ms deltas with
contiguous ``u``, one ``publicTrade`` message per market order), so that every downstream
path (loader, book, env, features) runs on it with the same code as on real recordings.

Public names:

- ``SyntheticMarketConfig``: every model parameter (defaults resemble Bybit ETHUSDT linear).
- ``generate_file(out_path, hours, seed, config)``: write a file; byte-identical per seed.
- ``default_dataset(data_dir, hours, seed)``: generate once into ``data/`` and reuse it.
- ``market_statistics(path, symbol)`` / ``compare_statistics(...)``: the statistics printed
  side by side by ``python synthetic_market.py compare``.

The model (all prices in integer ticks, all sizes in integer lots; one step = 100 ms):

1. Latent efficient price ``x`` (ticks, float): geometric Brownian motion with a two-state
   Markov volatility regime (calm / volatile) and compound-Poisson jumps. The fair bid is
   ``fb = floor(x)``; bids live at prices ``<= fb``, asks at ``>= fb + 1``.
2. When ``fb`` moves, the quotes left on the wrong side are stale: an aggressive order of a
   random size (the "sweep") trades against them in price priority and the remainder is
   cancelled. This is how the price drifts the book and why trades cluster on moves.
3. Limit orders arrive per side as a Poisson process; a fraction ``touch_fraction`` joins the
   fair touch, the rest lands at distance ``d >= 1`` ticks behind it with probability
   proportional to ``exp(-d / distance_scale_ticks)``; sizes are log-normal lots.
4. Cancellations arrive per side as a Poisson process at distances drawn from the same
   law; each removes on average ``cancel_fraction`` of the level it hits (so the cancelled
   volume is proportional to the level's size, as in Cont, Stoikov & Talreja 2010).
5. Market orders arrive per side as a Poisson process with log-normal sizes and walk the
   book from the touch, printing one trade per price level they consume.
6. Levels further than ``max_distance_ticks`` from the fair touch are dropped; the feed
   publishes the top ``depth_levels`` non-empty levels per side, exactly as Bybit's
   ``orderbook.200`` does (a level leaving the top 200 is sent with size ``"0"``).

CLI::

    python synthetic_market.py --hours 24 --seed 7 --out data/synth_ETHUSDT.jsonl
    python synthetic_market.py compare --real ../shared/data/bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl --symbol ETHUSDT
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from utils import atomic_open, check_settings

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the simulation changes in a way that changes the bytes for a given seed."""

_CHUNK = 3000
"""Random numbers are drawn in blocks of this many 100 ms steps (always whole blocks, so a
short file is a prefix of a longer one with the same seed and config)."""


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Parameters of the synthetic market; defaults resemble Bybit ETHUSDT linear perpetual.

    Rates are per second and per side unless stated; sizes are in lots.
    """

    symbol: str = "ETHUSDT"
    """Symbol written into ``s`` and the topics."""
    tick_size: str = "0.01"
    """Price tick of the contract, as a decimal string (Bybit ETHUSDT linear: 0.01)."""
    lot_size: str = "0.01"
    """Quantity step of the contract, as a decimal string (Bybit ETHUSDT linear: 0.01)."""
    initial_price: float = 1922.50
    """Efficient price at the start, in price units."""
    start_ts_ms: int = 1_735_689_600_000
    """Exchange time of the snapshot, ms since the epoch (2025-01-01T00:00:00Z)."""
    interval_ms: int = 100
    """Delta cadence of the feed (Bybit orderbook.200 pushes every 100 ms)."""
    depth_levels: int = 200
    """Levels per side in the published book (the 200 of ``orderbook.200``)."""
    max_distance_ticks: int = 400
    """Simulated book reaches this many ticks behind the fair touch; further levels are dropped."""
    sigma_ticks_per_sqrt_s: float = 0.1
    """Volatility of the efficient price in the calm regime, ticks per sqrt(second) at the
    initial price (the GBM log-volatility is this divided by the initial price in ticks)."""
    volatile_sigma_multiplier: float = 6.0
    """Volatility in the volatile regime is this multiple of the calm one."""
    calm_to_volatile_per_hour: float = 3.0
    """Rate of switching from the calm to the volatile regime, per hour."""
    volatile_to_calm_per_hour: float = 20.0
    """Rate of switching back to the calm regime, per hour (mean volatile spell 3 min)."""
    jump_rate_per_hour: float = 40.0
    """Rate of efficient-price jumps, per hour."""
    jump_mean_ticks: float = 6.0
    """Mean absolute jump size in ticks (exponential, random sign)."""
    limit_rate_per_s: float = 30.0
    """Limit-order arrivals per second per side."""
    touch_fraction: float = 0.25
    """Fraction of limit orders that join the fair touch (distance 0)."""
    distance_scale_ticks: float = 250.0
    """Decay length of the distance law ``P(d) ~ exp(-d / scale)``, ``1 <= d <= max_distance``."""
    touch_size_median_lots: float = 60.0
    """Median size in lots of limit orders joining the touch (log-normal)."""
    limit_size_median_lots: float = 180.0
    """Median size in lots of limit orders far behind the touch (log-normal)."""
    near_touch_size_factor: float = 0.05
    """Just behind the touch the median size is this fraction of the far median; it recovers
    as ``median(d) = far * (1 - (1 - factor) * exp(-d / size_recovery_ticks))``, giving the
    thin-then-thick depth profile of real books."""
    size_recovery_ticks: float = 30.0
    """Distance scale of that recovery, ticks."""
    limit_size_log_sigma: float = 2.0
    """Log-normal sigma of limit-order sizes."""
    cancel_rate_per_s: float = 30.0
    """Cancellation events per second per side."""
    cancel_fraction: float = 0.35
    """Mean fraction of a level removed by a partial cancellation event (uniform on [0, 2f])."""
    cancel_level_prob: float = 0.15
    """Probability that a cancellation event behind the touch removes the whole level (its
    last order left); at the touch cancellations are always partial."""
    cancel_touch_fraction: float = 0.05
    """Fraction of cancellation events that hit the fair touch (distance 0)."""
    market_rate_per_s: float = 0.15
    """Market-order arrivals per second per side."""
    market_size_median_lots: float = 10.0
    """Median market-order size in lots (log-normal)."""
    market_size_log_sigma: float = 1.8
    """Log-normal sigma of market-order sizes."""
    requote_prob: float = 0.9
    """After the fair touch moves, probability that each side's new touch is re-quoted in the
    same step (market makers follow the price) if it is empty."""
    sweep_size_multiplier: float = 3.0
    """A stale-quote sweep trades ``multiplier x`` a market-order-sized draw; the rest is cancelled."""
    warmup_s: float = 600.0
    """Simulated seconds before the snapshot, so the first book is already in equilibrium."""
    signal_drift_ticks_per_s: float = 0.0
    """Edge option (0 = off): stationary standard deviation of a latent drift ``a`` of the
    efficient price, ticks per second. ``a`` is an Ornstein–Uhlenbeck process with half-life
    ``signal_half_life_s``; the efficient price moves by ``a * dt`` per step on top of its
    random walk, so its next moves are predictable from ``a``."""
    signal_half_life_s: float = 10.0
    """Half-life of the latent drift ``a``, seconds (used only when the drift is on)."""
    informed_share: float = 0.0
    """Edge option (0 = off): how strongly market orders lean with the latent drift — a market
    order buys with probability ``(1 + informed_share * tanh(a / sd_a)) / 2`` (``sd_a`` = the
    drift's stationary std). This is what makes the drift visible to causal features: the
    trade-flow imbalance of the last seconds leads the mid."""
    mean_reversion_half_life_s: float = 0.0
    """Edge option (0 = off): the log efficient price reverts to its initial value with this
    half-life, seconds (an Ornstein–Uhlenbeck log-price instead of a random walk), which
    bounds the inventory risk of a market maker."""

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            try:
                ok = Decimal(value) > 0
            except ArithmeticError:
                ok = False
            if not ok:
                raise ValueError(f"SyntheticMarketConfig.{name} must be a positive decimal string, got {value!r}")
        positive = ("initial_price", "interval_ms", "depth_levels", "max_distance_ticks",
                    "limit_rate_per_s", "limit_size_median_lots", "market_size_median_lots",
                    "touch_size_median_lots", "near_touch_size_factor", "size_recovery_ticks",
                    "distance_scale_ticks")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SyntheticMarketConfig.{name} must be > 0, got {getattr(self, name)!r}")
        nonneg = ("sigma_ticks_per_sqrt_s", "volatile_sigma_multiplier", "calm_to_volatile_per_hour",
                  "volatile_to_calm_per_hour", "jump_rate_per_hour", "jump_mean_ticks",
                  "cancel_rate_per_s", "market_rate_per_s", "sweep_size_multiplier", "warmup_s",
                  "limit_size_log_sigma", "market_size_log_sigma")
        check_settings(self)  # every number finite
        for name in nonneg:
            if not getattr(self, name) >= 0:
                raise ValueError(f"SyntheticMarketConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.touch_fraction <= 1.0:
            raise ValueError(f"SyntheticMarketConfig.touch_fraction must be in [0, 1], got {self.touch_fraction!r}")
        for name in ("cancel_level_prob", "cancel_touch_fraction", "requote_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SyntheticMarketConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 < self.cancel_fraction <= 0.5:
            raise ValueError(f"SyntheticMarketConfig.cancel_fraction must be in (0, 0.5], got {self.cancel_fraction!r}")
        self._check_edge()
        if self.max_distance_ticks < self.depth_levels:
            raise ValueError("SyntheticMarketConfig.max_distance_ticks must be >= depth_levels "
                             f"({self.max_distance_ticks} < {self.depth_levels})")
        if self.initial_price / float(self.tick_size) < 10 * self.max_distance_ticks:
            raise ValueError(f"SyntheticMarketConfig.initial_price {self.initial_price} is too close to 0 "
                             f"for max_distance_ticks={self.max_distance_ticks} at tick {self.tick_size}")

    def _check_edge(self) -> None:
        """Validate the edge options (latent drift, informed flow, mean reversion)."""
        for name in ("signal_drift_ticks_per_s", "mean_reversion_half_life_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"SyntheticMarketConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.signal_half_life_s > 0:
            raise ValueError(f"SyntheticMarketConfig.signal_half_life_s must be > 0, got {self.signal_half_life_s!r}")
        if not 0.0 <= self.informed_share <= 1.0:
            raise ValueError(f"SyntheticMarketConfig.informed_share must be in [0, 1], got {self.informed_share!r}")
        if self.informed_share > 0 and self.signal_drift_ticks_per_s == 0:
            raise ValueError("SyntheticMarketConfig.informed_share > 0 needs signal_drift_ticks_per_s > 0 "
                             "(market orders lean with the latent drift)")

    def fingerprint(self) -> str:
        """Short hash of every field and the generator version (used in cached file names).

        Edge options left at their "off" value are left out of the hash, so the default
        market keeps the file name (and bytes) it had before those options existed.
        """
        fields = dataclasses.asdict(self)
        for name, off in _EDGE_OFF.items():
            if fields[name] == off:
                del fields[name]
        if "signal_drift_ticks_per_s" not in fields:
            del fields["signal_half_life_s"]
        payload = orjson.dumps({"v": GENERATOR_VERSION, **fields}, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()[:10]


_EDGE_OFF = {"signal_drift_ticks_per_s": 0.0, "informed_share": 0.0, "mean_reversion_half_life_s": 0.0}
"""The edge options and their "off" values (the default market)."""

EDGE_MARKET = SyntheticMarketConfig(signal_drift_ticks_per_s=0.6, signal_half_life_s=10.0,
                                    informed_share=0.6, mean_reversion_half_life_s=600.0,
                                    market_rate_per_s=1.0, sweep_size_multiplier=1.0)
"""A market with a causally visible signal (issue 10): a latent drift of the efficient price
(std 0.6 tick/s, half-life 10 s) that informed market orders lean with, so the trade-flow
imbalance of the last 5 s predicts the next 5 s of mid moves (correlation ~0.2 on 2 hours,
0 in the default market); a log price that mean-reverts with a 10-minute half-life (bounded
inventory risk); and more, smaller-swept market-order flow (1 order/s per side, sweeps of
1x a market-order draw) so that queue fills are common. Whether that edge pays after fees
depends on the fee tier: measured in docs/synthetic_and_baselines.md, section "The edge market"
(maker rebate 0.5 bps, position limit 2 orders; ``benchmarks/learn_edge.py``)."""


def decimal_places(step: str) -> int:
    """Number of decimals needed to print multiples of ``step``.

    >>> decimal_places("0.01"), decimal_places("0.5"), decimal_places("1")
    (2, 1, 0)
    """
    return max(0, -Decimal(step).normalize().as_tuple().exponent)


class _Formatter:
    """Cached integer-ticks/lots -> Bybit decimal-string conversion."""

    def __init__(self, step: str) -> None:
        self.step = Decimal(step)
        self.places = decimal_places(step)
        self.cache: dict[int, str] = {}

    def __call__(self, n: int) -> str:
        s = self.cache.get(n)
        if s is None:
            s = format(self.step * n, f".{self.places}f")
            self.cache[n] = s
        return s


@dataclass
class _Chunk:
    """Pre-drawn randomness for ``_CHUNK`` steps (see ``_draw_chunk``)."""

    fb: np.ndarray            # fair bid tick after each step
    sweep: np.ndarray         # (C, 2) sweep sizes, lots (0 = buy-side sweep unused)
    lim_off: np.ndarray       # (C*2+1,) offsets into the limit arrays, row-major (step, side)
    lim_d: np.ndarray         # offsets from the fair bid index (-d bids, 1 + d asks)
    lim_size: np.ndarray
    can_off: np.ndarray
    can_d: np.ndarray         # offsets from the fair bid index
    can_u: np.ndarray         # fraction to remove: uniform [0, 2f], or 1.0 (whole level)
    can_h: np.ndarray         # stochastic-rounding uniform
    mkt_off: np.ndarray       # (C+1,) offsets of market orders per step
    mkt_side: np.ndarray      # +1 buy / -1 sell
    mkt_size: np.ndarray
    mkt_t: np.ndarray         # ms offset inside the step, sorted per step
    cts_lag: np.ndarray       # (C,) ms between cts and ts
    requote: np.ndarray       # (C, 2) uniform draws for the re-quote after a move
    requote_size: np.ndarray  # (C, 2) lots


class _Simulator:
    """The event simulation; ``steps()`` yields the messages of each 100 ms step."""

    def __init__(self, config: SyntheticMarketConfig, seed: int) -> None:
        c = config
        self.c = c
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x5EED])))
        self.dt = c.interval_ms / 1000.0
        self.x0 = c.initial_price / float(c.tick_size)
        self.log_x = math.log(self.x0)
        self.drift = 0.0   # latent drift of the efficient price, ticks/s (edge option)
        self.regime = 0
        self.D = c.max_distance_ticks
        self.W = 2 * self.D + 1024
        fb = math.floor(self.x0)
        self.base = fb - self.W // 2
        self.fb = fb
        self.q = np.zeros(self.W, dtype=np.int64)
        self.pub_b = np.zeros(self.W, dtype=np.int64)
        self.pub_a = np.zeros(self.W, dtype=np.int64)
        self.price = _Formatter(c.tick_size)
        self.qty = _Formatter(c.lot_size)
        self.u = 1_000_000 + int(seed) % 1_000_000 * 10
        self.xseq = 10_000_000_000
        self.trade_n = 0
        self.last_trade_px: int | None = None
        self.last_tick_dir = "ZeroPlusTick"
        self.seed = int(seed)
        self.chunk: _Chunk | None = None
        self.chunk_pos = _CHUNK
        # distance law for d >= 1: truncated exponential, sampled by inverse CDF
        d = np.arange(1, self.D + 1, dtype=np.float64)
        w = np.exp(-d / c.distance_scale_ticks)
        self.d_cdf = np.cumsum(w) / w.sum()

    # ---------------------------------------------------------------- randomness
    def _distances(self, n: int, touch: float) -> np.ndarray:
        u = self.rng.random(n)
        v = self.rng.random(n)
        d = np.searchsorted(self.d_cdf, v, side="right").astype(np.int64) + 1
        np.minimum(d, self.D, out=d)
        d[u < touch] = 0
        return d

    def _limit_sizes(self, d: np.ndarray) -> np.ndarray:
        c = self.c
        median = c.limit_size_median_lots * (
            1.0 - (1.0 - c.near_touch_size_factor) * np.exp(-d / c.size_recovery_ticks))
        median[d == 0] = c.touch_size_median_lots
        x = np.exp(np.log(median) + c.limit_size_log_sigma * self.rng.standard_normal(len(d)))
        return np.maximum(1, np.rint(x)).astype(np.int64)

    @staticmethod
    def _signed(d: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Distances -> offsets from the fair bid: ``-d`` for bids (even rows), ``1 + d`` for asks."""
        is_ask = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
        return np.where(is_ask, 1 + d, -d)

    def _lognormal_lots(self, n: int, median: float, sigma: float) -> np.ndarray:
        x = self.rng.lognormal(math.log(median), sigma, n) if sigma > 0 else np.full(n, median)
        return np.maximum(1, np.rint(x)).astype(np.int64)

    def _draw_chunk(self) -> _Chunk:
        c, C, dt, rng = self.c, _CHUNK, self.dt, self.rng
        # efficient price: GBM with Markov regime and compound-Poisson jumps
        p_up = 1.0 - math.exp(-c.calm_to_volatile_per_hour / 3600.0 * dt)
        p_down = 1.0 - math.exp(-c.volatile_to_calm_per_hour / 3600.0 * dt)
        sw = rng.random(C)
        regime = np.empty(C, dtype=np.int8)
        r = self.regime
        for i in range(C):  # a 2-state chain; 3000 scalar steps per 5 min of market, cheap
            if sw[i] < (p_down if r else p_up):
                r = 1 - r
            regime[i] = r
        self.regime = r
        sig = c.sigma_ticks_per_sqrt_s / self.x0 * np.where(regime == 1, c.volatile_sigma_multiplier, 1.0)
        z = rng.standard_normal(C)
        nj = rng.poisson(c.jump_rate_per_hour / 3600.0 * dt, C)
        jsize = rng.exponential(c.jump_mean_ticks, C) * np.where(rng.random(C) < 0.5, -1.0, 1.0) * nj
        incr = sig * math.sqrt(dt) * z - 0.5 * sig**2 * dt + jsize / self.x0
        drift = self._drift_path(C) if c.signal_drift_ticks_per_s > 0 else None
        if drift is not None:
            incr += drift * dt / self.x0
        log_x = self._log_price_path(incr)
        self.log_x = float(log_x[-1])
        fb = np.floor(np.exp(log_x)).astype(np.int64)
        sweep = self._lognormal_lots(2 * C, c.market_size_median_lots, c.market_size_log_sigma)
        sweep = (sweep * c.sweep_size_multiplier).astype(np.int64).reshape(C, 2)
        n_lim = rng.poisson(c.limit_rate_per_s * dt, 2 * C)
        lim_off = np.concatenate(([0], np.cumsum(n_lim)))
        lim_d = self._distances(int(lim_off[-1]), c.touch_fraction)
        lim_size = self._limit_sizes(lim_d)
        lim_d = self._signed(lim_d, n_lim)
        n_can = rng.poisson(c.cancel_rate_per_s * dt, 2 * C)
        can_off = np.concatenate(([0], np.cumsum(n_can)))
        nc = int(can_off[-1])
        can_d = self._distances(nc, c.cancel_touch_fraction)
        can_u = rng.random(nc) * (2.0 * c.cancel_fraction)
        can_u[(rng.random(nc) < c.cancel_level_prob) & (can_d > 0)] = 1.0
        can_d = self._signed(can_d, n_can)
        can_h = rng.random(nc)
        n_mkt = rng.poisson(2.0 * c.market_rate_per_s * dt, C)
        mkt_off = np.concatenate(([0], np.cumsum(n_mkt)))
        nm = int(mkt_off[-1])
        p_buy = 0.5
        if c.informed_share > 0 and drift is not None:   # market orders lean with the drift
            sd = c.signal_drift_ticks_per_s
            p_buy = 0.5 * (1.0 + c.informed_share * np.tanh(np.repeat(drift, n_mkt) / sd))
        mkt_side = np.where(rng.random(nm) < p_buy, 1, -1)
        mkt_size = self._lognormal_lots(nm, c.market_size_median_lots, c.market_size_log_sigma)
        mkt_t = rng.integers(1, c.interval_ms, nm)
        step_of = np.repeat(np.arange(C), n_mkt)
        mkt_t = mkt_t[np.lexsort((mkt_t, step_of))]  # sorted within each step
        cts_lag = rng.integers(1, 10, C)
        requote = rng.random((C, 2))
        requote_size = self._lognormal_lots(2 * C, c.touch_size_median_lots, c.limit_size_log_sigma).reshape(C, 2)
        return _Chunk(fb, sweep, lim_off, lim_d, lim_size, can_off, can_d, can_u, can_h,
                      mkt_off, mkt_side, mkt_size, mkt_t, cts_lag, requote, requote_size)

    def _drift_path(self, n: int) -> np.ndarray:
        """The latent drift ``a`` (ticks/s) over the next ``n`` steps: an exact OU discretisation."""
        c = self.c
        rho = 0.5 ** (self.dt / c.signal_half_life_s)
        eps = self.rng.standard_normal(n) * (c.signal_drift_ticks_per_s * math.sqrt(1.0 - rho * rho))
        out = np.empty(n)
        a = self.drift
        for i in range(n):  # scalar recursion, 3000 steps per chunk, cheap
            a = rho * a + eps[i]
            out[i] = a
        self.drift = a
        return out

    def _log_price_path(self, incr: np.ndarray) -> np.ndarray:
        """Log efficient price after each increment: a random walk, or OU towards the start."""
        hl = self.c.mean_reversion_half_life_s
        if hl <= 0:
            return self.log_x + np.cumsum(incr)
        pull = 1.0 - 0.5 ** (self.dt / hl)
        anchor = math.log(self.x0)
        out = np.empty(len(incr))
        lx = self.log_x
        for i in range(len(incr)):
            lx += incr[i] - pull * (lx - anchor)
            out[i] = lx
        return out

    # ---------------------------------------------------------------- book mechanics
    def _recenter(self, fb: int) -> None:
        i = fb - self.base
        if self.D + 64 <= i < self.W - self.D - 64:
            return
        shift = i - self.W // 2
        for name in ("q", "pub_b", "pub_a"):
            old = getattr(self, name)
            new = np.zeros_like(old)
            if shift > 0:
                new[: self.W - shift] = old[shift:]
            else:
                new[-shift:] = old[: self.W + shift]
            setattr(self, name, new)
        self.base += shift

    def _take(self, idx: np.ndarray, size: int) -> tuple[list[tuple[int, int]], int]:
        """Consume ``size`` lots from levels ``idx`` in that order; returns fills and remainder."""
        q = self.q
        avail = q[idx]
        cum = np.cumsum(avail)
        k = int(np.searchsorted(cum, size, side="left"))
        fills: list[tuple[int, int]] = []
        n_full = min(k, len(idx))
        for j in range(n_full):
            fills.append((int(idx[j]), int(avail[j])))
        q[idx[:n_full]] = 0
        if k < len(idx):
            part = size - (int(cum[k - 1]) if k > 0 else 0)
            if part > 0:
                fills.append((int(idx[k]), part))
                q[idx[k]] -= part
        return fills, size - sum(f[1] for f in fills)

    def _side_levels(self, side: int) -> np.ndarray:
        """Occupied level indices from the touch outward (side +1: asks, -1: bids)."""
        i = self.fb - self.base
        if side > 0:
            lo = i + 1
            return np.flatnonzero(self.q[lo : lo + self.D + 1]) + lo
        lo = i - self.D
        return (np.flatnonzero(self.q[lo : i + 1]) + lo)[::-1]

    def _trade_message(self, t_ms: int, side: int, fills: list[tuple[int, int]]) -> bytes:
        data = []
        sym = self.c.symbol
        for idx, lots in fills:
            px = idx + self.base
            last = self.last_trade_px
            if last is None or px == last:
                tick_dir = "ZeroPlusTick" if self.last_tick_dir in ("PlusTick", "ZeroPlusTick") else "ZeroMinusTick"
            else:
                tick_dir = "PlusTick" if px > last else "MinusTick"
            self.last_trade_px, self.last_tick_dir = px, tick_dir
            self.trade_n += 1
            data.append({
                "T": t_ms, "s": sym, "S": "Buy" if side > 0 else "Sell", "v": self.qty(lots),
                "p": self.price(px), "L": tick_dir,
                "i": f"{self.seed & 0xFFFFFFFF:08x}-5eed-4000-8000-{self.trade_n:012x}",
                "BT": False, "RPI": False, "seq": self.xseq,
            })
        return orjson.dumps({"topic": f"publicTrade.{sym}", "type": "snapshot", "ts": t_ms + 1, "data": data})

    def _market(self, side: int, size: int, t_ms: int, out: list[bytes] | None) -> None:
        idx = self._side_levels(side)
        if len(idx) == 0:
            return
        fills, _ = self._take(idx, size)
        self.xseq += 1
        if out is not None and fills:
            out.append(self._trade_message(t_ms, side, fills))

    def _move(self, fb_new: int, sweep: np.ndarray, t_ms: int, out: list[bytes] | None) -> None:
        """Shift the fair touch; sweep stale quotes and drop levels leaving the band."""
        fb_old = self.fb
        self._recenter(fb_new)
        i_old, i_new = fb_old - self.base, fb_new - self.base
        q, D = self.q, self.D
        if i_new > i_old:   # stale asks in (old, new]: a buyer lifts them, the rest is pulled
            stale = np.flatnonzero(q[i_old + 1 : i_new + 1]) + i_old + 1
            side = 1
            q[max(0, i_old - D) : i_new - D] = 0
        else:               # stale bids in (new, old]: a seller hits them from the top
            stale = (np.flatnonzero(q[i_new + 1 : i_old + 1]) + i_new + 1)[::-1]
            side = -1
            q[i_new + D + 2 : i_old + D + 2] = 0
        self.fb = fb_new
        if len(stale):
            fills, _ = self._take(stale, int(sweep[0 if side > 0 else 1]))
            q[stale] = 0
            self.xseq += 1
            if out is not None and fills:
                out.append(self._trade_message(t_ms, side, fills))

    def _limits_and_cancels(self, ch: _Chunk, k: int) -> None:
        q, i = self.q, self.fb - self.base
        lo, hi = ch.lim_off[2 * k], ch.lim_off[2 * k + 2]
        if hi > lo:
            np.add.at(q, ch.lim_d[lo:hi] + i, ch.lim_size[lo:hi])
        lo, hi = ch.can_off[2 * k], ch.can_off[2 * k + 2]
        if hi > lo:
            idx = ch.can_d[lo:hi] + i
            cur = q[idx]
            amt = np.minimum(cur, np.floor(cur * ch.can_u[lo:hi] + ch.can_h[lo:hi]).astype(np.int64))
            np.subtract.at(q, idx, amt)
            q[idx] = np.maximum(q[idx], 0)

    def _views(self) -> tuple[np.ndarray, np.ndarray]:
        """The published top-``depth_levels`` book per side, as full-width arrays."""
        q, i, D, L = self.q, self.fb - self.base, self.D, self.c.depth_levels
        nb = np.zeros_like(q)
        na = np.zeros_like(q)
        bid_idx = np.flatnonzero(q[i - D : i + 1])
        if len(bid_idx):
            cut = int(bid_idx[-L:][0]) + i - D if len(bid_idx) > L else i - D
            nb[cut : i + 1] = q[cut : i + 1]
        ask_idx = np.flatnonzero(q[i + 1 : i + D + 2])
        if len(ask_idx):
            cut = int(ask_idx[:L][-1]) + i + 1 if len(ask_idx) > L else i + D + 1
            na[i + 1 : cut + 1] = q[i + 1 : cut + 1]
        return nb, na

    def step(self, out: list[bytes] | None, ts: int) -> None:
        """Advance one interval ending at ``ts``; append trade messages to ``out``."""
        if self.chunk is None or self.chunk_pos >= _CHUNK:
            self.chunk = self._draw_chunk()
            self.chunk_pos = 0
        ch, k = self.chunk, self.chunk_pos
        self.chunk_pos += 1
        t0 = ts - self.c.interval_ms
        fb_new = int(ch.fb[k])
        if fb_new != self.fb:
            self._move(fb_new, ch.sweep[k], t0, out)
            i = fb_new - self.base
            for side, j in ((0, i), (1, i + 1)):
                if self.q[j] == 0 and ch.requote[k, side] < self.c.requote_prob:
                    self.q[j] = ch.requote_size[k, side]
        for j in range(ch.mkt_off[k], ch.mkt_off[k + 1]):
            self._market(int(ch.mkt_side[j]), int(ch.mkt_size[j]), t0 + int(ch.mkt_t[j]), out)
        self._limits_and_cancels(ch, k)

    def book_message(self, ts: int, snapshot: bool) -> bytes | None:
        """The snapshot or delta line for the current state (None: nothing changed)."""
        nb, na = self._views()
        base, P, Q = self.base, self.price, self.qty
        if snapshot:
            bi = np.flatnonzero(nb)[::-1]
            ai = np.flatnonzero(na)
        else:
            bi = np.flatnonzero(nb != self.pub_b)[::-1]
            ai = np.flatnonzero(na != self.pub_a)
            if len(bi) == 0 and len(ai) == 0:
                return None
        b = [[P(int(j) + base), Q(int(v))] for j, v in zip(bi.tolist(), nb[bi].tolist(), strict=True)]
        a = [[P(int(j) + base), Q(int(v))] for j, v in zip(ai.tolist(), na[ai].tolist(), strict=True)]
        self.pub_b, self.pub_a = nb, na
        self.u += 1
        self.xseq += 1
        lag = int(self.chunk.cts_lag[self.chunk_pos - 1]) if self.chunk is not None else 1
        return orjson.dumps({
            "topic": f"orderbook.{self.c.depth_levels}.{self.c.symbol}",
            "type": "snapshot" if snapshot else "delta", "ts": ts,
            "data": {"s": self.c.symbol, "b": b, "a": a, "u": self.u, "seq": self.xseq},
            "cts": ts - lag,
        })

    def published_book(self) -> tuple[dict[int, int], dict[int, int]]:
        """The book a client holds after the last message: ``{price_ticks: lots}`` per side."""
        b = {int(j) + self.base: int(self.pub_b[j]) for j in np.flatnonzero(self.pub_b)}
        a = {int(j) + self.base: int(self.pub_a[j]) for j in np.flatnonzero(self.pub_a)}
        return b, a


def iter_lines(hours: float, seed: int, config: SyntheticMarketConfig | None = None,
               check: Any = None) -> Iterator[bytes]:
    """Yield the file's lines (without newline) in order.

    Args:
        hours: length of the feed after the snapshot, in hours (fractions allowed).
        seed: random seed; the same seed and config give the same lines.
        config: model parameters (defaults: ``SyntheticMarketConfig()``).
        check: optional callable ``check(line, bids, asks)`` called after every book line with
            the simulator's published book (``{price_ticks: lots}`` per side); used by tests.

    Yields:
        One JSON document per line, as bytes.
    """
    c = config or SyntheticMarketConfig()
    if not (isinstance(hours, int | float) and math.isfinite(hours) and hours > 0):
        raise ValueError(f"hours must be a positive finite number, got {hours!r}")
    sim = _Simulator(c, seed)
    n_warm = int(round(c.warmup_s * 1000 / c.interval_ms))
    ts = c.start_ts_ms - n_warm * c.interval_ms
    for _ in range(n_warm):
        ts += c.interval_ms
        sim.step(None, ts)
    line = sim.book_message(ts, snapshot=True)
    assert line is not None
    if check is not None:
        check(line, *sim.published_book())
    yield line
    n_steps = int(round(hours * 3600 * 1000 / c.interval_ms))
    out: list[bytes] = []
    for _ in range(n_steps):
        ts += c.interval_ms
        sim.step(out, ts)
        yield from out
        out.clear()
        line = sim.book_message(ts, snapshot=False)
        if line is not None:
            if check is not None:
                check(line, *sim.published_book())
            yield line


def generate_file(out_path: str | os.PathLike, hours: float, seed: int,
                  config: SyntheticMarketConfig | None = None) -> Path:
    """Write a synthetic Bybit v5 feed to ``out_path`` (atomically; byte-identical per seed).

    The file is streamed to a temporary file in the destination folder and renamed at the
    end (the streaming twin of ``utils.atomic_write_bytes``: a day is ~300 MB, too much to
    hold in memory), so an interrupted run never leaves a half file under the final name.

    Args:
        out_path: destination ``.jsonl`` path; its folder is created.
        hours: hours of feed after the snapshot (fractions allowed, e.g. 0.25).
        seed: random seed.
        config: model parameters (defaults resemble Bybit ETHUSDT linear).

    Returns:
        The destination path.
    """
    path = Path(out_path)
    with atomic_open(path, buffering=1 << 20) as fh:
        buf: list[bytes] = []
        for line in iter_lines(hours, seed, config):
            buf.append(line)
            if len(buf) >= 20000:
                buf.append(b"")
                fh.write(b"\n".join(buf))
                buf.clear()
        if buf:
            buf.append(b"")
            fh.write(b"\n".join(buf))
    logger.info("wrote %s (%.2f h, seed %d)", path, hours, seed)
    return path


def default_dataset(data_dir: str | os.PathLike = "data", hours: float = 2.0, seed: int = 7,
                    config: SyntheticMarketConfig | None = None) -> Path:
    """Path of the default synthetic dataset, generating it on first use.

    The file name encodes the symbol, length, seed and a hash of the config and generator
    version, so a changed default produces a new file instead of reusing a stale one.

    Args:
        data_dir: folder for generated data.
        hours: hours of feed.
        seed: random seed.
        config: model parameters.

    Returns:
        Path of the (existing or freshly written) ``.jsonl`` file.
    """
    c = config or SyntheticMarketConfig()
    name = f"synth_{c.symbol}_{hours:g}h_seed{seed}_{c.fingerprint()}.jsonl"
    path = Path(data_dir) / name
    if not path.exists():
        logger.info("generating default synthetic dataset %s", path)
        generate_file(path, hours, seed, c)
    return path


_DEPTH_BUCKETS = ((1, 1), (2, 2), (3, 5), (6, 20), (21, 50), (51, 200))
"""Level ranks (1 = touch) averaged together in the depth profile."""


def market_statistics(path: str | os.PathLike, symbol: str | None = None) -> dict[str, float]:
    """Book and trade statistics of a feed, read with ``data_processor`` + ``order_book``.

    Args:
        path: a feed file the data layer reads (synthetic or real).
        symbol: symbol to keep (required when the file holds several).

    Returns:
        A flat dict: ``duration_s``, ``book_msgs_per_s``, ``levels_changed_per_delta``,
        ``spread_mean_ticks``, ``spread_1tick_frac``, ``mid_changes_per_min``,
        ``depth_Lx-y`` (mean size per level, contract units, for each rank bucket),
        ``ticks_spanned_by_top200``, ``trades_per_s``, ``trade_size_mean``,
        ``trade_size_median``, ``trade_msgs_per_s``-like counts.
    """
    import data_processor  # the data layer; imported here so generation needs only numpy/orjson
    from messages import DeltaMessage, TradeMessage
    from order_book import OrderBook

    book: OrderBook | None = None
    n_book = n_delta = changed = 0
    spreads: list[int] = []
    depth_sum = np.zeros((2, 200))
    span: list[int] = []
    mids: list[float] = []
    trade_sizes: list[float] = []
    trade_ts: set[int] = set()
    t_first = t_last = None
    for msg in data_processor.load_messages(path, symbol=symbol):
        if isinstance(msg, TradeMessage):
            trade_sizes.append(msg.size)
            trade_ts.add(msg.ts)
            continue
        if book is None:
            book = OrderBook(msg.symbol, msg.tick_size)
        book.apply(msg)
        t_first = msg.ts if t_first is None else t_first
        t_last = msg.ts
        n_book += 1
        if isinstance(msg, DeltaMessage):
            n_delta += 1
            changed += len(msg.bids) + len(msg.asks)
        bb, ba = book.best_bid(), book.best_ask()
        if bb is None or ba is None:
            continue
        spreads.append(ba[0] - bb[0])
        mids.append(book.mid())
        bids, asks = book.depth(200)
        depth_sum[0] += bids[:, 1]
        depth_sum[1] += asks[:, 1]
        nb, na = int(np.count_nonzero(bids[:, 1])), int(np.count_nonzero(asks[:, 1]))
        if nb and na:
            span.append(int(bids[0, 0] - bids[nb - 1, 0]) + int(asks[na - 1, 0] - asks[0, 0]))
    if book is None or not spreads:
        raise ValueError(f"{path}: no two-sided book messages" + (f" for symbol {symbol}" if symbol else ""))
    duration = max((t_last - t_first) / 1000.0, 1e-3)
    sp = np.asarray(spreads)
    depth = depth_sum.mean(axis=0) / len(spreads)
    out = {
        "duration_s": duration,
        "book_msgs_per_s": (n_book - 1) / duration,  # messages after the first, per second
        "levels_changed_per_delta": changed / max(n_delta, 1),
        "spread_mean_ticks": float(sp.mean()),
        "spread_1tick_frac": float(np.mean(sp == 1)),
        "mid_changes_per_min": float(np.count_nonzero(np.diff(mids))) / duration * 60.0,
    }
    for lo, hi in _DEPTH_BUCKETS:
        out[f"depth_L{lo}" + (f"-{hi}" if hi != lo else "")] = float(depth[lo - 1 : hi].mean())
    out["ticks_spanned_by_top200_per_side"] = float(np.mean(span)) / 2 if span else float("nan")
    ts_arr = np.asarray(trade_sizes) if trade_sizes else np.zeros(0)
    out["trades_per_s"] = len(trade_sizes) / duration
    out["aggressor_events_per_s"] = len(trade_ts) / duration
    out["trade_size_mean"] = float(ts_arr.mean()) if len(ts_arr) else float("nan")
    out["trade_size_median"] = float(np.median(ts_arr)) if len(ts_arr) else float("nan")
    return out


def format_comparison(columns: dict[str, dict[str, float]]) -> str:
    """A plain-text table of ``market_statistics`` results side by side.

    >>> print(format_comparison({"a": {"x": 1.0}, "b": {"x": 2.5}}))
    statistic      a      b
    x          1.000  2.500
    """
    names = list(columns)
    keys = list(next(iter(columns.values())))
    w0 = max(len("statistic"), *(len(k) for k in keys))
    cells = {n: [f"{columns[n].get(k, float('nan')):.3f}" for k in keys] for n in names}
    widths = {n: max(len(n), *(len(c) for c in cells[n])) for n in names}
    lines = ["statistic".ljust(w0) + "".join("  " + n.rjust(widths[n]) for n in names)]
    for i, k in enumerate(keys):
        lines.append(k.ljust(w0) + "".join("  " + cells[n][i].rjust(widths[n]) for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if argv[:1] == ["compare"]:
        parser = argparse.ArgumentParser(allow_abbrev=False, prog="synthetic_market.py compare",
                                         description="Print book/trade statistics of synthetic and real feeds side by side")
        parser.add_argument("--real", type=Path, nargs="+", required=True, help="real feed file(s)")
        parser.add_argument("--symbol", default="ETHUSDT", help="symbol to read from the real file(s)")
        parser.add_argument("--synthetic", type=Path, default=None,
                            help="synthetic file (default: generate --hours with --seed into data/)")
        parser.add_argument("--hours", type=float, default=2.0, help="hours of the generated synthetic file")
        parser.add_argument("--seed", type=int, default=7)
        args = parser.parse_args(argv[1:])
        synth = args.synthetic or default_dataset("data", hours=args.hours, seed=args.seed)
        cols = {f"synthetic ({synth.name})": market_statistics(synth)}
        for real in args.real:
            cols[f"real {args.symbol} ({real.name})"] = market_statistics(real, symbol=args.symbol)
        print(format_comparison(cols))
        return 0
    parser = argparse.ArgumentParser(allow_abbrev=False, description="Synthetic Bybit v5 order-book market "
                                     "(subcommand 'compare' prints statistics vs real feeds)")
    parser.add_argument("--hours", type=float, default=1.0, help="hours of feed (fractions allowed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="output .jsonl (default data/synth_<SYMBOL>.jsonl)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.hours) and args.hours > 0):
        parser.error(f"--hours must be a positive number, got {args.hours}")
    out = args.out or Path("data") / f"synth_{SyntheticMarketConfig().symbol}.jsonl"
    generate_file(out, args.hours, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
