"""Market-making Gymnasium environment on replayed Level-2 data with a simulated exchange.

One job: let a policy quote into a replayed order book and account for what would have
happened to its orders (queue position, latency, fees, adverse selection, liquidation).

Public names:

- ``EnvConfig``: every setting of the environment (frozen dataclass, a docstring per field).
- ``MarketMakingEnv``: the ``gymnasium.Env`` (registered as ``MarketMaking-v0``).
- ``SimExchange``: the simulated exchange beside the replayed book (orders, fill models,
  latency events, fees, position and cash); usable on its own with hand-built messages.
- ``MarkoutTracker``: marks every fill to the mid at fixed horizons after it.
- ``NormalizeMarketObservation``: observation normaliser (``utils.RunningMeanStd`` per key)
  that can be frozen, saved and loaded.
- ``DISCRETE_ACTIONS``, ``BOOK_CHANNELS``, ``OBS_FEATURE_NAMES``, ``AGENT_FEATURE_NAMES``:
  the meaning of every action index and observation column.

The fill rules, the latency model and the markout definitions are written out as explicit
conditions in the ``MarketMakingEnv`` docstring and in the README section "The market simulator".
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import warnings
from collections import deque
from dataclasses import dataclass, field, fields, replace
from itertools import islice
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import orjson
from gymnasium import spaces

from data_processor import Replay, load_messages
from market_features import FEATURE_NAMES, N_FEATURES, FeatureConfig, MarketFeatures
from messages import KIND_OF_CLASS, TRADE, message_kind
from utils import RunningMeanStd, atomic_write_json

logger = logging.getLogger(__name__)

BID, ASK = 1, -1
_PENDING, _LIVE, _DONE = 0, 1, 2
_LIMIT, _MARKET = 0, 1
_EPS = 1e-12

DISCRETE_OFFSETS: tuple[int, ...] = (0, 1, 2, -1, -2)
"""Tick offsets of the discrete quote actions: join, 1 and 2 behind, 1 and 2 inside."""


def _build_discrete_actions() -> tuple[str, ...]:
    names = ["hold"]
    names += [f"bid_offset_{o:+d}" for o in DISCRETE_OFFSETS]
    names += [f"ask_offset_{o:+d}" for o in DISCRETE_OFFSETS]
    names += ["cancel_bid", "cancel_ask", "cancel_all", "market_buy", "market_sell"]
    names += [f"both_offset_{o:+d}" for o in DISCRETE_OFFSETS]
    return tuple(names)


DISCRETE_ACTIONS: tuple[str, ...] = _build_discrete_actions()
"""Name of every discrete action index (see the table in ``MarketMakingEnv``)."""
_N_DISCRETE = len(DISCRETE_ACTIONS)

BOOK_CHANNELS: tuple[str, ...] = ("bid_distance_ticks", "bid_size_lots", "ask_distance_ticks", "ask_size_lots")
"""Channels of the ``book`` observation (last axis)."""

OBS_FEATURE_NAMES: tuple[str, ...] = ("mid_change_ticks", "microprice_minus_mid_ticks") + FEATURE_NAMES[2:]
"""Columns of the ``features`` observation: ``market_features.FEATURE_NAMES`` with the two
price levels replaced by distances (row mid minus the current mid; microprice minus mid)."""

AGENT_FEATURE_NAMES: tuple[str, ...] = (
    "inventory_frac", "cash_lots", "pnl_tick_lots", "time_left",
    "bid_active", "bid_offset_ticks", "bid_queue_ahead_lots",
    "ask_active", "ask_offset_ticks", "ask_queue_ahead_lots",
)
"""Columns of the ``agent`` observation."""

_MSG_TRADE = TRADE


def horizon_label(ms: float) -> str:
    """Key suffix of a markout horizon: ms below one second, else seconds.

    >>> horizon_label(100), horizon_label(1000), horizon_label(30000), horizon_label(1500)
    ('100ms', '1s', '30s', '1500ms')
    """
    if ms >= 1000 and ms % 1000 == 0:
        return f"{int(ms // 1000)}s"
    return f"{int(ms)}ms" if float(ms).is_integer() else f"{ms}ms"


# ============================================================================ configuration
@dataclass(frozen=True)
class EnvConfig:
    """Every setting of ``MarketMakingEnv``. Field types are kept CLI-friendly."""

    data_path: str = ""
    """Recording to replay: a file, or several files joined with ``os.pathsep`` (read by ``data_processor.Replay``); a list/tuple of paths is accepted and joined into that form."""
    symbol: str | None = None
    """Symbol to trade; None = the only symbol of the recording."""
    tick_size: float | None = None
    """Price tick; None = decided by the data layer from the data."""
    action_mode: str = "discrete"
    """"discrete" (``DISCRETE_ACTIONS``) or "continuous" (``[bid_offset, ask_offset]`` ticks)."""
    fill_model: str = "queue"
    """"queue" (queue position, trades, probabilistic cancels) or "bbo_cross" (fill when the opposite best reaches the price)."""
    queue_model: str = "power"
    """Where cancellations at our level happen (queue fill model): "power", "log" or "risk_averse" (hftbacktest's models)."""
    queue_power: float = 3.0
    """Exponent n of the "power" queue model: P(cancel behind us) = back^n / (back^n + front^n)."""
    time_range: tuple[float, float] = (0.0, 1.0)
    """Fractions of the recording's time span in which episodes start and end (train/test split)."""
    episode_length_s: float = 300.0
    """Episode length in seconds of exchange time (truncation)."""
    episode_length_messages: int | None = None
    """Optional episode length in book messages (whichever limit comes first)."""
    decision_interval_ms: float = 100.0
    """Agent acts every this many ms of exchange time; 0 = after every book message."""
    warmup_s: float = 30.0
    """Data replayed before the episode start to warm the features (never after the start)."""
    entry_latency_ms: float = 10.0
    """Order-entry latency (median if lognormal): an order reaches the book this long after the action."""
    cancel_latency_ms: float = 10.0
    """Cancel latency (median if lognormal): a cancel takes effect this long after the action."""
    latency_distribution: str = "constant"
    """"constant" or "lognormal" (median = the latency above, log-sd = ``latency_sigma``)."""
    latency_sigma: float = 0.5
    """Log-standard deviation of the lognormal latency."""
    maker_fee_bps: float = 2.0
    """Maker fee in bps of notional (negative = rebate). Default: Bybit non-VIP derivatives 0.02%."""
    taker_fee_bps: float = 5.5
    """Taker fee in bps of notional. Default: Bybit non-VIP derivatives 0.055%."""
    order_size: float | None = None
    """Order size in base units; None = median trade size of the data's first 50,000 messages, rounded to the lot."""
    lot_size: float | None = None
    """Quantity step; None = inferred from the decimals of the sizes in the data."""
    max_inventory: float = 10.0
    """Hard position limit in multiples of ``order_size``; orders that could breach it are refused."""
    reward: str = "pnl"
    """"pnl" (mark-to-mid PnL change) or "pnl_inventory_penalty" (minus gamma*sigma^2*q^2*dt)."""
    reward_unit: str = "tick_lots"
    """"tick_lots" (PnL / (tick_size*order_size)) or "quote" (quote currency)."""
    inventory_penalty_gamma: float = 0.01
    """gamma of the running inventory penalty (sigma in ticks/sqrt(s), q in lots, dt in s)."""
    terminal_inventory_penalty: float = 0.0
    """Extra penalty kappa*q^2 (q in lots, tick_lots) on the position left at the episode end, before liquidation."""
    max_loss: float | None = None
    """Terminate when PnL (quote currency) falls to -max_loss; None = never."""
    obs_window: int = 8
    """Decision steps of history in the ``book`` and ``features`` observations."""
    obs_levels: int = 10
    """Book levels per side in the ``book`` observation."""
    continuous_max_offset: float = 10.0
    """Bound of the continuous offsets in ticks: the action box is [-max, max]."""
    continuous_size: bool = False
    """Continuous mode: add bid and ask sizes in [0, 1] x order_size to the action (size < half a lot = no quote)."""
    markout_horizons_ms: tuple[float, ...] = (100.0, 1000.0, 5000.0, 30000.0)
    """Horizons of the fill markouts, ms."""
    adverse_selection_horizon_ms: float = 1000.0
    """Horizon at which a maker fill counts as adversely selected (markout < 0); must be one of the markout horizons."""
    realised_spread_horizon_ms: float = 5000.0
    """Horizon of the realised spread; must be one of the markout horizons."""
    ofi_window_ms: float = 1000.0
    """Feature window of the order-flow imbalance, ms."""
    trade_window_ms: float = 5000.0
    """Feature window of the trade-flow imbalance, ms."""
    vol_short_ms: float = 1000.0
    """Short realised-volatility window, ms."""
    vol_long_ms: float = 30000.0
    """Long realised-volatility window (the sigma estimate), ms."""
    vpin_bucket_volume: float | None = None
    """VPIN bucket volume in base units; None = 20 x the median trade size."""
    vpin_buckets: int = 50
    """Completed buckets averaged by VPIN."""
    kyle_interval_ms: float = 1000.0
    """Kyle's-lambda regression interval, ms."""
    kyle_window: int = 60
    """Intervals in the Kyle's-lambda regression."""
    spread_window_ms: float = 60000.0
    """Window of the spread z-score, ms."""
    cache_dir: str | None = None
    """Replay checkpoint cache folder; None = the data layer's default."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_path", _normalise_data_path(self.data_path))
        object.__setattr__(self, "time_range", tuple(float(x) for x in self.time_range))
        object.__setattr__(self, "markout_horizons_ms", tuple(float(x) for x in self.markout_horizons_ms))
        choices = {"action_mode": ("discrete", "continuous"), "fill_model": ("queue", "bbo_cross"),
                   "queue_model": ("power", "log", "risk_averse"), "reward": ("pnl", "pnl_inventory_penalty"),
                   "reward_unit": ("tick_lots", "quote"), "latency_distribution": ("constant", "lognormal")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"EnvConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        lo, hi = self.time_range if len(self.time_range) == 2 else (math.nan, math.nan)
        if not (0.0 <= lo < hi <= 1.0):
            raise ValueError(f"EnvConfig.time_range must be (lo, hi) with 0 <= lo < hi <= 1, got {self.time_range!r}")
        positive = ("episode_length_s", "max_inventory", "continuous_max_offset", "ofi_window_ms",
                    "trade_window_ms", "vol_short_ms", "vol_long_ms", "kyle_interval_ms", "spread_window_ms")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"EnvConfig.{name} must be > 0, got {getattr(self, name)!r}")
        non_negative = ("decision_interval_ms", "warmup_s", "entry_latency_ms", "cancel_latency_ms",
                        "latency_sigma", "queue_power", "inventory_penalty_gamma", "terminal_inventory_penalty",
                        "taker_fee_bps")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"EnvConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("order_size", "lot_size", "tick_size", "vpin_bucket_volume", "max_loss"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"EnvConfig.{name} must be > 0 or None, got {value!r}")
        for name in ("obs_window", "obs_levels", "vpin_buckets", "kyle_window"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"EnvConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.episode_length_messages is not None and self.episode_length_messages < 1:
            raise ValueError(f"EnvConfig.episode_length_messages must be >= 1 or None, got {self.episode_length_messages!r}")
        if not self.markout_horizons_ms or min(self.markout_horizons_ms) <= 0:
            raise ValueError(f"EnvConfig.markout_horizons_ms must be positive, got {self.markout_horizons_ms!r}")
        self._check_horizons()

    def _check_horizons(self) -> None:
        for name in ("adverse_selection_horizon_ms", "realised_spread_horizon_ms"):
            if getattr(self, name) not in self.markout_horizons_ms:
                raise ValueError(f"EnvConfig.{name}={getattr(self, name)!r} is not one of markout_horizons_ms {self.markout_horizons_ms}")
        if self.maker_fee_bps < -self.taker_fee_bps:
            warnings.warn(f"maker rebate {self.maker_fee_bps} bps exceeds the taker fee {self.taker_fee_bps} bps: "
                          "crossing the spread against yourself would pay", stacklevel=4)
        if self.entry_latency_ms == 0 and self.cancel_latency_ms == 0:
            warnings.warn("zero order latency: fills will be optimistic", stacklevel=4)

    @property
    def feature_config(self) -> FeatureConfig:
        """The ``market_features.FeatureConfig`` these fields describe (VPIN bucket filled by the env)."""
        return FeatureConfig(ofi_window_ms=self.ofi_window_ms, trade_window_ms=self.trade_window_ms,
                             vol_short_ms=self.vol_short_ms, vol_long_ms=self.vol_long_ms,
                             vpin_bucket_volume=self.vpin_bucket_volume or 1.0, vpin_buckets=self.vpin_buckets,
                             kyle_interval_ms=self.kyle_interval_ms, kyle_window=self.kyle_window,
                             spread_window_ms=self.spread_window_ms)


# ============================================================================ exchange
@dataclass(slots=True)
class SimOrder:
    """One of the agent's orders inside ``SimExchange`` (prices in ticks, sizes in base units)."""

    oid: int
    side: int                  # +1 buy, -1 sell
    price: int                 # limit price in ticks (0 for market orders)
    size: float
    kind: int                  # _LIMIT or _MARKET
    submit_ts: float
    active_ts: float           # when it reaches the book (submit + entry latency)
    remaining: float = 0.0
    status: int = _PENDING
    queue_ahead: float = 0.0   # displayed size ahead of us at our price (queue model)
    last_level: float = 0.0    # displayed size at our price when last seen
    cum_trade: float = 0.0     # traded volume at our price since the last level change
    cancel_ts: float | None = None  # when a requested cancel takes effect


@dataclass(slots=True)
class Fill:
    """One execution of an agent order."""

    ts: float
    side: int          # +1 bought, -1 sold
    price: float       # ticks (a VWAP for orders that walked several levels)
    size: float
    maker: bool
    fee: float         # quote currency, negative = rebate
    mid: float         # mid in ticks just before the fill
    oid: int
    markout_mids: list = field(default_factory=list)   # mid (ticks) at each horizon, None = unresolved


class SimExchange:
    """The agent's orders beside a replayed L2 book, with two fill models.

    Conditions (``queue`` model; the ``bbo_cross`` model uses only rule 4 and rule 5):

    1. A limit order reaches the book at ``submit + entry latency`` and joins behind the
       displayed size at its price (``queue_ahead = displayed size``). If it would cross the
       book then, it first takes the visible opposite levels up to its price as taker.
    2. A trade at our price consumes ``queue_ahead`` first; what is left of the trade fills
       us (partially if smaller than our remaining size). A trade printing *through* our price
       (a sell below our bid, a buy above our ask) fills us fully. Trades are allotted to our
       orders best price first and each unit of traded size fills at most one order.
    3. A decrease of the displayed size at our price not explained by trades since the last
       change (``chg = prev - new - traded``) is a cancellation; it happens behind us with
       probability ``p = f(back) / (f(back) + f(front))`` and advances the queue as in
       hftbacktest's ``ProbQueueModel``:
       ``front' = min(front - (1-p)*chg + min(back - p*chg, 0), new)``, with ``f(x) = x^n``
       ("power"), ``log(1+x)`` ("log") or ``p = 1`` ("risk_averse"). Increases join behind us.
    4. Crossing: a bid fills fully when the best ask falls to or below its price, an ask when
       the best bid rises to or above its price (the book moved through us).
    5. A cancel takes effect at ``request + cancel latency`` (never before the order reached the
       book); fills that happen before that stand.

    Without trade data (``has_trades=False``) rule 2 cannot apply; the documented fallback
    treats every decrease of the displayed size at our price as executions at the front of
    the queue (the excess over ``queue_ahead`` fills us), an optimistic bound.

    Args:
        tick_size: price of one tick in quote currency.
        fill_model: "queue" or "bbo_cross".
        maker_fee_bps: maker fee (negative = rebate), bps of notional.
        taker_fee_bps: taker fee, bps of notional.
        queue_model: "power", "log" or "risk_averse" (rule 3).
        queue_power: n of the "power" model.
        has_trades: whether the data carries trades (else the fallback above).
        lot_size: partial maker fills are rounded down to multiples of it (None = no rounding).
    """

    def __init__(self, tick_size: float, fill_model: str = "queue", maker_fee_bps: float = 2.0,
                 taker_fee_bps: float = 5.5, queue_model: str = "power", queue_power: float = 3.0,
                 has_trades: bool = True, lot_size: float | None = None) -> None:
        if fill_model not in ("queue", "bbo_cross"):
            raise ValueError(f"fill_model must be 'queue' or 'bbo_cross', got {fill_model!r}")
        if queue_model not in ("power", "log", "risk_averse"):
            raise ValueError(f"queue_model must be 'power', 'log' or 'risk_averse', got {queue_model!r}")
        self.tick_size = float(tick_size)
        self.queue = fill_model == "queue"
        self.maker_rate = maker_fee_bps * 1e-4
        self.taker_rate = taker_fee_bps * 1e-4
        self.queue_model = queue_model
        self.queue_power = float(queue_power)
        self.has_trades = has_trades
        self.lot_size = lot_size
        self.orders: list[SimOrder] = []
        self.fills: list[Fill] = []        # fills not yet drained by the caller
        self.position = 0.0
        self.cash = 0.0
        self.fees = 0.0
        self.maker_volume = 0.0
        self.taker_volume = 0.0
        self.limit_volume_placed = 0.0
        self.orders_placed = 0
        self.orders_cancelled = 0
        self.n_live = 0
        self.next_event_ts = math.inf
        self._next_oid = 1

    # ----------------------------------------------------------------- requests
    def submit_limit(self, now: float, side: int, price: int, size: float, latency: float = 0.0) -> SimOrder:
        """Send a limit order at ``now``; it reaches the book at ``now + latency``."""
        order = SimOrder(self._next_oid, side, int(price), size, _LIMIT, now, now + latency, remaining=size)
        self._next_oid += 1
        self.orders.append(order)
        self.orders_placed += 1
        self.limit_volume_placed += size
        self.next_event_ts = min(self.next_event_ts, order.active_ts)
        return order

    def submit_market(self, now: float, side: int, size: float, latency: float = 0.0) -> SimOrder:
        """Send a market order at ``now``; it walks the visible book at ``now + latency``."""
        order = SimOrder(self._next_oid, side, 0, size, _MARKET, now, now + latency, remaining=size)
        self._next_oid += 1
        self.orders.append(order)
        self.orders_placed += 1
        self.next_event_ts = min(self.next_event_ts, order.active_ts)
        return order

    def cancel(self, now: float, order: SimOrder, latency: float = 0.0) -> None:
        """Request a cancel at ``now``; effective at ``max(now + latency, order.active_ts)``."""
        if order.status == _DONE or order.cancel_ts is not None:
            return
        order.cancel_ts = max(now + latency, order.active_ts)
        self.next_event_ts = min(self.next_event_ts, order.cancel_ts)

    def cancel_all_now(self) -> None:
        """Remove every order at once (episode end: the simulation stops, no latency)."""
        for o in self.orders:
            if o.status != _DONE and o.remaining > _EPS and o.kind == _LIMIT and o.status == _LIVE:
                self.orders_cancelled += 1
            o.status = _DONE
        self._refresh()

    # ----------------------------------------------------------------- market events
    def process_events(self, bound: float, book: Any, mid: float | None, inclusive: bool = False) -> None:
        """Run order arrivals and cancels due before ``bound`` (or at it, if ``inclusive``)."""
        while True:
            t = self.next_event_ts
            if t > bound or (t == bound and not inclusive):
                return
            for o in self.orders:
                if o.status == _PENDING and o.active_ts <= t:
                    self._activate(o, book, mid, o.active_ts)
                if o.status != _DONE and o.cancel_ts is not None and o.cancel_ts <= t:
                    if o.remaining > _EPS:
                        self.orders_cancelled += 1
                    o.status = _DONE
            self._refresh()

    def on_book(self, book: Any, msg: Any, mid: float | None) -> None:
        """Apply a book message to ``book`` and update queue positions and crossing fills."""
        book.apply(msg)
        if not self.n_live:
            return
        ts = msg.ts
        done = False
        bids, asks = book.bids, book.asks
        best_bid = bids.peekitem(-1)[0] if bids else None
        best_ask = asks.peekitem(0)[0] if asks else None
        for o in self.orders:
            if o.status != _LIVE:
                continue
            if o.side == BID:
                level = bids.get(o.price, 0.0)
            else:
                level = asks.get(o.price, 0.0)
            if self.queue and level != o.last_level:
                self._level_change(o, o.last_level, level, ts, mid)
                o.last_level = level
            if o.status != _LIVE:
                done = True
                continue
            if o.side == BID:
                crossed = best_ask is not None and best_ask <= o.price
            else:
                crossed = best_bid is not None and best_bid >= o.price
            if crossed:
                self._fill(o, o.remaining, float(o.price), ts, True, mid)
                done = True
        if done:
            self._refresh()

    def on_trade(self, ts: float, side: int, price: int, size: float, mid: float | None) -> None:
        """A trade printed: ``side`` is the aggressor (+1 buy hits asks, -1 sell hits bids)."""
        if not (self.queue and self.n_live):
            return
        passive = -side
        mine = [o for o in self.orders if o.status == _LIVE and o.side == passive]
        if not mine:
            return
        mine.sort(key=(lambda o: (-o.price, o.oid)) if passive == BID else (lambda o: (o.price, o.oid)))
        budget = size
        for o in mine:
            through = price < o.price if passive == BID else price > o.price
            if through:
                q = o.remaining
                self._fill(o, q, float(o.price), ts, True, mid)
                budget = max(budget - q, 0.0)
            elif price == o.price:
                o.cum_trade += size
                take = min(o.queue_ahead, budget)
                o.queue_ahead -= take
                budget -= take
                q = self._lots(min(o.remaining, budget))
                if q > _EPS:
                    self._fill(o, q, float(o.price), ts, True, mid)
                    budget -= q
        self._refresh()

    # ----------------------------------------------------------------- internals
    def _lots(self, q: float) -> float:
        """Round a partial fill down to whole lots (a fill of the whole remainder stays exact)."""
        lot = self.lot_size
        if lot is None:
            return q
        return math.floor(q / lot + 1e-9) * lot

    def _prob_behind(self, front: float, back: float) -> float:
        if self.queue_model == "risk_averse":
            return 1.0
        if self.queue_model == "power":
            fb, ff = back ** self.queue_power, front ** self.queue_power
        else:
            fb, ff = math.log1p(back), math.log1p(front)
        tot = fb + ff
        return fb / tot if tot > 0 and math.isfinite(tot) else 1.0

    def _level_change(self, o: SimOrder, prev: float, new: float, ts: float, mid: float | None) -> None:
        if not self.has_trades:
            if new < prev:
                executed = prev - new
                take = min(o.queue_ahead, executed)
                o.queue_ahead -= take
                q = self._lots(min(o.remaining, executed - take))
                if q > _EPS:
                    self._fill(o, q, float(o.price), ts, True, mid)
            else:
                o.queue_ahead = min(o.queue_ahead, new)
            return
        chg = prev - new - o.cum_trade
        o.cum_trade = 0.0
        if chg <= 0:
            o.queue_ahead = min(o.queue_ahead, new)
            return
        front = o.queue_ahead
        back = max(prev - front, 0.0)
        p = self._prob_behind(front, back)
        est = front - (1.0 - p) * chg + min(back - p * chg, 0.0)
        o.queue_ahead = max(min(est, new), 0.0)

    def _activate(self, o: SimOrder, book: Any, mid: float | None, t: float) -> None:
        if o.kind == _MARKET:
            filled, vwap = walk_book(book, o.side, o.remaining)
            if filled > _EPS:
                self._fill(o, filled, vwap, t, False, mid)
            o.status = _DONE   # unfilled rest of a market order beyond the visible book is dropped
            return
        crossing = (o.side == BID and book.asks and book.asks.peekitem(0)[0] <= o.price) or (
            o.side == ASK and book.bids and book.bids.peekitem(-1)[0] >= o.price)
        if crossing:
            filled, vwap = walk_book(book, o.side, o.remaining, limit=o.price)
            if filled > _EPS:
                self._fill(o, filled, vwap, t, False, mid)
            if o.status == _DONE:
                return
        o.status = _LIVE
        level = book.bids.get(o.price, 0.0) if o.side == BID else book.asks.get(o.price, 0.0)
        o.queue_ahead = level
        o.last_level = level

    def _fill(self, o: SimOrder, q: float, price: float, ts: float, maker: bool, mid: float | None) -> None:
        notional = price * self.tick_size * q
        fee = (self.maker_rate if maker else self.taker_rate) * notional
        self.position += o.side * q
        self.cash -= o.side * notional + fee
        self.fees += fee
        if maker:
            self.maker_volume += q
        else:
            self.taker_volume += q
        self.fills.append(Fill(ts, o.side, price, q, maker, fee, price if mid is None else mid, o.oid))
        o.remaining -= q
        if o.remaining <= _EPS * max(1.0, o.size):
            o.remaining = 0.0
            o.status = _DONE

    def liquidate(self, book: Any, ts: float, mid: float | None) -> tuple[float, float]:
        """Close the position with a taker order walking the visible book.

        A position larger than the visible depth is closed for the rest at the worst
        visible price. Returns ``(cost, fee)`` in quote currency, where ``cost`` is the
        shortfall against the mid plus the fee (0 when flat or when the book is empty).
        """
        q = self.position
        if abs(q) <= _EPS:
            return 0.0, 0.0
        side = BID if q < 0 else ASK
        filled, vwap = walk_book(book, side, abs(q), fill_rest_at_worst=True)
        if filled <= _EPS:
            return 0.0, 0.0
        order = SimOrder(self._next_oid, side, 0, filled, _MARKET, ts, ts, remaining=filled)
        self._next_oid += 1
        fees_before = self.fees
        ref = mid if mid is not None else vwap
        self._fill(order, filled, vwap, ts, False, ref)
        fee = self.fees - fees_before
        cost = side * (vwap - ref) * self.tick_size * filled + fee
        return cost, fee

    def _refresh(self) -> None:
        self.orders = [o for o in self.orders if o.status != _DONE]
        nxt = math.inf
        live = 0
        for o in self.orders:
            if o.status == _PENDING:
                nxt = min(nxt, o.active_ts)
            else:
                live += 1
            if o.cancel_ts is not None:
                nxt = min(nxt, o.cancel_ts)
        self.next_event_ts = nxt
        self.n_live = live

    def drain_fills(self) -> list[Fill]:
        """Return and forget the fills recorded since the last call."""
        out, self.fills = self.fills, []
        return out

    def quote(self, side: int) -> SimOrder | None:
        """The newest limit order on ``side`` that is not being cancelled, if any."""
        for o in reversed(self.orders):
            if o.side == side and o.kind == _LIMIT and o.cancel_ts is None and o.status != _DONE:
                return o
        return None

    def exposure(self, side: int) -> float:
        """Remaining size of ``side``'s orders that are not being cancelled."""
        return sum(o.remaining for o in self.orders if o.side == side and o.cancel_ts is None and o.status != _DONE)


def walk_book(book: Any, side: int, size: float, limit: int | None = None,
              fill_rest_at_worst: bool = False) -> tuple[float, float]:
    """Take ``size`` from the visible opposite side of ``book`` (a buy walks the asks up).

    Args:
        book: an ``order_book.OrderBook``.
        side: +1 buy, -1 sell.
        size: quantity wanted.
        limit: optional worst price in ticks.
        fill_rest_at_worst: fill what the visible book lacks at its worst visible price.

    Returns:
        ``(filled, vwap_ticks)``; ``(0.0, 0.0)`` if nothing could be taken.
    """
    levels = book.asks if side == BID else book.bids
    if not levels:
        return 0.0, 0.0
    keys = levels.irange() if side == BID else levels.irange(reverse=True)
    left = size
    cost = 0.0
    last = None
    for p in keys:
        if limit is not None and ((side == BID and p > limit) or (side == ASK and p < limit)):
            break
        take = min(left, levels[p])
        cost += take * p
        left -= take
        last = p
        if left <= _EPS:
            left = 0.0
            break
    if left > 0 and fill_rest_at_worst and last is not None and limit is None:
        cost += left * last
        left = 0.0
    filled = size - left
    return (filled, cost / filled) if filled > _EPS else (0.0, 0.0)


class MarkoutTracker:
    """Records, for every fill, the mid at ``fill.ts + h`` for each horizon ``h``.

    "The mid at time t" is the mid after every book message with ``ts <= t``: the caller
    calls ``resolve(ts, mid)`` with the mid *before* applying a message stamped ``ts``, and
    every horizon due strictly before ``ts`` takes that mid. O(1) amortised per fill.

    >>> f = Fill(ts=0, side=1, price=100.0, size=1.0, maker=True, fee=0.0, mid=100.5, oid=1)
    >>> mt = MarkoutTracker((100.0, 1000.0)); mt.add(f)
    >>> mt.resolve(150, 101.0); f.markout_mids
    [101.0, None]
    >>> round(markout_bps(f, 0), 2)       # side * (mid_h - price) / price * 1e4
    100.0
    """

    def __init__(self, horizons_ms: tuple[float, ...]) -> None:
        self.horizons = tuple(float(h) for h in horizons_ms)
        self._queues: list[deque[tuple[float, Fill]]] = [deque() for _ in self.horizons]
        self.next_due = math.inf

    def add(self, fill: Fill) -> None:
        """Start tracking ``fill``."""
        fill.markout_mids = [None] * len(self.horizons)
        for q, h in zip(self._queues, self.horizons, strict=True):
            q.append((fill.ts + h, fill))
        self.next_due = min(self.next_due, fill.ts + min(self.horizons))

    def resolve(self, before_ts: float, mid: float | None) -> None:
        """Give every horizon due strictly before ``before_ts`` the mid ``mid``."""
        if mid is None:
            return
        nxt = math.inf
        for i, q in enumerate(self._queues):
            while q and q[0][0] < before_ts:
                _, f = q.popleft()
                f.markout_mids[i] = mid
            if q:
                nxt = min(nxt, q[0][0])
        self.next_due = nxt

    @property
    def pending(self) -> bool:
        """Whether some horizon is still unresolved."""
        return any(self._queues)

    def last_due(self) -> float:
        """The latest due time among unresolved horizons (``-inf`` if none)."""
        return max((q[-1][0] for q in self._queues if q), default=-math.inf)


def markout_bps(fill: Fill, i: int) -> float | None:
    """Markout of ``fill`` at horizon index ``i``: ``side * (mid_h - price) / price * 1e4``.

    Positive = the market moved in the fill's favour. ``None`` while unresolved.

    >>> f = Fill(0, -1, 200.0, 1.0, True, 0.0, 199.5, 1, [199.0])
    >>> markout_bps(f, 0)
    50.0
    """
    m = fill.markout_mids[i] if i < len(fill.markout_mids) else None
    return None if m is None else fill.side * (m - fill.price) / fill.price * 1e4


# ============================================================================ environment
class MarketMakingEnv(gym.Env):
    """Market making on a replayed Level-2 book, with a simulated exchange for the agent's orders.

    ## Description

    A market maker quotes into a replayed Level-2 order book of a real (or synthetic)
    recording. The agent's orders live in a simulated exchange beside the replayed book
    (``SimExchange``): limit orders rest with an estimated queue position, market orders walk
    the visible levels, every action pays order-entry/cancel latency, fills pay maker/taker
    fees, and every fill is marked out against the later mid. The replayed book does not react
    to the agent (see "What replay cannot model").

    ## Action Space

    ``action_mode="discrete"``: ``Discrete(21)``. Offsets o are in ticks from the same-side
    best price (o > 0 behind, o < 0 inside the spread, clamped so a quote never crosses).
    A new quote on a side replaces (cancel + new order) the side's current quote unless it is
    already at that price; size = ``order_size``.

    | index | action | effect |
    |-------|--------|--------|
    | 0 | hold | nothing |
    | 1–5 | bid at o = 0, +1, +2, −1, −2 | bid at best bid − o |
    | 6–10 | ask at o = 0, +1, +2, −1, −2 | ask at best ask + o |
    | 11 / 12 / 13 | cancel bid / ask / both | |
    | 14 / 15 | market buy / sell | walks the asks / bids (VWAP), taker fee |
    | 16–20 | bid and ask at o = 0, +1, +2, −1, −2 | both sides |

    ``action_mode="continuous"``: ``Box(-M, M, (2,))`` with M = ``continuous_max_offset``:

    | index | meaning | min | max | unit |
    |-------|---------|-----|-----|------|
    | 0 | bid offset (rounded to an int) | −M | M | ticks behind the best bid |
    | 1 | ask offset | −M | M | ticks behind the best ask |
    | 2, 3 | bid / ask size (only with ``continuous_size``) | 0 | 1 | × order_size; < half a lot = no quote |

    ## Observation Space

    ``Dict`` of float32 arrays (bounds ±inf; wrap with ``NormalizeMarketObservation``):

    | key | shape | content |
    |-----|-------|---------|
    | ``book`` | (obs_window, obs_levels, 4) | per decision step and level: bid distance below the mid (ticks), bid size (÷ order_size), ask distance above the mid (ticks), ask size (÷ order_size); empty levels 0 |
    | ``features`` | (obs_window, 16) | ``OBS_FEATURE_NAMES``: the ``market_features`` vector, with mid as the change to the current mid (ticks) and microprice as microprice − mid (ticks) |
    | ``agent`` | (10,) | ``AGENT_FEATURE_NAMES``: inventory / max_inventory, cash ÷ (mid·order_size), PnL (tick·lots), time left (1 → 0), and per side: quote active (0/1), offset from the same-side best (ticks), queue ahead (÷ order_size) |

    Rows are oldest first; the last row is now.

    ## Rewards

    With equity E = cash + inventory · mid (fees deducted from cash), per step:

    | ``reward`` | r_t |
    |---|---|
    | "pnl" | E_t − E_{t−1} |
    | "pnl_inventory_penalty" | E_t − E_{t−1} − γ · σ² · q² · dt |

    σ: ticks per √s from the long realised volatility; q: inventory in lots; dt: seconds since
    the last decision. In the last step E includes the liquidation (taker fee and book walk)
    and, if set, the terminal penalty κ·q² is subtracted. No fill bonus. Unit: ``tick_lots``
    (÷ tick_size·order_size: one tick earned on one order = 1) or ``quote``. Unbounded.

    ## Starting State

    Episodes start at a time drawn uniformly (``self.np_random``) from
    ``[lo, hi − episode_length]`` of the recording's span, where (lo, hi) = ``time_range``;
    ``reset(options={"start_ts": t_ms})`` starts at a given time. The book is rebuilt at the
    start from ``data_processor.Replay``; features are warmed on the ``warmup_s`` before it.
    Flat position, zero cash, no orders.

    ## Episode End

    - Termination: PnL ≤ −``max_loss`` (if set).
    - Truncation: ``episode_length_s`` (or ``episode_length_messages``) reached, the end of
      ``time_range`` reached, or the data ends. Both close the episode by cancelling all
      orders and liquidating the position through the visible book with a taker fee.

    ## Fill and markout rules

    See ``SimExchange`` for the conditions. Latency: an order reaches the book ``entry
    latency`` after the action, a cancel takes effect ``cancel latency`` after it (never
    before its order arrived); events due at the same millisecond as a market message are
    processed after it. Markout at horizon h of a fill = side · (mid(t+h) − price) / price ·
    1e4 bps; the episode keeps replaying after its end (agent flat) until every horizon
    resolves or the data ends. Adverse-selection ratio = share of maker fills with a
    negative markout at ``adverse_selection_horizon_ms``. Realised spread = mean over maker
    fills of 2 · side · (mid(t+h) − price) / mid(t) · 1e4 at ``realised_spread_horizon_ms``.

    ## Arguments

    ``MarketMakingEnv(config=None, **overrides)``: every ``EnvConfig`` field can be passed
    by name (``gymnasium.make("MarketMaking-v0", data_path=..., fill_model="bbo_cross")``);
    see ``EnvConfig`` (and the README section "The market simulator") for the table of defaults.

    ## Version History

    - v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = EnvConfig(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        if not config.data_path:
            raise ValueError("EnvConfig.data_path is required (a recording readable by data_processor)")
        self.config = config
        paths = config.data_path.split(_pathsep()) if _pathsep() in config.data_path else config.data_path
        self._replay = Replay(paths, config.symbol, tick_size=config.tick_size, cache_dir=config.cache_dir)
        self.symbol = self._replay.symbol
        self.tick_size = float(self._replay.tick_size)
        self._scan_data(load_messages(paths, symbol=config.symbol, tick_size=config.tick_size))
        self.order_size = float(config.order_size) if config.order_size else self._auto_order_size
        if config.lot_size:
            self.lot_size = float(config.lot_size)
        self.order_size = round(max(self.lot_size, round(self.order_size / self.lot_size) * self.lot_size), 10)
        self.max_inventory_units = config.max_inventory * self.order_size
        vpin_v = config.vpin_bucket_volume or max(self.lot_size, 20 * self._median_trade)
        self._feature_config = replace(config.feature_config, vpin_bucket_volume=vpin_v)
        self._horizons = config.markout_horizons_ms
        self._as_idx = self._horizons.index(config.adverse_selection_horizon_ms)
        self._rs_idx = self._horizons.index(config.realised_spread_horizon_ms)
        self._reward_scale = 1.0 / (self.tick_size * self.order_size) if config.reward_unit == "tick_lots" else 1.0
        w, lv = config.obs_window, config.obs_levels
        self.observation_space = spaces.Dict({
            "book": spaces.Box(-np.inf, np.inf, (w, lv, 4), np.float32),
            "features": spaces.Box(-np.inf, np.inf, (w, N_FEATURES), np.float32),
            "agent": spaces.Box(-np.inf, np.inf, (len(AGENT_FEATURE_NAMES),), np.float32),
        })
        self._discrete = config.action_mode == "discrete"
        if self._discrete:
            self.action_space = spaces.Discrete(len(DISCRETE_ACTIONS))
        else:
            m = config.continuous_max_offset
            low = [-m, -m] + ([0.0, 0.0] if config.continuous_size else [])
            high = [m, m] + ([1.0, 1.0] if config.continuous_size else [])
            self.action_space = spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32)
        span = self._replay.end_ts - self._replay.start_ts
        lo, hi = config.time_range
        self.range_start_ts = self._replay.start_ts + int(lo * span)
        self.range_end_ts = self._replay.start_ts + int(hi * span)
        self._ep_ms = config.episode_length_s * 1000.0
        if self.range_end_ts - self.range_start_ts < self._ep_ms:
            warnings.warn(f"time_range {config.time_range} covers {(self.range_end_ts - self.range_start_ts) / 1000:.1f} s "
                          f"of data, less than episode_length_s={config.episode_length_s}: episodes span the whole range",
                          stacklevel=2)
        self._book = None
        self._started = False

    # ----------------------------------------------------------------- data scan
    def _scan_data(self, messages: Any, n: int = 50_000) -> None:
        """Infer trade presence, lot size and a typical trade size from the first ``n`` messages."""
        trade_sizes: list[float] = []
        level_sizes: list[float] = []
        for msg in islice(messages, n):
            kind = KIND_OF_CLASS.get(type(msg)) or message_kind(msg)
            if kind == _MSG_TRADE:
                trade_sizes.append(msg.size)
            elif len(level_sizes) < 5000:
                level_sizes.extend(s for _, s in msg.bids[:50] if s > 0)
                level_sizes.extend(s for _, s in msg.asks[:50] if s > 0)
        self.has_trades = bool(trade_sizes)
        sample = trade_sizes[:5000] + level_sizes[:5000]
        decimals = max((_decimals_of(s) for s in sample), default=0)
        self.lot_size = 10.0 ** -min(decimals, 8)
        if trade_sizes:
            self._median_trade = float(statistics.median(trade_sizes))
        elif level_sizes:
            self._median_trade = 0.1 * float(statistics.median(level_sizes))
        else:
            self._median_trade = self.lot_size
        self._auto_order_size = max(self._median_trade, self.lot_size)
        if not self.has_trades and self.config.fill_model == "queue":
            warnings.warn(f"{self.config.data_path}: no trades in the first {n} messages; the queue fill model "
                          "falls back to treating level decreases at our price as executions (optimistic)",
                          stacklevel=3)

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start an episode at a seeded random time (or ``options["start_ts"]``, ms)."""
        super().reset(seed=seed)
        cfg = self.config
        options = options or {}
        if "start_ts" in options and options["start_ts"] is not None:
            start = int(options["start_ts"])
            if not (self._replay.start_ts <= start < self._replay.end_ts):
                raise ValueError(f"start_ts={start} is outside the recording [{self._replay.start_ts}, {self._replay.end_ts})")
            if not (self.range_start_ts <= start < self.range_end_ts):
                warnings.warn(f"start_ts={start} lies outside time_range {cfg.time_range}", stacklevel=2)
            hi = self.range_end_ts if start < self.range_end_ts else self._replay.end_ts
        else:
            latest = self.range_end_ts - self._ep_ms
            if latest <= self.range_start_ts:
                start = self.range_start_ts
            else:
                start = self.range_start_ts + int(self.np_random.integers(0, int(latest - self.range_start_ts) + 1))
            hi = self.range_end_ts
        self.start_ts = start
        self.end_ts = min(start + self._ep_ms, hi)
        warm_from = max(self._replay.start_ts, int(start - cfg.warmup_s * 1000))
        self._book, self._it = self._replay.start_at(warm_from)
        self._pending = None
        self._last_ts = None
        self._exhausted = False
        self._feats = MarketFeatures(self._feature_config)
        if self._book.best_bid() is not None and self._book.best_ask() is not None:
            self._feats.on_book(self._book, warm_from)
        else:   # keep the features' best bid/ask equal to the book's (the env reads them there)
            self._feats.best_bid, self._feats.best_ask = self._book.best_bid(), self._book.best_ask()
        self._ex = SimExchange(self.tick_size, cfg.fill_model, cfg.maker_fee_bps, cfg.taker_fee_bps,
                               cfg.queue_model, cfg.queue_power, self.has_trades, self.lot_size)
        self._mk = MarkoutTracker(self._horizons)
        self._episode_fills: list[Fill] = []
        self._step_fills: list[Fill] = []
        self._n_book = 0
        self._steps = 0
        self._refused = 0
        self._inv_samples: list[float] = []
        w, lv = cfg.obs_window, cfg.obs_levels
        # Double-length rings: row r is written at r and r + w, so the window oldest-first is
        # the contiguous slice [i + 1, i + 1 + w) after writing at i (one copy per observation).
        self._book_buf = np.zeros((2 * w, lv, 4), np.float32)
        self._book_flat = self._book_buf.reshape(2 * w, lv * 4)
        self._feat_buf = np.zeros((2 * w, N_FEATURES), np.float32)
        self._mid_buf = np.zeros(2 * w, np.float64)      # feature 0 (mid) kept exact for the change vs now
        self._ring_idx = -1
        self._book_zeros = [0.0] * (lv * 4)
        self._depth_n = max(lv, 10, self._feature_config.slope_levels)
        grid = cfg.decision_interval_ms or 100.0
        for k in range(w - 1, -1, -1):
            self._advance(start - k * grid)
            self._record_row(start - k * grid)
        self._ex.drain_fills()
        self._now = float(start)
        self._n_book = 0
        self._equity = 0.0
        self._started = True
        return self._observation(), self._info(done=False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        """Apply ``action`` now, replay the market to the next decision time, return the usual 5-tuple."""
        assert self._started, "call reset() before step()"
        if self._discrete and not (type(action) is int and 0 <= action < _N_DISCRETE):
            assert self.action_space.contains(action), f"invalid action {action!r}"
        cfg = self.config
        self._step_fills = []
        self._apply_action(action)
        t0 = self._now
        if cfg.decision_interval_ms > 0:
            target = min(t0 + cfg.decision_interval_ms, self.end_ts)
            self._advance(target)
        else:
            n_book = self._advance(self.end_ts, max_book=1)
            target = max(t0, self._last_ts) if n_book else self.end_ts
        self._ex.process_events(target, self._book, self._feats.mid, inclusive=True)
        self._collect()
        self._now = float(target)
        self._steps += 1
        self._record_row(self._now)
        mid = self._feats.mid
        inv = self._ex.position
        self._inv_samples.append(inv)
        equity = self._mark(mid)
        reward = equity - self._equity
        if cfg.reward == "pnl_inventory_penalty":
            sigma = self._feats.sigma_per_sqrt_s(int(self._now))
            q_lots = inv / self.order_size
            reward -= cfg.inventory_penalty_gamma * sigma * sigma * q_lots * q_lots * ((self._now - t0) / 1000.0) / self._reward_scale
        self._equity = equity
        terminated = cfg.max_loss is not None and equity <= -cfg.max_loss
        truncated = (not terminated) and (
            self._now >= self.end_ts or self._exhausted
            or (cfg.episode_length_messages is not None and self._n_book >= cfg.episode_length_messages))
        done = terminated or truncated
        obs = self._observation()
        if done:
            reward += self._close_episode()
        info = self._info(done=False)
        if done:
            self._finish_markouts()
            info["episode"] = self._episode_stats()
        return obs, float(reward * self._reward_scale), bool(terminated), bool(truncated), info

    # ----------------------------------------------------------------- actions
    def _latency(self, base: float) -> float:
        if self.config.latency_distribution == "constant" or base == 0:
            return base
        return float(base * math.exp(self.config.latency_sigma * self.np_random.standard_normal()))

    def _apply_action(self, action: Any) -> None:
        if self.config.action_mode == "discrete":
            a = int(action)
            if not 0 <= a < len(DISCRETE_ACTIONS):
                raise ValueError(f"discrete action must be in [0, {len(DISCRETE_ACTIONS)}), got {action!r}")
            n = len(DISCRETE_OFFSETS)
            if 1 <= a <= n:
                self._quote(BID, DISCRETE_OFFSETS[a - 1], self.order_size)
            elif n < a <= 2 * n:
                self._quote(ASK, DISCRETE_OFFSETS[a - 1 - n], self.order_size)
            elif a in (2 * n + 1, 2 * n + 3):
                self._cancel_side(BID)
                if a == 2 * n + 3:
                    self._cancel_side(ASK)
            elif a == 2 * n + 2:
                self._cancel_side(ASK)
            elif a in (2 * n + 4, 2 * n + 5):
                self._market(BID if a == 2 * n + 4 else ASK)
            elif a > 2 * n + 5:
                off = DISCRETE_OFFSETS[a - 2 * n - 6]
                self._quote(BID, off, self.order_size)
                self._quote(ASK, off, self.order_size)
            return
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape[0] != self.action_space.shape[0] or not np.all(np.isfinite(act)):
            raise ValueError(f"continuous action must be {self.action_space.shape} finite floats, got {action!r}")
        act = np.clip(act, self.action_space.low, self.action_space.high)
        sizes = (self.order_size, self.order_size)
        if self.config.continuous_size:
            sizes = tuple(round(float(s) * self.order_size / self.lot_size) * self.lot_size for s in act[2:4])
        for side, off, size in ((BID, act[0], sizes[0]), (ASK, act[1], sizes[1])):
            if size < self.lot_size * 0.5:
                self._cancel_side(side)
            else:
                self._quote(side, int(np.rint(off)), size)

    def _quote(self, side: int, offset: int, size: float) -> None:
        bb, ba = self._feats.best_bid, self._feats.best_ask
        if bb is None or ba is None:
            return
        if side == BID:
            price = min(bb[0] - offset, ba[0] - 1)
        else:
            price = max(ba[0] + offset, bb[0] + 1)
        current = self._ex.quote(side)
        if current is not None and current.price == price:
            return
        if current is not None:
            self._ex.cancel(self._now, current, self._latency(self.config.cancel_latency_ms))
        worst = self._ex.position + side * (self._ex.exposure(side) + size)
        if abs(worst) > self.max_inventory_units * (1 + 1e-9):
            self._refused += 1
            return
        self._ex.submit_limit(self._now, side, price, size, self._latency(self.config.entry_latency_ms))

    def _cancel_side(self, side: int) -> None:
        for o in list(self._ex.orders):
            if o.side == side and o.kind == _LIMIT and o.cancel_ts is None and o.status != _DONE:
                self._ex.cancel(self._now, o, self._latency(self.config.cancel_latency_ms))

    def _market(self, side: int) -> None:
        if abs(self._ex.position + side * self.order_size) > self.max_inventory_units * (1 + 1e-9):
            self._refused += 1
            return
        self._ex.submit_market(self._now, side, self.order_size, self._latency(self.config.entry_latency_ms))

    # ----------------------------------------------------------------- market replay
    def _advance(self, target: float, max_book: int | None = None) -> int:
        """Replay every message with ``ts <= target`` (or up to ``max_book`` book messages)."""
        it, ex, feats, mk, book = self._it, self._ex, self._feats, self._mk, self._book
        cache = KIND_OF_CLASS
        msg = self._pending
        n_book = 0
        last_ts = self._last_ts
        while True:
            if msg is None:
                msg = next(it, None)
                if msg is None:
                    self._exhausted = True
                    break
            ts = msg.ts
            if ts > target:
                break
            if ts > ex.next_event_ts:
                ex.process_events(ts, book, feats.mid)
            if ts > mk.next_due:
                mk.resolve(ts, feats.mid)
            kind = cache.get(type(msg)) or message_kind(msg)
            if kind == _MSG_TRADE:
                if ex.n_live:
                    ex.on_trade(ts, msg.side, msg.price, msg.size, feats.mid)
                feats.on_trade(ts, msg.side, msg.size)
            else:
                if ex.n_live:
                    ex.on_book(book, msg, feats.mid)
                else:
                    book.apply(msg)
                feats.on_book(book, ts)
                n_book += 1
            if ex.fills:
                self._collect()
            last_ts = ts
            msg = None
            if max_book is not None and n_book >= max_book:
                break
        self._pending = msg
        self._last_ts = last_ts
        self._n_book += n_book
        if ex.fills:
            self._collect()
        return n_book

    def _collect(self) -> None:
        for f in self._ex.drain_fills():
            self._mk.add(f)
            self._episode_fills.append(f)
            self._step_fills.append(f)

    def _mark(self, mid: float | None) -> float:
        if mid is None:
            return self._equity
        return self._ex.cash + self._ex.position * mid * self.tick_size

    def _close_episode(self) -> float:
        """Cancel everything, liquidate, run markouts to completion; returns the extra equity change."""
        ex = self._ex
        mid = self._feats.mid
        pos_before = ex.position
        self._unrealised_at_end = self._unrealised(mid)
        self._pnl_before_liq = self._mark(mid)
        ex.cancel_all_now()
        penalty = self.config.terminal_inventory_penalty * (pos_before / self.order_size) ** 2 / self._reward_scale
        self._liq_cost, self._liq_fee = ex.liquidate(self._book, self._now, mid)
        self._collect()
        equity = self._mark(mid)
        delta = equity - self._equity - penalty
        self._equity = equity
        return delta

    def _finish_markouts(self) -> None:
        """Keep replaying (agent flat, no orders) until every markout horizon resolved or the data ended.

        Horizons beyond the data stay unresolved and are left out of the averages.
        """
        self._step_fills = []
        if self._mk.pending and not self._exhausted:
            self._advance(self._mk.last_due() + 1)

    def _unrealised(self, mid: float | None) -> float:
        """Mark-to-mid value of the open position against its average entry price (quote currency)."""
        q = self._ex.position
        if abs(q) <= _EPS or mid is None:
            return 0.0
        # average entry over the fills that built the current position (FIFO-free average cost)
        pos = 0.0
        avg = 0.0
        for f in self._episode_fills:
            signed = f.side * f.size
            if pos == 0 or (pos > 0) == (signed > 0):
                avg = (avg * abs(pos) + f.price * f.size) / (abs(pos) + f.size)
                pos += signed
            else:
                closing = min(abs(signed), abs(pos))
                pos += signed
                if abs(signed) > closing:
                    avg = f.price
                elif abs(pos) <= _EPS:
                    pos, avg = 0.0, 0.0
        return q * (mid - avg) * self.tick_size

    # ----------------------------------------------------------------- observation / info
    def _record_row(self, now: float) -> None:
        """Append the book and feature rows of decision time ``now`` to the observation rings.

        Pure Python on the top levels (read straight from the book's sorted dicts), one numpy
        store per ring; the values equal ``OrderBook.depth`` + ``MarketFeatures.values``.
        """
        w = self.config.obs_window
        i = self._ring_idx = (self._ring_idx + 1) % w
        book = self._book
        n = self._depth_n
        bids, asks = book.bids, book.asks
        # top keys straight from the SortedDicts' sorted key lists (sortedcontainers keeps them
        # in `_list._lists`, as order_book's hot path relies on too); irange when a sublist is short
        lists = bids._list._lists
        if lists and len(lists[-1]) >= n:
            bid_px = lists[-1][:-n - 1:-1]
        else:
            bid_px = list(islice(bids.irange(reverse=True), n))
        lists = asks._list._lists
        if lists and len(lists[0]) >= n:
            ask_px = lists[0][:n]
        else:
            ask_px = list(islice(asks.irange(), n))
        bid_sz = list(map(bids.__getitem__, bid_px))
        ask_sz = list(map(asks.__getitem__, ask_px))
        bb = (bid_px[0], bid_sz[0]) if bid_px else None
        ba = (ask_px[0], ask_sz[0]) if ask_px else None
        mid = self._feats.mid
        lv = self.config.obs_levels
        if mid is not None and len(bid_px) >= lv and len(ask_px) >= lv:
            inv = self.order_size
            row = [v for pb, sb, pa, sa in zip(bid_px[:lv], bid_sz[:lv], ask_px[:lv], ask_sz[:lv], strict=True)
                   for v in (mid - pb, sb / inv, pa - mid, sa / inv)]
        elif mid is not None:
            inv = self.order_size
            row = []
            append = row.append
            nb, na = len(bid_px), len(ask_px)
            for k in range(lv):
                if k < nb:
                    append(mid - bid_px[k])
                    append(bid_sz[k] / inv)
                else:
                    append(0.0)
                    append(0.0)
                if k < na:
                    append(ask_px[k] - mid)
                    append(ask_sz[k] / inv)
                else:
                    append(0.0)
                    append(0.0)
        else:
            row = self._book_zeros
        flat = self._book_flat
        flat[i] = row
        flat[i + w] = flat[i]
        f = self._feats.values_from_levels(int(now), bb, ba, bid_px, bid_sz, ask_px, ask_sz)
        f0 = f[0]
        if f0 != 0:
            f[1] -= f0
        fb = self._feat_buf
        fb[i] = f
        fb[i + w] = fb[i]
        self._mid_buf[i] = self._mid_buf[i + w] = f0

    def _observation(self) -> dict[str, np.ndarray]:
        w = self.config.obs_window
        j = self._ring_idx + 1
        feats = self._feat_buf[j:j + w].copy()
        mids = self._mid_buf[j:j + w].tolist()
        cur = mids[-1]
        feats[:, 0] = [m - cur if m != 0 else 0.0 for m in mids]
        return {"book": self._book_buf[j:j + w].copy(), "features": feats, "agent": self._agent_vector()}

    def _agent_vector(self) -> np.ndarray:
        ex = self._ex
        mid = self._feats.mid or 0.0
        tick_lots = self.tick_size * self.order_size
        notional = mid * tick_lots
        span = max(self.end_ts - self.start_ts, 1.0)
        out = [ex.position / self.max_inventory_units,
               ex.cash / notional if notional > 0 else 0.0,
               self._mark(self._feats.mid) / tick_lots,
               max(0.0, (self.end_ts - self._now) / span),
               0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        book = self._book
        bb, ba = self._feats.best_bid, self._feats.best_ask
        for base, side in ((4, BID), (7, ASK)):
            o = ex.quote(side)
            if o is not None:
                out[base] = 1.0
                if side == BID:
                    if bb is not None:
                        out[base + 1] = bb[0] - o.price
                    level = book.bids.get(o.price, 0.0)
                else:
                    if ba is not None:
                        out[base + 1] = o.price - ba[0]
                    level = book.asks.get(o.price, 0.0)
                out[base + 2] = (o.queue_ahead if o.status == _LIVE else level) / self.order_size
        return np.array(out, np.float32)

    def _info(self, done: bool) -> dict[str, Any]:
        ex = self._ex
        tick = self.tick_size
        bb, ba = self._feats.best_bid, self._feats.best_ask
        mid = self._feats.mid
        q_bid, q_ask = ex.quote(BID), ex.quote(ASK)
        span = max(self.end_ts - self.start_ts, 1.0)
        now = self._now
        info: dict[str, Any] = {
            "market": {
                "ts": now,
                "mid": None if mid is None else round(mid * tick, 12),
                "best_bid": round(bb[0] * tick, 12) if bb else None,
                "best_ask": round(ba[0] * tick, 12) if ba else None,
                "tick_size": tick,
                "inventory": ex.position,
                "time_left": max(0.0, (self.end_ts - now) / span),
                "sigma": self._feats.sigma_per_sqrt_s(int(now)) * tick,
            },
            "quotes": {"bid": round(q_bid.price * tick, 12) if q_bid else None,
                       "ask": round(q_ask.price * tick, 12) if q_ask else None},
            "fills": [{"ts": f.ts, "side": f.side, "price": round(f.price * tick, 12), "size": f.size,
                       "maker": f.maker, "fee": f.fee} for f in self._step_fills] if self._step_fills else [],
            "pnl": self._equity,
            "inventory": ex.position,
            "order_size": self.order_size,
        }
        if done:
            info["episode"] = self._episode_stats()
        return info

    def _episode_stats(self) -> dict[str, Any]:
        ex = self._ex
        fills = self._episode_fills
        maker = [f for f in fills if f.maker]
        tick = self.tick_size
        spread_capture = sum(f.side * (f.mid - f.price) * tick * f.size for f in fills)
        pnl = self._equity
        stats: dict[str, Any] = {
            "pnl": pnl,
            "unrealised_pnl": self._unrealised_at_end,
            "realised_pnl": self._pnl_before_liq - self._unrealised_at_end,
            "fees": ex.fees,
            "spread_capture": spread_capture,
            "inventory_pnl": pnl + ex.fees - spread_capture,
            "liquidation_cost": self._liq_cost,
            "maker_volume": ex.maker_volume,
            "taker_volume": ex.taker_volume,
            "maker_volume_ratio": ex.maker_volume / (ex.maker_volume + ex.taker_volume) if fills else 0.0,
            "fill_ratio": ex.maker_volume / ex.limit_volume_placed if ex.limit_volume_placed > 0 else 0.0,
            "n_fills": len(fills),
            "n_maker_fills": len(maker),
        }
        for i, h in enumerate(self._horizons):
            vals = [m for m in (markout_bps(f, i) for f in maker) if m is not None]
            stats[f"markout_bps_{horizon_label(h)}"] = float(np.mean(vals)) if vals else 0.0
        as_vals = [m for m in (markout_bps(f, self._as_idx) for f in maker) if m is not None]
        stats["adverse_selection_ratio"] = float(np.mean([m < 0 for m in as_vals])) if as_vals else 0.0
        rs = [2 * f.side * (f.markout_mids[self._rs_idx] - f.price) / f.mid * 1e4
              for f in maker if f.markout_mids[self._rs_idx] is not None and f.mid]
        stats["realised_spread_bps"] = float(np.mean(rs)) if rs else 0.0
        stats["n_markouts_unresolved"] = sum(1 for f in maker for m in f.markout_mids if m is None)
        inv = np.asarray(self._inv_samples or [0.0])
        stats["inventory_mean"] = float(inv.mean())
        stats["inventory_abs_mean"] = float(np.abs(inv).mean())
        stats["inventory_max_abs"] = float(np.abs(inv).max())
        stats["orders_placed"] = ex.orders_placed
        stats["orders_cancelled"] = ex.orders_cancelled
        stats["orders_refused"] = self._refused
        stats["length_steps"] = self._steps
        stats["start_ts"] = self.start_ts
        stats["end_ts"] = self._now
        return stats


def _pathsep() -> str:
    return os.pathsep


def _normalise_data_path(value: Any) -> str:
    """``EnvConfig.data_path`` in its documented form: one string, several files joined by ``os.pathsep``.

    Accepts a string, a path-like object, or a list/tuple of them (a multi-file recording, in order).

    >>> _normalise_data_path(["a.jsonl", Path("b.jsonl")]) == "a.jsonl" + os.pathsep + "b.jsonl"
    True
    """
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("EnvConfig.data_path: the list of files is empty")
        parts = []
        for item in value:
            if not isinstance(item, str | os.PathLike):
                raise ValueError(f"EnvConfig.data_path: every file must be a str or path, got {item!r}")
            part = os.fspath(item)
            if not part or os.pathsep in part:
                raise ValueError(f"EnvConfig.data_path: bad file name {part!r} in the list "
                                 f"(empty, or containing the path separator {os.pathsep!r})")
            parts.append(part)
        return os.pathsep.join(parts)
    raise ValueError(f"EnvConfig.data_path must be a path or a list/tuple of paths, got {value!r}")


def _decimals_of(x: float) -> int:
    """Decimal places of a float as printed by ``repr`` (sizes in feeds are short decimals).

    >>> _decimals_of(0.001), _decimals_of(12.0), _decimals_of(1.5e-05)
    (3, 0, 6)
    """
    s = repr(float(x))
    if "e-" in s:
        mant, exp = s.split("e-")
        return int(exp) + (len(mant.split(".")[1]) if "." in mant else 0)
    if "." not in s:
        return 0
    frac = s.split(".")[1].rstrip("0")
    return len(frac)


# ============================================================================ normaliser
class NormalizeMarketObservation(gym.ObservationWrapper):
    """Normalise each key of the ``Dict`` observation with a ``utils.RunningMeanStd``.

    Statistics are elementwise per key and update on every observation until ``freeze()``;
    ``save(path)`` / ``load(path)`` keep them as JSON beside a model, so evaluation uses the
    training statistics (``frozen=True`` after loading by default).

    Args:
        env: a ``MarketMakingEnv`` (or a wrapper around one).
        clip: clip normalised values to [-clip, clip].
    """

    def __init__(self, env: gym.Env, clip: float = 10.0) -> None:
        super().__init__(env)
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.clip = float(clip)
        self.rms = {k: RunningMeanStd(shape=s.shape) for k, s in env.observation_space.spaces.items()}
        self.observation_space = spaces.Dict({
            k: spaces.Box(-self.clip, self.clip, s.shape, np.float32) for k, s in env.observation_space.spaces.items()})

    @property
    def frozen(self) -> bool:
        """Whether the statistics are frozen."""
        return all(r.frozen for r in self.rms.values())

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or resume) updating the statistics."""
        for r in self.rms.values():
            r.frozen = frozen

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Update (unless frozen) and apply the statistics."""
        out = {}
        for k, v in observation.items():
            r = self.rms[k]
            r.update(v[None].astype(np.float64))
            out[k] = r.normalize(v, clip=self.clip)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the statistics as JSON (atomically)."""
        return atomic_write_json(path, {"clip": self.clip, "rms": {k: r.state_dict() for k, r in self.rms.items()}})

    def load(self, path: str | Path, freeze: bool = True) -> None:
        """Read statistics written by ``save``; frozen unless ``freeze=False``.

        Raises:
            ValueError: the file's keys or shapes do not match this observation space.
        """
        state = orjson.loads(Path(path).read_bytes())
        rms_state = state.get("rms", {})
        if set(rms_state) != set(self.rms):
            raise ValueError(f"{path}: observation keys {sorted(rms_state)} do not match {sorted(self.rms)}")
        for k, r in self.rms.items():
            shape = np.asarray(rms_state[k]["mean"]).shape
            if shape != r.mean.shape:
                raise ValueError(f"{path}: statistics of {k!r} have shape {shape}, expected {r.mean.shape}")
            r.load_state_dict(rms_state[k])
        self.freeze(freeze)


def config_fields() -> tuple[str, ...]:
    """Names of every ``EnvConfig`` field (for CLI generation and validation).

    >>> "fill_model" in config_fields()
    True
    """
    return tuple(f.name for f in fields(EnvConfig))


gym.register(id="MarketMaking-v0", entry_point="event_driven_env:MarketMakingEnv")
