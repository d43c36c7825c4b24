"""Acceptance: the project's replay of the real recordings equals an independent replay.

For every Bybit file and symbol in ``../shared/data/bybit/`` and every Binance USDⓈ-M session
in ``../shared/data/binance/hftbacktest-usdm/``, the best bid/ask (price and size) after every
book message from ``data_processor.load_messages`` + ``order_book.OrderBook`` must equal the
one from a replay written here from scratch: ``json`` + ``Decimal`` + plain dicts, no project
code. On Binance the exchange's own ``bookTicker`` stream confirms the book wherever a ticker's
update id equals a diff's ``u``.

The independent replays keep the best level incrementally (a new level beyond the best becomes
the best; removing the best rescans the dict), which is exact and keeps the Binance sessions
(~9,000 diffs on books of ~5,000 levels) to a few seconds.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from order_book import OrderBook

# every test here runs with the compiled per-level loops and with the pure-Python ones
pytestmark = pytest.mark.usefixtures("both_loops")

zstandard = pytest.importorskip("zstandard")

BYBIT_FILES = [
    "2024-12-01_XRPUSDT_ob500.data",
    "cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl",
    "cryptofeed_v3_BYBIT_spot_ob200_publicTrade.jsonl",
    "cryptofeed_v3_BYBIT.jsonl.zst",
]

# Each Binance session: its files in order, and the number of diffs applied after the sync
# (from ../shared/data/PROVENANCE.md, checked here by the independent replay too).
BINANCE_SESSIONS = {
    "btcusdt_0718+0719": (["btcusdt_20240718.gz", "btcusdt_20240719.gz"], 9_017),
    "ethusdt_0718+0719": (["ethusdt_20240718.gz", "ethusdt_20240719.gz"], 8_924),
    "btcusdt_0808": (["btcusdt_20240808.gz"], 6_547),
    "ethusdt_0808": (["ethusdt_20240808.gz"], 6_581),
}


# ------------------------------------------------------------------ independent replay


class _Side:
    """One side of a book: Decimal price -> Decimal size, with the best price kept incrementally."""

    def __init__(self, is_bid: bool) -> None:
        self.levels: dict[Decimal, Decimal] = {}
        self.is_bid = is_bid
        self.best: Decimal | None = None

    def _better(self, a: Decimal, b: Decimal) -> bool:
        return a > b if self.is_bid else a < b

    def replace(self, levels) -> None:
        self.levels = {}
        self.best = None
        self.update(levels)

    def update(self, levels) -> None:
        for price_text, size_text in levels:
            price, size = Decimal(price_text), Decimal(size_text)
            if size == 0:
                if self.levels.pop(price, None) is not None and price == self.best:
                    self.best = (max if self.is_bid else min)(self.levels) if self.levels else None
            else:
                self.levels[price] = size
                if self.best is None or self._better(price, self.best):
                    self.best = price

    def top(self):
        return None if self.best is None else (self.best, self.levels[self.best])


class _Book:
    def __init__(self) -> None:
        self.bids, self.asks = _Side(True), _Side(False)

    def bbo(self):
        return self.bids.top(), self.asks.top()


def _read_lines(path: Path) -> list[str]:
    if path.suffix == ".zst":
        with path.open("rb") as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        return data.decode().splitlines()
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as fh:
            return fh.read().splitlines()
    return path.read_text().splitlines()


def _bybit_payloads(path: Path):
    """(category or None, raw Bybit v5 message dict) for every line, unwrapping cryptofeed v3."""
    category_of_conn: dict[str, str] = {}
    for line in _read_lines(path):
        if not line.strip():
            continue
        obj = json.loads(line)
        if "topic" in obj:  # plain Bybit file: official daily download or raw websocket payloads
            yield None, obj
        elif obj.get("t") == "connect":  # cryptofeed v3 capture: the connection tells the market
            category_of_conn[obj["conn"]] = obj["addr"].rstrip("/").rsplit("/", 1)[-1]
        elif obj.get("t") == "recv":
            payload = json.loads(obj["data"])
            if "topic" in payload:
                yield category_of_conn[obj["conn"]], payload


def _qualified(category: str | None, symbol: str) -> str:
    """The loader's name for a symbol: qualified by market only in multi-connection captures."""
    return symbol if category is None else f"{category}:{symbol}"


def independent_bybit_bbos(path: Path) -> dict[str, list]:
    """Symbol -> [(type, ts, u, best bid, best ask)] after every orderbook message, in file order."""
    books: dict[str, _Book] = defaultdict(_Book)
    out: dict[str, list] = defaultdict(list)
    for category, msg in _bybit_payloads(path):
        if not msg["topic"].startswith("orderbook."):
            continue
        data = msg["data"]
        name = _qualified(category, data["s"])
        book = books[name]
        if msg["type"] == "snapshot":
            book.bids.replace(data["b"])
            book.asks.replace(data["a"])
        else:
            assert msg["type"] == "delta", msg["type"]
            book.bids.update(data["b"])
            book.asks.update(data["a"])
        out[name].append((msg["type"], msg["ts"], data["u"], *book.bbo()))
    return dict(out)


def independent_binance_replay(paths: list[Path]):
    """Binance USDⓈ-M futures sync, from the documentation, on the concatenated recording.

    Take the REST snapshot (``lastUpdateId``); in file order, drop diffs with
    ``u < lastUpdateId``; the first diff applied must have ``U <= lastUpdateId <= u``; every later
    one must have ``pu`` equal to the previous diff's ``u``.

    Returns:
        ``(bbos, tickers, n_buffered)``: ``bbos`` is ``[(update_id, best bid, best ask)]`` after
        the snapshot and after every applied diff; ``tickers`` the ``bookTicker`` payloads;
        ``n_buffered`` how many of the applied diffs come before the snapshot line in the file
        (received while the recorder fetched the snapshot).
    """
    snapshot, diffs, tickers = None, [], []
    n_before_snapshot = 0
    for path in paths:
        for line in _read_lines(path):
            if not line.strip():
                continue
            _local_ns, _, text = line.partition(" ")
            obj = json.loads(text)
            if "lastUpdateId" in obj:
                assert snapshot is None, "two REST snapshots"
                snapshot = obj
                continue
            data = obj["data"]
            if data["e"] == "depthUpdate":
                diffs.append(data)
                if snapshot is None:
                    n_before_snapshot += 1
            elif data["e"] == "bookTicker":
                tickers.append(data)
    assert snapshot is not None
    book = _Book()
    book.bids.replace(snapshot["bids"])
    book.asks.replace(snapshot["asks"])
    last = snapshot["lastUpdateId"]
    bbos = [(last, *book.bbo())]
    prev_u = None
    n_buffered = 0
    for i, diff in enumerate(diffs):
        if prev_u is None:
            if diff["u"] < last:
                continue
            assert diff["U"] <= last <= diff["u"], diff
        else:
            assert diff["pu"] == prev_u, f"gap: pu={diff['pu']} after u={prev_u}"
        book.bids.update(diff["b"])
        book.asks.update(diff["a"])
        prev_u = diff["u"]
        bbos.append((prev_u, *book.bbo()))
        n_buffered += i < n_before_snapshot
    return bbos, tickers, n_buffered


# ---------------------------------------------------------------------- project replay


def project_bbos(paths, symbol: str | None, mode: str = "apply"):
    """[(kind, ts, update_id, best bid, best ask, tick_size)] after every book message.

    ``mode="apply"``: ``load_messages`` + the caller's ``OrderBook.apply`` (the loader keeps
    its own light book for the crossing check). ``mode="replay"``: ``data_processor.replay``,
    where the loader applies every message to one ``OrderBook`` itself (its fused fast path).
    """
    from data_processor import DeltaMessage, SnapshotMessage, load_messages, replay

    book = None
    out = []
    if mode == "apply":
        def stream():
            nonlocal book
            for msg in load_messages(paths, symbol=symbol):
                if book is None:
                    book = OrderBook(msg.symbol, msg.tick_size)
                book.apply(msg)
                yield msg, book
    else:
        assert mode == "replay", mode
        stream = lambda: replay(paths, symbol=symbol)  # noqa: E731
    for msg, book in stream():
        if isinstance(msg, SnapshotMessage | DeltaMessage):
            kind = "snapshot" if isinstance(msg, SnapshotMessage) else "delta"
            out.append((kind, msg.ts, msg.update_id, book.best_bid(), book.best_ask(), msg.tick_size))
            if len(out) % 1000 == 0:
                book.check_invariants()
    assert book is not None
    book.check_invariants()
    return out


def _as_ticks(level, tick: Decimal):
    """Independent (Decimal price, Decimal size) -> (int ticks, float size), exactly or fail."""
    if level is None:
        return None
    price, size = level
    ticks = price / tick
    assert ticks == ticks.to_integral_value(), f"price {price} is not a multiple of tick {tick}"
    return int(ticks), float(size)


def _compare(expected, got, label: str) -> None:
    assert got, f"{label}: the loader produced no book messages"
    tick = Decimal(repr(got[0][5]))
    assert len(got) == len(expected), f"{label}: {len(got)} book messages, independent replay has {len(expected)}"
    for i, (exp, mine) in enumerate(zip(expected, got, strict=True)):
        exp_uid, exp_bid, exp_ask = exp[-3:]
        want = (exp_uid, _as_ticks(exp_bid, tick), _as_ticks(exp_ask, tick))
        have = (mine[2], mine[3], mine[4])
        assert have == want, f"{label}: book message #{i + 1}: project {have} != independent {want}"


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", BYBIT_FILES, ids=[n.split("_ob")[0] for n in BYBIT_FILES])
def test_bybit_best_bid_ask_matches_independent_replay(shared_data, name):
    path = shared_data / "bybit" / name
    expected = independent_bybit_bbos(path)
    assert expected, f"no orderbook messages in {path}"
    for symbol, exp in expected.items():
        for mode in ("apply", "replay"):
            got = project_bbos(path, symbol, mode)
            label = f"{name} {symbol} ({mode})"
            assert [g[0] for g in got] == [e[0] for e in exp], f"{label}: snapshot/delta sequence differs"
            assert [g[1] for g in got] == [e[1] for e in exp], f"{label}: ts sequence differs"
            _compare(exp, got, label)


def test_bybit_multi_symbol_file_refused_without_symbol(shared_data):
    from data_processor import DataFormatError, load_messages

    path = shared_data / "bybit" / "cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
    with pytest.raises(DataFormatError, match="BTCUSDT") as info:
        for _ in load_messages(path):
            pass
    for symbol in ("ETHUSDT", "SOLUSDT", "DOGEUSDT"):
        assert symbol in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("session", list(BINANCE_SESSIONS))
def test_binance_best_bid_ask_matches_exact_replay_and_book_ticker(shared_data, session):
    names, n_applied = BINANCE_SESSIONS[session]
    paths = [shared_data / "binance" / "hftbacktest-usdm" / n for n in names]
    expected, tickers, n_buffered = independent_binance_replay(paths)
    assert len(expected) == 1 + n_applied  # the snapshot, then every applied diff

    # The exchange's own bookTicker confirms the independent replay where update ids coincide.
    by_uid = {uid: (bid, ask) for uid, bid, ask in expected}
    confirmed = 0
    for t in tickers:
        if t["u"] in by_uid:
            bid, ask = by_uid[t["u"]]
            assert (bid, ask) == ((Decimal(t["b"]), Decimal(t["B"])), (Decimal(t["a"]), Decimal(t["A"]))), t
            confirmed += 1
    assert confirmed > 0, f"{session}: no bookTicker update id matched a diff's u"

    symbol = names[0].split("_")[0].upper()
    got = project_bbos(paths, symbol, "apply")
    assert got[0][0] == "snapshot" and all(g[0] == "delta" for g in got[1:])
    _compare(expected, got, session)
    # The loader's one-book path (replay(): it applies to the OrderBook itself) gives the same,
    # the REST snapshot and the diffs buffered before its line included (each paired with the
    # state after it, not after the whole snapshot line; issue 17).
    rep = project_bbos(paths, symbol, "replay")
    assert n_buffered > 0 and rep == got, f"{session}: replay() differs from load_messages + apply"

    # And the project's own book, directly against bookTicker.
    tick = Decimal(repr(got[0][5]))
    mine = {g[2]: (g[3], g[4]) for g in got}
    direct = 0
    for t in tickers:
        if t["u"] in mine:
            want = (_as_ticks((Decimal(t["b"]), Decimal(t["B"])), tick), _as_ticks((Decimal(t["a"]), Decimal(t["A"])), tick))
            assert mine[t["u"]] == want, f"{session}: bookTicker u={t['u']}: {want} vs project {mine[t['u']]}"
            direct += 1
    assert direct == confirmed


def test_independent_replay_reads_gzip_and_text_alike(tmp_path):
    """The test's own reader: .gz and plain give the same lines (guards the helper itself)."""
    text = '{"topic":"orderbook.1.X","type":"snapshot","ts":1,"data":{"s":"X","b":[["1.5","2"]],"a":[["1.6","3"]],"u":1}}\n'
    plain = tmp_path / "a.jsonl"
    plain.write_text(text)
    packed = tmp_path / "a.jsonl.gz"
    with gzip.open(packed, "wt") as fh:
        fh.write(text)
    zst = tmp_path / "a.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    assert _read_lines(plain) == _read_lines(packed) == _read_lines(zst) == [text.strip()]
    bbos = independent_bybit_bbos(plain)
    assert bbos == {"X": [("snapshot", 1, 1, (Decimal("1.5"), Decimal("2")), (Decimal("1.6"), Decimal("3")))]}
