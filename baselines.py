"""Baseline market-making policies with known answers, acting through the env API.

One job: the reference strategies every learned policy is compared with, each a policy
object with ``reset()`` and ``act(obs, info)`` that reads ``info["market"]`` and returns an
action, so the same code runs in ``event_driven_env.MarketMakingEnv`` (replayed real or
synthetic books; action = ``[bid_offset, ask_offset]`` ticks behind the same-side best) and
in ``as_model_env`` (the Avellaneda–Stoikov model; action = ``[bid_depth, ask_depth]`` price
units from the mid, vectorised over paths).

Public names:

- ``RandomPolicy``, ``FixedSpreadPolicy``, ``JoinBestPolicy``,
  ``AvellanedaStoikovPolicy``, ``GLFTPolicy``: the policies.
- ``make_baselines(env=None, **kwargs) -> dict[str, Policy]``: all five, by name.
- ``as_reservation_price``, ``as_optimal_spread``, ``as_quotes``, ``glft_quotes``: the
  closed-form formulas (one implementation, used by both envs).
- ``calibrate_intensity(...) -> IntensityFit``: fit ``lambda(delta) = A * exp(-k * delta)``
  to a trade stream and a mid stream; ``calibrate_from_file`` reads a recording.
- ``OnlineVolatility``: sigma of the mid estimated online (EWMA of squared changes per second).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)


class Policy(Protocol):
    """What evaluate.py / train.py need from a baseline."""

    action_mode: str

    def reset(self) -> None:
        """Forget per-episode state."""

    def act(self, obs: Any, info: dict) -> Any:
        """Action for the last ``(obs, info)`` returned by ``reset``/``step``."""


# ------------------------------------------------------------------------------ formulas
def as_reservation_price(mid: Any, inventory: Any, gamma: float, sigma: float, tau: Any) -> Any:
    """Avellaneda–Stoikov reservation price ``r = s - q * gamma * sigma^2 * (T - t)``.

    >>> as_reservation_price(100.0, 2, 0.1, 2.0, 0.5)
    99.6
    """
    return mid - inventory * gamma * sigma**2 * tau


def as_optimal_spread(gamma: float, sigma: float, k: float, tau: Any) -> Any:
    """Avellaneda–Stoikov total spread ``gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k)``.

    Averaged over ``tau`` in [0, 1] with the reference parameters it is 1.49:

    >>> round(float(as_optimal_spread(0.1, 2.0, 1.5, 0.5)), 4)
    1.4908
    """
    return gamma * sigma**2 * tau + (2.0 / gamma) * math.log1p(gamma / k)


def as_quotes(mid: Any, inventory: Any, gamma: float, sigma: float, k: float, tau: Any) -> tuple[Any, Any]:
    """Avellaneda–Stoikov bid and ask prices: reservation price -/+ half the optimal spread.

    >>> b, a = as_quotes(100.0, 0, 0.1, 2.0, 1.5, 1.0)
    >>> round(b, 4), round(a, 4)
    (99.1546, 100.8454)
    """
    r = as_reservation_price(mid, inventory, gamma, sigma, tau)
    half = 0.5 * as_optimal_spread(gamma, sigma, k, tau)
    return r - half, r + half


def glft_quotes(mid: Any, inventory: Any, gamma: float, sigma: float, A: float, k: float,
                order_size: float = 1.0, xi: float | None = None,
                max_inventory: float | None = None) -> tuple[Any, Any]:
    """Guéant–Lehalle–Fernandez-Tapia closed-form (asymptotic) bid and ask prices.

    With ``Delta = order_size`` and ``xi = gamma`` (the GLFT 2013 model; Guéant 2017, eq. for
    the "closed-form approximations"):
    ``c1 = ln(1 + xi*Delta/k) / (xi*Delta)``,
    ``c2 = sqrt(gamma / (2*A*Delta*k) * (1 + xi*Delta/k) ** (k/(xi*Delta) + 1))``,
    bid depth ``c1 + (Delta/2 + q) * sigma * c2``, ask depth ``c1 + (Delta/2 - q) * sigma * c2``.
    With ``max_inventory`` the side that would exceed it is not quoted (price ``nan``).

    >>> b, a = glft_quotes(100.0, 0, 0.1, 2.0, 140.0, 1.5)
    >>> round(100 - b, 4), round(a - 100, 4)
    (0.6712, 0.6712)
    """
    xi = gamma if xi is None else xi
    d = order_size
    c1 = math.log1p(xi * d / k) / (xi * d)
    c2 = math.sqrt(gamma / (2.0 * A * d * k) * (1.0 + xi * d / k) ** (k / (xi * d) + 1.0))
    q = np.asarray(inventory, dtype=np.float64)
    bid = mid - (c1 + (d / 2.0 + q) * sigma * c2)
    ask = mid + (c1 + (d / 2.0 - q) * sigma * c2)
    if max_inventory is not None:
        bid = np.where(q + d > max_inventory + 1e-12, np.nan, bid)
        ask = np.where(q - d < -max_inventory - 1e-12, np.nan, ask)
    if np.ndim(bid) == 0:
        return float(bid), float(ask)
    return bid, ask


# ------------------------------------------------------------------------------ calibration
@dataclass(frozen=True)
class IntensityFit:
    """Result of ``calibrate_intensity``: ``lambda(delta) = A * exp(-k * delta)`` per side."""

    A: float
    """Market orders per second (per side) reaching depth 0."""
    k: float
    """Decay per unit of depth (per tick when depths are in ticks)."""
    depths: np.ndarray
    """Depth grid used in the fit."""
    rates: np.ndarray
    """Empirical rate of orders reaching at least each depth, per second per side."""
    r2: float
    """Coefficient of determination of the log-linear fit."""
    n_orders: int
    """Aggressive orders used."""


def calibrate_intensity(trade_ts: Any, trade_price: Any, trade_side: Any, mid_ts: Any, mid: Any,
                        *, duration_s: float | None = None, unit: float = 1.0,
                        n_points: int = 12, min_count: int = 5) -> IntensityFit:
    """Fit ``lambda(delta) = A * exp(-k * delta)`` to aggressive orders and the mid before them.

    Fills with the same timestamp and side are one aggressive order; its depth is the
    furthest fill from the mid in force just before it (``side * (price - mid)``). The rate of
    orders reaching at least depth ``delta`` (per second and side) is regressed in logs on a
    grid of depths: the distinct depths observed when there are at most ``n_points`` of them
    (tick data), else ``n_points`` quantiles from 0 to 95 %; points with fewer than
    ``min_count`` orders are dropped (AS 2008 section 2.3 motivates the exponential form).

    Args:
        trade_ts: trade times, ms (any order; sorted here).
        trade_price: trade prices (price units).
        trade_side: +1 buyer-initiated, -1 seller-initiated.
        mid_ts: mid-price times, ms, non-decreasing.
        mid: mid prices (price units).
        duration_s: observation time; default: span of ``mid_ts``.
        unit: depths are divided by it (pass the tick size to get ``k`` per tick).
        n_points: grid size.
        min_count: minimum orders at a grid point.

    Returns:
        An ``IntensityFit``.

    Raises:
        ValueError: too few orders or depth levels to fit.

    >>> rng = np.random.default_rng(0)
    >>> n = 20000; t = np.sort(rng.uniform(0, 1e6, n)); side = rng.choice([-1, 1], n)
    >>> depth = rng.exponential(1 / 2.0, n)       # k = 2 per unit, A = n / 1000 s / 2 sides = 10
    >>> fit = calibrate_intensity(t, 100 + side * depth, side, [0.0, 1e6], [100.0, 100.0])
    >>> round(fit.A, 1), round(fit.k, 1)
    (10.0, 2.0)
    """
    t = np.asarray(trade_ts, dtype=np.float64)
    p = np.asarray(trade_price, dtype=np.float64)
    s = np.asarray(trade_side, dtype=np.float64)
    mt = np.asarray(mid_ts, dtype=np.float64)
    m = np.asarray(mid, dtype=np.float64)
    if not (len(t) == len(p) == len(s)) or len(mt) != len(m):
        raise ValueError("calibrate_intensity: trade arrays and mid arrays must have matching lengths")
    if len(mt) == 0 or len(t) == 0:
        raise ValueError("calibrate_intensity: no trades or no mids")
    d = _order_depths(t, p, s, mt, m, unit)
    duration = float(duration_s) if duration_s is not None else (mt[-1] - mt[0]) / 1000.0
    if duration <= 0:
        raise ValueError(f"calibrate_intensity: non-positive duration {duration}")
    if len(d) == 0:
        raise ValueError("calibrate_intensity: no trade has a mid before it")
    return _fit_exponential(d, duration, n_points, min_count)


def _order_depths(t: np.ndarray, p: np.ndarray, s: np.ndarray, mt: np.ndarray, m: np.ndarray,
                  unit: float) -> np.ndarray:
    """Sorted depth (>= 0, in ``unit``) of each aggressive order, from the mid in force before it."""
    j = np.searchsorted(mt, t, side="left") - 1  # the mid in force strictly before the trade
    ok = j >= 0
    depth = s[ok] * (p[ok] - m[j[ok]]) / unit
    # one aggressive order = the fills sharing (ts, side): keep its deepest fill
    keys = np.stack([t[ok], s[ok]], axis=1)
    order = np.lexsort((depth, keys[:, 1], keys[:, 0]))
    kt, ks, kd = keys[order, 0], keys[order, 1], depth[order]
    last = np.ones(len(kt), dtype=bool)
    last[:-1] = (kt[1:] != kt[:-1]) | (ks[1:] != ks[:-1])
    return np.sort(np.maximum(kd[last], 0.0))


def _fit_exponential(d: np.ndarray, duration: float, n_points: int, min_count: int) -> IntensityFit:
    """Log-linear fit of the rate of orders reaching at least each depth of a grid (see ``calibrate_intensity``)."""
    levels = np.unique(np.round(d, 9))
    if len(levels) <= n_points:  # tick data: depths sit on a few half-tick levels
        grid = levels
    else:
        grid = np.unique(np.quantile(d, np.linspace(0.0, 0.95, n_points)))
    counts = len(d) - np.searchsorted(d, grid - 1e-9, side="left")  # orders reaching >= grid
    keep = counts >= min_count
    grid_k, counts_k = grid[keep], counts[keep]
    if len(grid_k) < 3:
        raise ValueError(f"calibrate_intensity: {len(d)} orders reach only {len(grid_k)} depth level(s) "
                         f"with >= {min_count} orders; at least 3 are needed to fit an exponential")
    rates = counts_k / duration / 2.0
    slope, intercept = np.polyfit(grid_k, np.log(rates), 1)
    pred = intercept + slope * grid_k
    resid = np.log(rates) - pred
    ss = float(((np.log(rates) - np.log(rates).mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else 1.0
    if not -slope > 0:
        raise ValueError(f"calibrate_intensity: fitted k = {-slope:.3g} <= 0 (orders do not thin out with depth)")
    return IntensityFit(A=float(math.exp(intercept)), k=float(-slope), depths=grid_k, rates=rates,
                        r2=r2, n_orders=int(len(d)))


def calibrate_from_file(path: str | os.PathLike | list, symbol: str | None = None, *,
                        time_range: tuple[float, float] = (0.0, 1.0)) -> IntensityFit:
    """Calibrate ``(A, k)`` (k per tick) from a recording read by ``data_processor``.

    Args:
        path: recording (file or list of files).
        symbol: symbol to read.
        time_range: fractions of the book stream's time span to use (e.g. the training part).

    Returns:
        An ``IntensityFit`` with depths in ticks.
    """
    import data_processor
    from messages import BOOK_MESSAGE_TYPES, TradeMessage
    from order_book import OrderBook

    book: OrderBook | None = None
    first_ts = last_ts = 0  # first and last book message: the span time_range refers to (as the env's)
    mid_ts: list[int] = []
    mids: list[float] = []
    tt: list[int] = []
    tp: list[float] = []
    tsd: list[int] = []
    tick = None
    for msg in data_processor.load_messages(path, symbol=symbol):
        tick = msg.tick_size
        if isinstance(msg, TradeMessage):
            tt.append(msg.ts)
            tp.append(msg.price)
            tsd.append(msg.side)
            continue
        if not isinstance(msg, BOOK_MESSAGE_TYPES):
            continue
        if book is None:
            book, first_ts = OrderBook(msg.symbol, msg.tick_size), msg.ts
        last_ts = msg.ts
        book.apply(msg)
        md = book.mid()
        if md is not None and (not mids or md != mids[-1]):
            mid_ts.append(msg.ts)
            mids.append(md)
    if not mids:
        raise ValueError(f"{path}: no book to calibrate on")
    # The range is a fraction of the book stream's span (first to last book message, as
    # MarketMakingEnv.time_range), not of the mid *changes*: a mid that never moves (BTCUSDT on
    # a 43 s recording) would make that span zero and select no trade at all.
    t0, t1 = first_ts, last_ts
    lo, hi = t0 + time_range[0] * (t1 - t0), t0 + time_range[1] * (t1 - t0)
    if hi <= lo:
        raise ValueError(f"{path}: the book stream spans {t1 - t0} ms: no time range to calibrate on")
    sel = [i for i, t in enumerate(tt) if lo <= t <= hi]
    logger.info("calibrating on %d trades over %.1f s, tick %s", len(sel), (hi - lo) / 1000.0, tick)
    return calibrate_intensity([tt[i] for i in sel], [tp[i] for i in sel], [tsd[i] for i in sel],
                               mid_ts, mids, duration_s=(hi - lo) / 1000.0)


# ------------------------------------------------------------------------------ sigma
class OnlineVolatility:
    """Sigma of the mid (price units per sqrt(second)), EWMA of squared changes per second.

    The EWMA is bias-corrected (divided by the sum of its weights), so the first observations
    are not pulled towards an arbitrary starting value.

    >>> v = OnlineVolatility(halflife_s=60.0, initial=0.0)
    >>> for i in range(601): v.update(i * 1000, 100.0 + (0.1 if i % 2 else 0.0))
    >>> round(v.sigma, 3)
    0.1
    """

    def __init__(self, halflife_s: float = 300.0, initial: float | None = None) -> None:
        if not halflife_s > 0:
            raise ValueError(f"halflife_s must be > 0, got {halflife_s}")
        self.halflife_s = halflife_s
        self.initial = initial
        self._num = 0.0  # bias-corrected EWMA: decayed sums of w * x and of w
        self._den = 0.0
        self._last: tuple[float, float] | None = None

    def reset(self) -> None:
        """Keep the estimate, forget the last observation (a new episode may start elsewhere)."""
        self._last = None

    def update(self, ts_ms: float, mid: float) -> None:
        """Feed one (time, mid) observation."""
        if mid is None or not math.isfinite(mid):
            return
        if self._last is not None:
            dt = (ts_ms - self._last[0]) / 1000.0
            if dt > 0:
                inst = (mid - self._last[1]) ** 2 / dt
                w = 1.0 - math.exp(-dt * math.log(2) / self.halflife_s)
                self._num = (1 - w) * self._num + w * inst
                self._den = (1 - w) * self._den + w
        if self._last is None or ts_ms >= self._last[0]:
            self._last = (ts_ms, mid)

    @property
    def sigma(self) -> float | None:
        """Current estimate, or ``initial`` (None if not given) before two observations."""
        if self._den == 0.0:
            return self.initial
        return math.sqrt(self._num / self._den)


# ------------------------------------------------------------------------------ policies
def _bounds(action_space: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if action_space is None or not hasattr(action_space, "low"):
        return None
    return np.asarray(action_space.low, dtype=np.float64)[:2], np.asarray(action_space.high, dtype=np.float64)[:2]


class _QuotingPolicy:
    """Shared conversion of target prices to the env's action convention."""

    action_mode = "continuous"

    def __init__(self, action_space: Any = None) -> None:
        self.bounds = _bounds(action_space)

    def reset(self) -> None:
        """Nothing per episode by default."""

    def _far(self) -> float:
        return float(self.bounds[1][0]) if self.bounds is not None else 1e6

    def to_action(self, market: dict, bid_px: Any, ask_px: Any) -> np.ndarray:
        """Target prices -> action. ``nan`` price = do not quote that side (furthest offset)."""
        if market.get("action_units") == "depth":
            mid = np.asarray(market["mid"], dtype=np.float64)
            far = 10.0 * np.ones_like(mid) if self.bounds is None else self.bounds[1][0]
            db = np.where(np.isnan(bid_px), far, mid - bid_px)
            da = np.where(np.isnan(ask_px), far, ask_px - mid)
            return np.stack([db, da], axis=-1) if np.ndim(mid) else np.array([float(db), float(da)])
        tick = float(market["tick_size"])
        mid = market.get("mid")
        bb = market.get("best_bid")
        ba = market.get("best_ask")
        bb = bb if bb is not None else (mid - tick / 2 if mid is not None else None)
        ba = ba if ba is not None else (mid + tick / 2 if mid is not None else None)
        if bb is None or ba is None:
            return np.array([self._far(), self._far()], dtype=np.float32)
        bid_px, ask_px = float(bid_px), float(ask_px)
        # round passive: bid down, ask up; never cross the opposite best
        bid_off = self._far() if math.isnan(bid_px) else bb / tick - math.floor(min(bid_px, ba - tick) / tick + 1e-9)
        ask_off = self._far() if math.isnan(ask_px) else math.ceil(max(ask_px, bb + tick) / tick - 1e-9) - ba / tick
        a = np.array([round(bid_off), round(ask_off)], dtype=np.float64)
        if self.bounds is not None:
            a = np.clip(a, self.bounds[0], self.bounds[1])
        return a.astype(np.float32)


class RandomPolicy:
    """Uniformly random actions from the env's action space (seeded; vectorised over paths)."""

    def __init__(self, action_space: Any, seed: int = 0) -> None:
        self.action_space = action_space
        self.action_mode = "discrete" if hasattr(action_space, "n") else "continuous"
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Reseed, so every episode draws the same sequence for the same seed."""
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: Any, info: dict) -> Any:
        """A random action (one per path in the vectorised AS simulator)."""
        m = info["market"]
        shape: tuple[int, ...] = (len(m["mid"]),) if m.get("action_units") == "depth" and np.ndim(m["mid"]) else ()
        sp = self.action_space
        if self.action_mode == "discrete":
            return self.rng.integers(0, sp.n, size=shape or None)
        a = self.rng.uniform(sp.low, sp.high, size=shape + tuple(sp.shape))
        return a.astype(sp.dtype)


class FixedSpreadPolicy(_QuotingPolicy):
    """Quote at ``mid -/+ half_spread`` (ticks on book envs, price units in the AS model)."""

    def __init__(self, half_spread: float = 2.0, action_space: Any = None) -> None:
        super().__init__(action_space)
        if not half_spread >= 0:
            raise ValueError(f"half_spread must be >= 0, got {half_spread}")
        self.half_spread = half_spread

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """Symmetric quotes around the mid."""
        m = info["market"]
        unit = 1.0 if m.get("action_units") == "depth" else float(m["tick_size"])
        mid = np.asarray(m["mid"], dtype=np.float64)
        return self.to_action(m, mid - self.half_spread * unit, mid + self.half_spread * unit)


class JoinBestPolicy(_QuotingPolicy):
    """Join the best bid and ask (offsets 0; depth 0 in the AS model, which has no book)."""

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """Quote at the touch."""
        m = info["market"]
        if m.get("action_units") == "depth":
            return np.zeros(np.shape(m["mid"]) + (2,))
        return np.zeros(2, dtype=np.float32)


class _ModelPolicy(_QuotingPolicy):
    """Reads (sigma, A, k, tau, q) from the AS model, or estimates them on book envs."""

    def __init__(self, gamma: float, A: float | None, k: float | None, horizon_s: float,
                 sigma: float | None, vol_halflife_s: float, action_space: Any,
                 order_size: float | None) -> None:
        super().__init__(action_space)
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.gamma, self.A, self.k = gamma, A, k
        self.horizon_s = horizon_s
        self.sigma_fixed = sigma
        self.order_size = order_size
        self.vol = OnlineVolatility(vol_halflife_s)

    def reset(self) -> None:
        """Keep the volatility estimate across episodes; forget the last mid."""
        self.vol.reset()

    def params(self, m: dict) -> tuple[Any, Any, float, float, float, float, float]:
        """(mid, q, sigma, A, k, tau, unit) in consistent units (ticks on book envs)."""
        if m.get("action_units") == "depth":
            sigma = self.sigma_fixed if self.sigma_fixed is not None else m["sigma"]
            return (np.asarray(m["mid"], dtype=np.float64), np.asarray(m["inventory"], dtype=np.float64),
                    sigma, self.A or m["A"], self.k or m["k"], m["tau"], 1.0)
        tick = float(m["tick_size"])
        if m.get("mid") is not None and m.get("ts") is not None:
            self.vol.update(float(m["ts"]), float(m["mid"]) / tick)
        sigma = self.sigma_fixed if self.sigma_fixed is not None else self.vol.sigma
        if sigma is None or sigma == 0:
            env_sigma = m.get("sigma")
            sigma = float(env_sigma) / tick if env_sigma else 1.0  # ticks per sqrt(s)
        size = self.order_size or 1.0
        q = float(m["inventory"]) / size
        mid = float(m["mid"]) / tick if m.get("mid") is not None else float("nan")
        return mid, q, sigma, self.A or 1.0, self.k or 1.0, float(m["time_left"]) * self.horizon_s, tick


class AvellanedaStoikovPolicy(_ModelPolicy):
    """Avellaneda–Stoikov (2008): quotes at reservation price -/+ half the optimal spread.

    In the AS model (``as_model_env``) sigma, k and tau come from ``info["market"]`` unless
    given. On book envs everything is in ticks: sigma (ticks per sqrt(s)) is estimated online
    from the replayed mids (``OnlineVolatility``), ``k`` (per tick) comes from
    ``calibrate_intensity`` on the data's trades, ``q`` is inventory in order sizes and
    ``tau = time_left * horizon_s`` seconds.
    """

    def __init__(self, gamma: float = 0.1, k: float | None = None, horizon_s: float = 300.0,
                 sigma: float | None = None, vol_halflife_s: float = 300.0,
                 action_space: Any = None, order_size: float | None = None, A: float | None = None) -> None:
        super().__init__(gamma, A, k, horizon_s, sigma, vol_halflife_s, action_space, order_size)

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """AS quotes for the current state."""
        m = info["market"]
        mid, q, sigma, _A, k, tau, unit = self.params(m)
        if self.order_size is None and "order_size" in info:
            self.order_size = float(info["order_size"])
        bid, ask = as_quotes(mid, q, self.gamma, sigma, k, tau)
        return self.to_action(m, bid * unit, ask * unit)


class GLFTPolicy(_ModelPolicy):
    """Guéant–Lehalle–Fernandez-Tapia closed-form quotes with inventory bounds.

    Same parameter sources as ``AvellanedaStoikovPolicy``; additionally ``A`` (orders per
    second per side on book envs) and ``max_inventory`` (in order sizes): at the bound the
    side that would increase ``|q|`` is not quoted.
    """

    def __init__(self, gamma: float = 0.1, A: float | None = None, k: float | None = None,
                 max_inventory: float | None = None, sigma: float | None = None,
                 vol_halflife_s: float = 300.0, action_space: Any = None,
                 order_size: float | None = None, horizon_s: float = 300.0) -> None:
        super().__init__(gamma, A, k, horizon_s, sigma, vol_halflife_s, action_space, order_size)
        self.max_inventory = max_inventory

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """GLFT quotes for the current state."""
        m = info["market"]
        if self.order_size is None and "order_size" in info:
            self.order_size = float(info["order_size"])
        mid, q, sigma, A, k, _tau, unit = self.params(m)
        bid, ask = glft_quotes(mid, q, self.gamma, sigma, A, k, max_inventory=self.max_inventory)
        return self.to_action(m, np.asarray(bid) * unit, np.asarray(ask) * unit)


def make_baselines(env: Any = None, *, fit: IntensityFit | None = None, gamma: float | None = None,
                   half_spread: float = 2.0, seed: int = 0,
                   glft_max_inventory: float | None = None) -> dict[str, Any]:
    """All five baselines, configured for ``env``.

    Args:
        env: the env (``MarketMakingEnv`` or ``AvellanedaStoikovEnv``, possibly wrapped); its
            action space bounds the actions and its config gives the horizon and order size.
        fit: ``(A, k)`` calibration for book envs (``calibrate_from_file``); required there
            for meaningful AS/GLFT quotes (without it A = k = 1 per tick, with a warning).
        gamma: risk aversion (default 0.1 in the AS model, 0.01 per tick-lot on book envs).
        half_spread: of the fixed-spread policy (ticks, or price units in the AS model).
        seed: of the random policy.
        glft_max_inventory: GLFT inventory bound in order sizes (default: the env's
            ``max_inventory / order_size`` where it has one).

    Returns:
        ``{"random", "fixed_spread", "join_best", "avellaneda_stoikov", "glft"}`` -> policy.
    """
    space = getattr(env, "action_space", None)
    cfg = getattr(getattr(env, "unwrapped", env), "config", None)
    is_model = cfg is not None and hasattr(cfg, "A") and hasattr(cfg, "sigma")
    A = k = None
    horizon = 300.0
    order_size = None
    if is_model:
        g = 0.1 if gamma is None else gamma
        max_inv = glft_max_inventory if glft_max_inventory is not None else cfg.max_inventory
    else:
        g = 0.01 if gamma is None else gamma
        if cfg is not None:
            horizon = float(getattr(cfg, "episode_length_s", horizon))
            order_size = getattr(cfg, "order_size", None)
        max_inv = glft_max_inventory
        if max_inv is None and cfg is not None and getattr(cfg, "max_inventory", None) and order_size:
            max_inv = float(cfg.max_inventory) / float(order_size)
        if fit is None:
            warnings.warn("make_baselines: no intensity fit given for a book env; AS/GLFT use A = k = 1 "
                          "per tick (pass fit=calibrate_from_file(...))", stacklevel=2)
        else:
            A, k = fit.A, fit.k
    if space is None:
        raise ValueError("make_baselines needs an env with an action_space")
    return {
        "random": RandomPolicy(space, seed=seed),
        "fixed_spread": FixedSpreadPolicy(half_spread, action_space=space),
        "join_best": JoinBestPolicy(action_space=space),
        "avellaneda_stoikov": AvellanedaStoikovPolicy(g, k=k, A=A, horizon_s=horizon, action_space=space,
                                                      order_size=order_size),
        "glft": GLFTPolicy(g, A=A, k=k, max_inventory=max_inv, action_space=space,
                           order_size=order_size, horizon_s=horizon),
    }
