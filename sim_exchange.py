"""The agent's orders beside a replayed Level-2 book: a simulated exchange with pluggable models.

One job: decide what would have happened to the agent's orders (arrival after latency, queue
position, fills, fees, cancels, position and cash) while the recorded book replays unchanged.
The environment (``event_driven_env``) only sends requests and passes every market message.

Public names:

- ``ExchangeConfig``: the exchange's settings (frozen dataclass, a docstring per field); a
  nested part of ``event_driven_env.EnvConfig``, its leaf names are the CLI flags.
- ``SimExchange``: the exchange; the fill rules are written out as numbered conditions in its
  docstring. ``SimOrder`` (one order) and ``Fill`` (one execution) are its records.
- Queue models (where cancellations at our price happen, rule 3): ``PowerQueue``,
  ``LogQueue``, ``RiskAverseQueue``; interface ``prob_behind(front, back) -> float``;
  registry ``QUEUE_MODELS`` / ``register_queue_model``.
- Fill rules (what a book change or a trade at our price does to a live order):
  ``QueueFill``, ``BboCrossFill``, ``FifoFill`` (the exact queue of order-level data); registry ``FILL_MODELS`` / ``register_fill_model``.
- Latency models: ``ConstantLatency``, ``LognormalLatency``; interface
  ``sample(base_ms, rng) -> ms``; registry ``LATENCY_MODELS`` / ``register_latency_model``.
- ``MarkoutTracker`` and ``markout_bps``: every fill marked to the mid at fixed horizons.

Adding a model means adding one class with the family's interface and a ``from_config``
classmethod, decorated with its family's ``register_*`` and a name; ``ExchangeConfig``
validation reads the registries, so the name is then a valid config value and CLI choice.
The split follows hftbacktest (``QueueModel``, the exchange processor, ``LatencyModel``).

Prices are integer ticks and sizes base units, as in ``order_book``; fees and cash are quote
currency. The book is read only through ``order_book.OrderBook``'s public methods.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from messages import ASK, BID, ORDER_ADD, ORDER_DELETE, ORDER_EXECUTE
from utils import check_settings

__all__ = [
    "ASK", "BID", "FILL_MODELS", "LATENCY_MODELS", "QUEUE_MODELS", "BboCrossFill", "ConstantLatency",
    "ExchangeConfig", "FifoFill", "Fill", "LogQueue", "LognormalLatency", "MarkoutTracker", "PowerQueue",
    "QueueFill", "RiskAverseQueue", "SimExchange", "SimOrder", "markout_bps", "register_fill_model",
    "register_latency_model", "register_queue_model",
]

_PENDING, _LIVE, _DONE = 0, 1, 2
_LIMIT, _MARKET = 0, 1
_EPS = 1e-12


# ============================================================================ registries
QUEUE_MODELS: dict[str, type] = {}
"""Queue model name (``ExchangeConfig.queue_model``) -> class."""
FILL_MODELS: dict[str, type] = {}
"""Fill rule name (``ExchangeConfig.fill_model``) -> class."""
LATENCY_MODELS: dict[str, type] = {}
"""Latency model name (``ExchangeConfig.latency_distribution``) -> class."""


def _registrar(registry: dict[str, type], family: str) -> Callable[[str], Callable[[type], type]]:
    def register(name: str) -> Callable[[type], type]:
        def decorate(cls: type) -> type:
            if name in registry and registry[name] is not cls:
                raise ValueError(f"{family} name {name!r} is already registered to {registry[name].__name__}")
            registry[name] = cls
            cls.name = name
            return cls
        return decorate
    register.__doc__ = (f"Class decorator: register a {family} under ``name`` (a valid config value "
                        "from then on). The class needs ``from_config(config, ...)``.")
    return register


register_queue_model = _registrar(QUEUE_MODELS, "queue model")
register_fill_model = _registrar(FILL_MODELS, "fill model")
register_latency_model = _registrar(LATENCY_MODELS, "latency model")


# ============================================================================ configuration
@dataclass(frozen=True)
class ExchangeConfig:
    """Settings of ``SimExchange``: fill rule, queue and latency models, fees."""

    fill_model: str = "queue"
    """"queue" (queue position, trades, probabilistic cancels), "bbo_cross" (fill when the opposite best reaches the price) or "fifo" (the exact FIFO queue; order-level data only: LOBSTER, Bitstamp); any name in ``FILL_MODELS``."""
    queue_model: str = "power"
    """Where cancellations at our level happen (queue fill model): "power", "log" or "risk_averse" (hftbacktest's models); any name in ``QUEUE_MODELS``."""
    queue_power: float = 3.0
    """Exponent n of the "power" queue model: P(cancel behind us) = back^n / (back^n + front^n)."""
    entry_latency_ms: float = 10.0
    """Order-entry latency (median if lognormal): an order reaches the book this long after the action."""
    cancel_latency_ms: float = 10.0
    """Cancel latency (median if lognormal): a cancel takes effect this long after the action."""
    latency_distribution: str = "constant"
    """"constant" or "lognormal" (median = the latency above, log-sd = ``latency_sigma``); any name in ``LATENCY_MODELS``."""
    latency_sigma: float = 0.5
    """Log-standard deviation of the lognormal latency."""
    maker_fee_bps: float = 2.0
    """Maker fee in bps of notional (negative = rebate). Default: Bybit non-VIP derivatives 0.02%."""
    taker_fee_bps: float = 5.5
    """Taker fee in bps of notional. Default: Bybit non-VIP derivatives 0.055%."""

    SANE_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "queue_power": (0.0, 100.0), "entry_latency_ms": (0.0, 60_000.0), "cancel_latency_ms": (0.0, 60_000.0),
        "latency_sigma": (0.0, 5.0), "maker_fee_bps": (-100.0, 100.0), "taker_fee_bps": (0.0, 100.0),
    }
    """Sane range of each number (``utils.check_settings``): fees within +-1% of notional, latencies
    within a minute, a lognormal log-sd up to 5."""

    def __post_init__(self) -> None:
        for name, registry in (("fill_model", FILL_MODELS), ("queue_model", QUEUE_MODELS),
                               ("latency_distribution", LATENCY_MODELS)):
            if getattr(self, name) not in registry:
                raise ValueError(f"ExchangeConfig.{name} must be one of {tuple(registry)}, got {getattr(self, name)!r}")
        for name in ("entry_latency_ms", "cancel_latency_ms", "latency_sigma", "queue_power", "taker_fee_bps"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"ExchangeConfig.{name} must be >= 0, got {value!r}")
        if not math.isfinite(self.maker_fee_bps):
            raise ValueError(f"ExchangeConfig.maker_fee_bps must be finite, got {self.maker_fee_bps!r}")
        if self.maker_fee_bps < -self.taker_fee_bps:
            warnings.warn(f"maker rebate {self.maker_fee_bps} bps exceeds the taker fee {self.taker_fee_bps} bps: "
                          "crossing the spread against yourself would pay", stacklevel=3)
        check_settings(self, self.SANE_RANGES)
        if self.entry_latency_ms == 0 and self.cancel_latency_ms == 0:
            warnings.warn("zero order latency: fills will be optimistic", stacklevel=3)


# ============================================================================ queue models
class QueueModel(Protocol):
    """Interface of a queue model (rule 3 of ``SimExchange``)."""

    def prob_behind(self, front: float, back: float) -> float:
        """Probability that a cancellation at our price came from behind us.

        Args:
            front: displayed size ahead of us (our estimate).
            back: displayed size behind us.
        """
        ...


def _share(fb: float, ff: float) -> float:
    tot = fb + ff
    return fb / tot if tot > 0 and math.isfinite(tot) else 1.0


@register_queue_model("power")
@dataclass(frozen=True)
class PowerQueue:
    """``p = back^n / (back^n + front^n)`` (hftbacktest ``PowerProbQueueFunc``).

    >>> PowerQueue(3.0).prob_behind(5.0, 5.0), PowerQueue(1.0).prob_behind(1.0, 3.0)
    (0.5, 0.75)
    """

    n: float = 3.0

    @classmethod
    def from_config(cls, config: ExchangeConfig) -> PowerQueue:
        """The model with ``n = config.queue_power``."""
        return cls(config.queue_power)

    def prob_behind(self, front: float, back: float) -> float:
        """See ``QueueModel``; 1 when both sides are empty."""
        return _share(back ** self.n, front ** self.n)


@register_queue_model("log")
@dataclass(frozen=True)
class LogQueue:
    """``p = log(1 + back) / (log(1 + back) + log(1 + front))`` (hftbacktest ``LogProbQueueFunc``).

    >>> LogQueue().prob_behind(0.0, 2.0)
    1.0
    """

    @classmethod
    def from_config(cls, config: ExchangeConfig) -> LogQueue:
        """The model (no parameters)."""
        return cls()

    def prob_behind(self, front: float, back: float) -> float:
        """See ``QueueModel``."""
        return _share(math.log1p(back), math.log1p(front))


@register_queue_model("risk_averse")
@dataclass(frozen=True)
class RiskAverseQueue:
    """``p = 1``: every cancellation is behind us, the queue ahead only shrinks by trades.

    >>> RiskAverseQueue().prob_behind(5.0, 0.0)
    1.0
    """

    @classmethod
    def from_config(cls, config: ExchangeConfig) -> RiskAverseQueue:
        """The model (no parameters)."""
        return cls()

    def prob_behind(self, front: float, back: float) -> float:
        """See ``QueueModel``."""
        return 1.0


# ============================================================================ latency models
@register_latency_model("constant")
@dataclass(frozen=True)
class ConstantLatency:
    """Every latency is its configured value.

    >>> ConstantLatency().sample(10.0, None)
    10.0
    """

    @classmethod
    def from_config(cls, config: ExchangeConfig) -> ConstantLatency:
        """The model (no parameters)."""
        return cls()

    def sample(self, base_ms: float, rng: Any) -> float:
        """``base_ms`` (draws nothing from ``rng``)."""
        return base_ms


@register_latency_model("lognormal")
@dataclass(frozen=True)
class LognormalLatency:
    """``base · exp(sigma · z)``, z standard normal from ``rng``: median ``base``; 0 stays 0.

    >>> LognormalLatency(0.5).sample(10.0, np.random.default_rng(0)) > 0
    True
    """

    sigma: float = 0.5

    @classmethod
    def from_config(cls, config: ExchangeConfig) -> LognormalLatency:
        """The model with ``sigma = config.latency_sigma``."""
        return cls(config.latency_sigma)

    def sample(self, base_ms: float, rng: Any) -> float:
        """One draw (none for ``base_ms == 0``, so a zero latency consumes no randomness)."""
        if base_ms == 0:
            return base_ms
        return float(base_ms * math.exp(self.sigma * rng.standard_normal()))


# ============================================================================ records
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
    behind: set | None = None  # fifo: ids of the orders that joined our price after us


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


# ============================================================================ fill rules
class _Lots:
    """Rounds partial maker fills down to whole lots (a fill of the whole remainder stays exact)."""

    def __init__(self, lot_size: float | None) -> None:
        self.lot_size = lot_size

    def lots(self, q: float) -> float:
        """``q`` rounded down to a multiple of the lot (unchanged without a lot size)."""
        lot = self.lot_size
        if lot is None:
            return q
        return math.floor(q / lot + 1e-9) * lot


@register_fill_model("queue")
class QueueFill(_Lots):
    """Queue-position fills: rules 2 and 3 of ``SimExchange`` (and the no-trades fallback).

    Args:
        queue: the queue model of rule 3.
        has_trades: whether the data carries trades (else the fallback of ``SimExchange``).
        lot_size: partial fills are rounded down to multiples of it (None = no rounding).
    """

    uses_queue: ClassVar[bool] = True
    """The exchange passes level changes and trades at our price to this rule."""

    def __init__(self, queue: QueueModel, has_trades: bool = True, lot_size: float | None = None) -> None:
        super().__init__(lot_size)
        self.queue = queue
        self.has_trades = has_trades

    @classmethod
    def from_config(cls, config: ExchangeConfig, has_trades: bool = True, lot_size: float | None = None) -> QueueFill:
        """The rule with the queue model ``config.queue_model`` names."""
        return cls(QUEUE_MODELS[config.queue_model].from_config(config), has_trades, lot_size)

    def level_change(self, o: SimOrder, prev: float, new: float) -> float:
        """Rule 3 (or the fallback): update ``o``'s queue for a displayed size ``prev -> new``.

        Returns:
            The size that fills ``o`` as maker (0 except in the no-trades fallback).
        """
        if not self.has_trades:
            if new < prev:
                executed = prev - new
                take = min(o.queue_ahead, executed)
                o.queue_ahead -= take
                q = self.lots(min(o.remaining, executed - take))
                return q if q > _EPS else 0.0
            o.queue_ahead = min(o.queue_ahead, new)
            return 0.0
        chg = prev - new - o.cum_trade
        o.cum_trade = 0.0
        if chg <= 0:
            o.queue_ahead = min(o.queue_ahead, new)
            return 0.0
        front = o.queue_ahead
        back = max(prev - front, 0.0)
        p = self.queue.prob_behind(front, back)
        est = front - (1.0 - p) * chg + min(back - p * chg, 0.0)
        o.queue_ahead = max(min(est, new), 0.0)
        return 0.0

    def trade(self, o: SimOrder, price: int, size: float, budget: float) -> tuple[float, float]:
        """Rule 2 for one order: a trade of ``size`` at ``price`` with ``budget`` left unallotted.

        Returns:
            ``(fill size, budget left for the next order)``.
        """
        if price < o.price if o.side == BID else price > o.price:   # printed through us
            q = o.remaining
            return q, max(budget - q, 0.0)
        if price == o.price:
            o.cum_trade += size
            take = min(o.queue_ahead, budget)
            o.queue_ahead -= take
            budget -= take
            q = self.lots(min(o.remaining, budget))
            if q > _EPS:
                return q, budget - q
        return 0.0, budget


@register_fill_model("fifo")
class FifoFill(_Lots):
    """The exact FIFO queue of order-level data: rule 6 of ``SimExchange``.

    Our order joins the back of the real queue at its price (``queue_ahead`` = the displayed
    size there) and learns from each ``OrderMessage`` which orders are ahead of it: an order
    added at our price after us is behind; every other order at our price (placed before us,
    or before the recording) is ahead.
    """

    uses_queue: ClassVar[bool] = True
    """Level changes reach ``level_change`` (only to cap the queue ahead); trades do nothing."""
    uses_orders: ClassVar[bool] = True
    """The exchange passes order-level events to ``order_event``."""

    @classmethod
    def from_config(cls, config: ExchangeConfig, has_trades: bool = True, lot_size: float | None = None) -> FifoFill:
        """The rule (no parameters)."""
        return cls(lot_size)

    def level_change(self, o: SimOrder, prev: float, new: float) -> float:
        """The queue ahead never exceeds the displayed size (a feed's correction of a level)."""
        o.queue_ahead = min(o.queue_ahead, new)
        return 0.0

    def trade(self, o: SimOrder, price: int, size: float, budget: float) -> tuple[float, float]:
        """Nothing: the order events carry the executions (a trade would count them twice)."""
        return 0.0, budget

    def order_event(self, o: SimOrder, msg: Any, budget: float) -> tuple[float, float]:
        """Rule 6 for one of our orders on the event's side; ``budget``: executed size not yet allotted.

        Returns:
            ``(fill size, budget left for the next order)``.
        """
        behind = o.behind
        if behind is None:
            behind = o.behind = set()
        action = msg.action
        oid = msg.order_id
        if msg.price != o.price:
            if action == ORDER_EXECUTE and (msg.price < o.price if o.side == BID else msg.price > o.price):
                q = self.lots(min(o.remaining, budget))          # executed through our price
                return (q, budget - q) if q > _EPS else (0.0, budget)
            return 0.0, budget
        if action == ORDER_ADD:
            behind.add(oid)
            return 0.0, budget
        if oid in behind:
            if action == ORDER_EXECUTE:                          # an order behind us executed:
                q = self.lots(min(o.remaining, budget))          # the aggressor passed us
                if msg.remaining is not None and msg.remaining <= _EPS:
                    behind.discard(oid)
                return (q, budget - q) if q > _EPS else (0.0, budget)
            if action == ORDER_DELETE:
                behind.discard(oid)
            return 0.0, budget
        if action != ORDER_EXECUTE:                              # cancelled ahead of us
            o.queue_ahead = max(o.queue_ahead - msg.size, 0.0)
            return 0.0, budget
        take = min(o.queue_ahead, budget)                        # executed ahead of us
        o.queue_ahead -= take
        budget -= take
        q = self.lots(min(o.remaining, budget))
        return (q, budget - q) if q > _EPS else (0.0, budget)


@register_fill_model("bbo_cross")
class BboCrossFill:
    """Fills only when the book moves through the order (rule 4): trades and queues are ignored."""

    uses_queue: ClassVar[bool] = False
    """Level changes and trades never reach this rule (the exchange skips them)."""

    @classmethod
    def from_config(cls, config: ExchangeConfig, has_trades: bool = True, lot_size: float | None = None) -> BboCrossFill:
        """The rule (no parameters)."""
        return cls()

    def level_change(self, o: SimOrder, prev: float, new: float) -> float:
        """Nothing: a displayed-size change never fills."""
        return 0.0

    def trade(self, o: SimOrder, price: int, size: float, budget: float) -> tuple[float, float]:
        """Nothing: a trade never fills."""
        return 0.0, budget


# ============================================================================ exchange
class SimExchange:
    """The agent's orders beside a replayed L2 book, with a pluggable fill rule.

    Conditions (``fill_model="queue"``; ``"bbo_cross"`` uses rules 1, 4 and 5 only):

    1. An order reaches the book at ``submit + entry latency``. A limit order that would
       cross the book then first takes the visible opposite levels up to its price as taker
       (``OrderBook.walk``); the rest joins behind the displayed size at its price
       (``queue_ahead = displayed size``). A market order takes the visible levels; what the
       visible book lacks is dropped.
    2. A trade at our price consumes ``queue_ahead`` first; what is left of the trade fills
       us (partially if smaller than our remaining size, rounded down to whole lots). A trade
       printing *through* our price (a sell below our bid, a buy above our ask) fills us
       fully. Trades are allotted to our orders best price first and each unit of traded size
       fills at most one order (a through-fill uses up budget too, but is never limited by it).
    3. A decrease of the displayed size at our price not explained by trades since the last
       change (``chg = prev - new - traded``) is a cancellation; it happens behind us with
       probability ``p = QueueModel.prob_behind(front, back)`` and advances the queue as in
       hftbacktest's ``ProbQueueModel``:
       ``front' = max(min(front - (1-p)*chg + min(back - p*chg, 0), new), 0)``, with
       ``p = back^n / (back^n + front^n)`` (``PowerQueue``), ``log(1+back) / (log(1+back) +
       log(1+front))`` (``LogQueue``) or ``p = 1`` (``RiskAverseQueue``). Increases join
       behind us (``front`` is capped at the new displayed size).
    4. Crossing: a bid fills fully (maker, at its price) when the best ask falls to or below
       its price, an ask when the best bid rises to or above its price (the book moved
       through us).
    5. A cancel takes effect at ``request + cancel latency`` (never before the order reached
       the book); fills that happen before that stand.

    6. ``fill_model="fifo"`` (order-level data: LOBSTER, Bitstamp; rules 1, 4 and 5 as above,
       rules 2 and 3 replaced): the order joins the back of the real FIFO queue at its price
       (``queue_ahead`` = displayed size there). For each order event at our side and price
       (``on_order``): an add is behind us; a cancel or partial cancel of an order ahead of us
       reduces ``queue_ahead`` by its size, of an order behind us changes nothing; an
       execution of an order ahead of us reduces ``queue_ahead`` and what exceeds it fills us;
       an execution of an order behind us (the aggressor passed us) fills us with its size;
       an execution on our side at a worse price (a bid below our bid) fills us with its
       size. Executions are allotted to our orders best price first (each executed unit fills
       at most one). Trades do nothing (the executions are the trades); ``queue_ahead`` is
       capped at the displayed size (a feed's correction of a level).

    Without trade data (``has_trades=False``) rule 2 cannot apply; the fallback treats every
    decrease of the displayed size at our price as executions at the front of the queue
    (the excess over ``queue_ahead`` fills us), an optimistic bound.

    What replay cannot model: our own market impact. The recorded book and trades do not
    react to our orders: a fill does not remove displayed liquidity, our resting size does
    not change other traders' behaviour, and a taker order walking the book leaves the
    replayed levels as they were.

    Feed: pass **every** message, in order: ``on_book(book, msg, mid)`` applies a book message
    to ``book`` (so who applies it never depends on the orders), ``on_trade`` takes a
    trade and ``on_order`` an order-level event (``OrderMessage``, before the book message it
    causes); ``process_events(t, ...)`` first runs the arrivals and cancels due before it.
    Both return at once when no order is live (the replay fast path).

    Args:
        tick_size: price of one tick in quote currency.
        config: fill rule, queue and latency models and fees (default ``ExchangeConfig()``).
        has_trades: whether the data carries trades (else the fallback above).
        lot_size: partial maker fills are rounded down to multiples of it (None = no rounding).
        rng: ``numpy.random.Generator`` of the latency draws (the env passes its
            ``np_random``); only a random latency model uses it (default: a fresh generator).
    """

    def __init__(self, tick_size: float, config: ExchangeConfig | None = None, *, has_trades: bool = True,
                 lot_size: float | None = None, rng: np.random.Generator | None = None) -> None:
        self.config = config = config if config is not None else ExchangeConfig()
        self.tick_size = float(tick_size)
        self.fill_rule = FILL_MODELS[config.fill_model].from_config(config, has_trades=has_trades, lot_size=lot_size)
        self.latency = LATENCY_MODELS[config.latency_distribution].from_config(config)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.maker_rate = config.maker_fee_bps * 1e-4
        self.taker_rate = config.taker_fee_bps * 1e-4
        self.has_trades = has_trades
        self._uses_queue = self.fill_rule.uses_queue
        self._uses_orders = getattr(self.fill_rule, "uses_orders", False)
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
    def entry_latency(self) -> float:
        """One order-entry latency draw (ms) from the latency model."""
        return self.latency.sample(self.config.entry_latency_ms, self.rng)

    def cancel_latency(self) -> float:
        """One cancel latency draw (ms) from the latency model."""
        return self.latency.sample(self.config.cancel_latency_ms, self.rng)

    def submit_limit(self, now: float, side: int, price: int, size: float, latency: float | None = None) -> SimOrder:
        """Send a limit order at ``now``; it reaches the book at ``now + latency``.

        ``latency=None`` draws the configured entry latency.
        """
        if latency is None:
            latency = self.entry_latency()
        order = SimOrder(self._next_oid, side, int(price), size, _LIMIT, now, now + latency, remaining=size)
        self._next_oid += 1
        self.orders.append(order)
        self.orders_placed += 1
        self.limit_volume_placed += size
        self.next_event_ts = min(self.next_event_ts, order.active_ts)
        return order

    def submit_market(self, now: float, side: int, size: float, latency: float | None = None) -> SimOrder:
        """Send a market order at ``now``; it walks the visible book at ``now + latency``.

        ``latency=None`` draws the configured entry latency.
        """
        if latency is None:
            latency = self.entry_latency()
        order = SimOrder(self._next_oid, side, 0, size, _MARKET, now, now + latency, remaining=size)
        self._next_oid += 1
        self.orders.append(order)
        self.orders_placed += 1
        self.next_event_ts = min(self.next_event_ts, order.active_ts)
        return order

    def cancel(self, now: float, order: SimOrder, latency: float | None = None) -> None:
        """Request a cancel at ``now``; effective at ``max(now + latency, order.active_ts)``.

        ``latency=None`` draws the configured cancel latency (only for an order that can
        still be cancelled).
        """
        if order.status == _DONE or order.cancel_ts is not None:
            return
        if latency is None:
            latency = self.cancel_latency()
        order.cancel_ts = max(now + latency, order.active_ts)
        self.next_event_ts = min(self.next_event_ts, order.cancel_ts)

    def cancel_side(self, now: float, side: int) -> None:
        """Request a cancel (configured latency) of every limit order on ``side`` not being cancelled."""
        for o in list(self.orders):
            if o.side == side and o.kind == _LIMIT and o.cancel_ts is None and o.status != _DONE:
                self.cancel(now, o)

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
        """Apply a book message to ``book``, then update queue positions and crossing fills (rules 3, 4)."""
        book.apply(msg)
        if not self.n_live:
            return
        ts = msg.ts
        done = False
        bb = book.best_bid()
        ba = book.best_ask()
        best_bid = bb[0] if bb is not None else None
        best_ask = ba[0] if ba is not None else None
        track = self._uses_queue
        rule = self.fill_rule
        size_at = book.size_at
        for o in self.orders:
            if o.status != _LIVE:
                continue
            if track:
                level = size_at(o.side, o.price)
                if level != o.last_level:
                    q = rule.level_change(o, o.last_level, level)
                    if q:
                        self._fill(o, q, float(o.price), ts, True, mid)
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

    def on_order(self, msg: Any, mid: float | None) -> None:
        """An order-level event (``messages.OrderMessage``): rule 6 (fill rules with ``uses_orders``)."""
        if not (self._uses_orders and self.n_live):
            return
        side = msg.side
        mine = [o for o in self.orders if o.status == _LIVE and o.side == side]
        if not mine:
            return
        mine.sort(key=(lambda o: (-o.price, o.oid)) if side == BID else (lambda o: (o.price, o.oid)))
        budget = msg.size
        rule = self.fill_rule
        for o in mine:
            q, budget = rule.order_event(o, msg, budget)
            if q:
                self._fill(o, q, float(o.price), msg.ts, True, mid)
        self._refresh()

    def on_trade(self, ts: float, side: int, price: int, size: float, mid: float | None) -> None:
        """A trade printed (rule 2): ``side`` is the aggressor (+1 buy hits asks, -1 sell hits bids)."""
        if not (self._uses_queue and self.n_live):
            return
        passive = -side
        mine = [o for o in self.orders if o.status == _LIVE and o.side == passive]
        if not mine:
            return
        mine.sort(key=(lambda o: (-o.price, o.oid)) if passive == BID else (lambda o: (o.price, o.oid)))
        budget = size
        rule = self.fill_rule
        for o in mine:
            q, budget = rule.trade(o, price, size, budget)
            if q:
                self._fill(o, q, float(o.price), ts, True, mid)
        self._refresh()

    # ----------------------------------------------------------------- internals
    def _activate(self, o: SimOrder, book: Any, mid: float | None, t: float) -> None:
        """Rule 1: the order reaches the book."""
        if o.kind == _MARKET:
            filled, vwap = book.walk(o.side, o.remaining)
            if filled > _EPS:
                self._fill(o, filled, vwap, t, False, mid)
            o.status = _DONE   # unfilled rest of a market order beyond the visible book is dropped
            return
        if o.side == BID:
            ba = book.best_ask()
            crossing = ba is not None and ba[0] <= o.price
        else:
            bb = book.best_bid()
            crossing = bb is not None and bb[0] >= o.price
        if crossing:
            filled, vwap = book.walk(o.side, o.remaining, limit=o.price)
            if filled > _EPS:
                self._fill(o, filled, vwap, t, False, mid)
            if o.status == _DONE:
                return
        o.status = _LIVE
        level = book.size_at(o.side, o.price)
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
        filled, vwap = book.walk(side, abs(q), fill_rest_at_worst=True)
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

    # ----------------------------------------------------------------- reads
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

    def queue_ahead(self, order: SimOrder, book: Any) -> float:
        """Size ahead of ``order``: its queue estimate once live, the displayed size at its price before."""
        return order.queue_ahead if order.status == _LIVE else book.size_at(order.side, order.price)

    def exposure(self, side: int) -> float:
        """Remaining size of ``side``'s orders that are not being cancelled."""
        return sum(o.remaining for o in self.orders if o.side == side and o.cancel_ts is None and o.status != _DONE)


# ============================================================================ markouts
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
