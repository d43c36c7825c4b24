"""The L2 queue models measured against the true FIFO queue of an order-level recording.

One job: replay one order-level recording (LOBSTER, Bitstamp) once, run the same fixed
quoting policy through one simulated exchange per fill model (the L2 ``queue`` model with
each queue model, which see only the aggregated deltas and trades, and the exact ``fifo``
model, which also sees the order events), and compare them order by order.

Public names:

- ``calibrate_queue(path, ...) -> QueueStudy``: the study of one recording (the helper for a
  user's own order-level file); ``QueueStudy.table()`` prints it, ``QueueStudy.closest``
  names the L2 model nearest to ``fifo``.
- ``DEFAULT_MODELS``: the models compared by default (``power`` n = 0.5, 1, 2, 3, 4, 5,
  ``log``, ``risk_averse``).

The policy (same orders for every model): every ``every_s`` seconds of exchange time, for
each size, a bid and an ask at the best price (``offset 0``) and one tick behind it
(``offset 1``), each cancelled ``life_s`` later (all through the exchange's latency). The
orders of one size live in one exchange per model (so they never compete for the same
execution with an order of another size).

Per order: filled size, time from arrival to first fill, PnL (each fill marked to the mid at
the order's end, fees excluded). Per model: fill rate (orders with any fill) at each offset,
filled volume and its ratio to ``fifo``'s, median time to first fill, PnL, and the per-order
agreement with ``fifo`` (the share of orders that fill iff they fill under ``fifo``); ``closest``
is the L2 model with the highest agreement (ties: volume ratio nearest 1).

What it cannot measure: our own impact (no model has it), and on LOBSTER level-1 files the
events of levels below the best (the message file lacks them, ``feeds/lobster.py``): there
``fifo`` only learns of cancels at a level behind the best from the orderbook file's
corrections, which cap its queue.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from data_processor import load_messages
from messages import (
    ASK,
    BID,
    DELTA,
    KIND_OF_CLASS,
    ORDER,
    SNAPSHOT,
    TRADE,
)
from order_book import OrderBook
from sim_exchange import ExchangeConfig, SimExchange

__all__ = ["DEFAULT_MODELS", "QueueStudy", "calibrate_queue"]

logger = logging.getLogger(__name__)

DEFAULT_MODELS: tuple[tuple[str, dict], ...] = (
    *((f"power n={n:g}", {"fill_model": "queue", "queue_model": "power", "queue_power": n})
      for n in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0)),
    ("log", {"fill_model": "queue", "queue_model": "log"}),
    ("risk_averse", {"fill_model": "queue", "queue_model": "risk_averse"}),
)
"""(label, ``ExchangeConfig`` overrides) of the L2 models compared with ``fifo``."""


class _SharedBook:
    """The one replayed book seen by every exchange but the first (``apply`` done once)."""

    def __init__(self, book: OrderBook) -> None:
        self._book = book
        # the exchange's reads, bound once (the study calls them per message and model)
        self.size_at = book.size_at
        self.best_bid = book.best_bid
        self.best_ask = book.best_ask
        self.walk = book.walk

    def apply(self, msg: Any) -> None:
        """Nothing: the first exchange applied it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._book, name)


@dataclass
class ModelRow:
    """One model's line of the study table."""

    label: str
    orders: int
    fill_rate_join: float
    fill_rate_behind: float
    volume: float
    volume_ratio: float
    median_first_fill_s: float
    pnl: float
    agreement: float


@dataclass
class QueueStudy:
    """The result of ``calibrate_queue``: one ``ModelRow`` per model, ``fifo`` first."""

    path: str
    rows: list[ModelRow]
    closest: str
    """The L2 model nearest to ``fifo`` (highest per-order agreement; ties: volume ratio)."""
    n_messages: int = 0
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        """The table as Markdown."""
        head = ("| model | orders | filled at best | filled 1 tick behind | filled volume | vs fifo "
                "| median first fill (s) | PnL | agreement with fifo |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        lines = [head]
        for r in self.rows:
            mark = " **(closest)**" if r.label == self.closest else ""
            lines.append(f"| {r.label}{mark} | {r.orders} | {r.fill_rate_join:.1%} | {r.fill_rate_behind:.1%} "
                         f"| {r.volume:.6g} | {r.volume_ratio:.2f} | {r.median_first_fill_s:.1f} | {r.pnl:.2f} "
                         f"| {r.agreement:.1%} |")
        return "\n".join(lines)


@dataclass
class _Order:
    offset: int
    side: int
    end_ts: float
    filled: float = 0.0
    first_fill: float | None = None
    arrival: float = 0.0
    fills: list = field(default_factory=list)  # (price ticks, size)


def calibrate_queue(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    models: Sequence[tuple[str, dict]] = DEFAULT_MODELS,
    sizes: Sequence[float] | None = None,
    every_s: float = 30.0,
    life_s: float = 30.0,
    latency_ms: float = 10.0,
    max_hours: float | None = None,
) -> QueueStudy:
    """Compare L2 queue models with the exact FIFO queue on an order-level recording.

    Args:
        path: an order-level recording (LOBSTER zip or message file, Bitstamp log).
        models: (label, ``ExchangeConfig`` overrides) of the L2 models.
        sizes: order sizes; None = the median and 5x the median of the recording's first
            2,000 trade sizes.
        every_s: seconds between quoting rounds.
        life_s: seconds each order rests before its cancel.
        latency_ms: entry and cancel latency of every model.
        max_hours: study only the first hours of the recording (None = all of it).

    Returns:
        The ``QueueStudy`` (``fifo`` first, then ``models`` in order).

    Raises:
        ValueError: the recording is not order-level (no ``OrderMessage``).
    """
    if sizes is None:
        sizes = _default_sizes(path)
    specs = [("fifo", {"fill_model": "fifo"}), *models]
    exchanges: list[list[SimExchange]] = []  # [model][size]
    for _, over in specs:
        cfg = ExchangeConfig(entry_latency_ms=latency_ms, cancel_latency_ms=latency_ms,
                             maker_fee_bps=0.0, taker_fee_bps=0.0, **over)
        exchanges.append([SimExchange(1.0, cfg) for _ in sizes])
    flat = [ex for row in exchanges for ex in row]
    orders: list[list[list[_Order]]] = [[[] for _ in sizes] for _ in specs]
    by_oid: list[list[dict]] = [[{} for _ in sizes] for _ in specs]  # exchange order id -> record
    books: list[Any] = []
    book: OrderBook | None = None
    every, life = every_s * 1000.0, life_s * 1000.0
    next_round: float | None = None
    end_mids: list[tuple[float, list]] = []  # (end ts, orders ending then) for the PnL marks
    n = n_orders_msgs = 0
    t_stop = None
    kinds = KIND_OF_CLASS
    watch: list[tuple[float, set, set]] = []  # (end ts, bid prices, ask prices) of recent rounds
    for msg in load_messages(path, order_level=True):
        n += 1
        kind = kinds[type(msg)]
        ts = msg.ts
        if t_stop is not None and ts > t_stop:
            break
        if book is None:
            if kind != SNAPSHOT:
                continue
            book = OrderBook(msg.symbol, msg.tick_size)
            books = [book] + [_SharedBook(book)] * (len(flat) - 1)
            next_round = math.ceil(ts / every) * every
            if max_hours is not None:
                t_stop = ts + max_hours * 3_600_000
        mid = book.mid()
        while next_round is not None and ts > next_round:
            _round(next_round, book, exchanges, orders, by_oid, sizes, life, end_mids)
            bb, ba = book.best_bid(), book.best_ask()
            if bb is not None and ba is not None:
                watch.append((next_round + life, {bb[0], bb[0] - 1}, {ba[0], ba[0] + 1}))
            next_round += every
        if kind == DELTA and not _touches(msg, book, watch, ts, latency_ms):
            book.apply(msg)  # no order of ours at a changed level, none crossed: nothing to do
        else:
            n_orders_msgs += _dispatch(msg, kind, mid, flat, books, exchanges[0])
        _collect(exchanges, by_oid)
        _mark(end_mids, ts, book)
    if book is None or n_orders_msgs == 0:
        raise ValueError(f"{path}: not an order-level recording (no order events): the study needs LOBSTER or Bitstamp data")
    for ex in flat:
        ex.cancel_all_now()
    _collect(exchanges, by_oid)
    _mark(end_mids, math.inf, book)
    rows = [_row(label, [o for per in orders[k] for o in per], [o for per in orders[0] for o in per], book.tick_size)
            for k, (label, _) in enumerate(specs)]
    l2 = rows[1:]
    closest = max(l2, key=lambda r: (round(r.agreement, 4), -abs(r.volume_ratio - 1.0))).label if l2 else "fifo"
    return QueueStudy(str(path), rows, closest, n,
                      {"sizes": list(sizes), "every_s": every_s, "life_s": life_s, "latency_ms": latency_ms,
                       "max_hours": max_hours})


def _touches(msg: Any, book: OrderBook, watch: list, ts: float, latency_ms: float) -> bool:
    """Whether a delta can matter to an order of a recent round.

    It can when it changes a level at one of their prices, or sets an opposite level at or
    through one of them; otherwise ``on_book`` would change nothing in any exchange.
    """
    while watch and watch[0][0] + latency_ms < ts:
        watch.pop(0)
    if not watch:
        return False
    for _, bids, asks in watch:
        for p, _s in msg.bids:
            if p in bids:
                return True
        for p, _s in msg.asks:
            if p in asks:
                return True
    hi_bid = max(max(b) for _, b, _a in watch)
    lo_ask = min(min(a) for _, _b, a in watch)
    # only a level added or grown can move the opposite best onto our price (removals move it away)
    return any(s > 0 and p <= hi_bid for p, s in msg.asks) or any(s > 0 and p >= lo_ask for p, s in msg.bids)


def _dispatch(msg: Any, kind: int, mid: float | None, flat: list[SimExchange], books: list,
              fifo: list[SimExchange]) -> int:
    """One message to every exchange (order events to the ``fifo`` ones); 1 for an order event."""
    ts = msg.ts
    for i, ex in enumerate(flat):
        if ts > ex.next_event_ts:
            ex.process_events(ts, books[i], mid)
    if kind == ORDER:
        for ex in fifo:
            ex.on_order(msg, mid)
        return 1
    if kind == TRADE:
        for ex in flat:
            ex.on_trade(ts, msg.side, msg.price, msg.size, mid)
    else:
        for i, ex in enumerate(flat):
            ex.on_book(books[i], msg, mid)
    return 0


def _default_sizes(path: Any) -> list[float]:
    sizes = []
    for m in load_messages(path):
        if KIND_OF_CLASS[type(m)] == TRADE:
            sizes.append(m.size)
            if len(sizes) >= 2000:
                break
    med = statistics.median(sizes) if sizes else 1.0
    return [med, 5 * med]


def _round(t: float, book: OrderBook, exchanges: list, orders: list, by_oid: list, sizes: Sequence[float],
           life: float, end_mids: list) -> None:
    """One quoting round at ``t``: every model, every size, both sides, both offsets."""
    bb, ba = book.best_bid(), book.best_ask()
    if bb is None or ba is None:
        return
    ending: list[_Order] = []
    for k, per_size in enumerate(exchanges):
        for j, ex in enumerate(per_size):
            for offset in (0, 1):
                for side, price in ((BID, bb[0] - offset), (ASK, ba[0] + offset)):
                    so = ex.submit_limit(t, side, price, sizes[j])
                    ex.cancel(t, so, latency=life)
                    rec = _Order(offset, side, t + life, arrival=so.active_ts)
                    orders[k][j].append(rec)
                    by_oid[k][j][so.oid] = rec
                    ending.append(rec)
    end_mids.append((t + life, ending))


def _collect(exchanges: list, by_oid: list) -> None:
    for k, per_size in enumerate(exchanges):
        for j, ex in enumerate(per_size):
            if ex.fills:
                for f in ex.drain_fills():
                    rec = by_oid[k][j].get(f.oid)
                    if rec is None:
                        continue
                    rec.filled += f.size
                    rec.fills.append((f.price, f.size))
                    if rec.first_fill is None:
                        rec.first_fill = f.ts


def _mark(end_mids: list, ts: float, book: OrderBook) -> None:
    """Mark the orders whose life ended before ``ts`` at the current mid (their PnL)."""
    while end_mids and end_mids[0][0] < ts:
        _, recs = end_mids.pop(0)
        mid = book.mid()
        for r in recs:
            r.pnl_mid = mid  # type: ignore[attr-defined]


def _row(label: str, mine: list[_Order], fifo: list[_Order], tick: float) -> ModelRow:
    join = [o for o in mine if o.offset == 0]
    behind = [o for o in mine if o.offset == 1]
    vol = sum(o.filled for o in mine)
    fvol = sum(o.filled for o in fifo)
    waits = [(o.first_fill - o.arrival) / 1000.0 for o in mine if o.first_fill is not None]
    pnl = 0.0
    for o in mine:
        mid = getattr(o, "pnl_mid", None)
        if mid is None:
            continue
        pnl += sum(o.side * (mid - p) * q * tick for p, q in o.fills)
    agree = sum((a.filled > 0) == (b.filled > 0) for a, b in zip(mine, fifo, strict=True))
    return ModelRow(label, len(mine),
                    sum(o.filled > 0 for o in join) / max(len(join), 1),
                    sum(o.filled > 0 for o in behind) / max(len(behind), 1),
                    vol, vol / fvol if fvol else math.nan,
                    statistics.median(waits) if waits else math.nan, pnl,
                    agree / max(len(mine), 1))


