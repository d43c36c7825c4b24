"""data_processor: real formats, every validation error one by one, skip mode, Replay, CLI."""

from __future__ import annotations

import gc
import gzip
import io
import os
import random
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import orjson
import pytest

import data_processor as dp
from data_processor import (
    BookTickerMessage,
    DataFormatError,
    DeltaMessage,
    LoadReport,
    Replay,
    SnapshotMessage,
    TradeMessage,
    load_messages,
)
from feeds.common import Feed, Problem
from order_book import OrderBook

# every test here runs with the compiled per-level loops and with the pure-Python ones
pytestmark = pytest.mark.usefixtures("both_loops")

REPO = Path(__file__).resolve().parent.parent
BYBIT_XRP = "bybit/2024-12-01_XRPUSDT_ob500.data"
BYBIT_LINEAR = "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
BYBIT_SPOT = "bybit/cryptofeed_v3_BYBIT_spot_ob200_publicTrade.jsonl"
BYBIT_ZST = "bybit/cryptofeed_v3_BYBIT.jsonl.zst"
BINANCE = "binance/hftbacktest-usdm"


# --------------------------------------------------------------------------- tiny files


def snap(ts, u, b, a, s="BTCUSDT", depth=50):
    return {"topic": f"orderbook.{depth}.{s}", "type": "snapshot", "ts": ts,
            "data": {"s": s, "b": b, "a": a, "u": u, "seq": u * 10}, "cts": ts - 1}


def delta(ts, u, b, a, s="BTCUSDT", depth=50):
    d = snap(ts, u, b, a, s, depth)
    d["type"] = "delta"
    return d


def trade(ts, p, v, side="Buy", s="BTCUSDT"):
    return {"topic": f"publicTrade.{s}", "type": "snapshot", "ts": ts,
            "data": [{"T": ts, "s": s, "S": side, "v": v, "p": p, "i": f"id{ts}"}]}


def lines_of(*objs) -> bytes:
    return b"".join((o if isinstance(o, bytes) else orjson.dumps(o)) + b"\n" for o in objs)


def write(tmp_path: Path, data: bytes, name: str = "f.jsonl") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


SNAP = snap(1000, 1, [["100.0", "1"], ["99.5", "2"]], [["100.5", "1"], ["101.0", "3"]])


def good_stream():
    return [
        SNAP,
        delta(1100, 2, [["100.0", "0"]], [["100.5", "2"]]),
        trade(1150, "100.5", "0.3"),
        delta(1200, 3, [["99.0", "4"]], []),
    ]


def load(path, **kw):
    return list(load_messages(path, **kw))


# ------------------------------------------------------------------------ hand-made data


def test_tiny_stream_messages_and_ticks(tmp_path):
    msgs = load(write(tmp_path, lines_of(*good_stream())), tick_size=0.5)
    assert [type(m) for m in msgs] == [SnapshotMessage, DeltaMessage, TradeMessage, DeltaMessage]
    s = msgs[0]
    assert (s.ts, s.symbol, s.update_id, s.seq, s.tick_size) == (1000, "BTCUSDT", 1, 10, 0.5)
    assert s.bids == [(200, 1.0), (199, 2.0)] and s.asks == [(201, 1.0), (202, 3.0)]
    assert msgs[1].bids == [(200, 0.0)] and msgs[1].asks == [(201, 2.0)]
    t = msgs[2]
    assert (t.ts, t.price, t.size, t.side, t.trade_id) == (1150, 201, 0.3, 1, "id1150")


def test_tick_inferred_from_first_snapshot(tmp_path):
    # fewer than 20 prices: tick = 10**-decimals
    msgs = load(write(tmp_path, lines_of(*good_stream())))
    assert msgs[0].tick_size == 0.1
    assert msgs[0].bids[0] == (1000, 1.0)


def test_tick_size_mapping_per_symbol(tmp_path):
    msgs = load(write(tmp_path, lines_of(*good_stream())), tick_size={"BTCUSDT": 0.5})
    assert msgs[0].tick_size == 0.5


def test_sell_trade_side(tmp_path):
    msgs = load(write(tmp_path, lines_of(SNAP, trade(1100, "100.0", "1", "Sell"))))
    assert msgs[1].side == -1


def test_simplified_shape_gets_default_or_given_symbol(tmp_path):
    objs = [{"type": "snapshot", "ts": 5, "data": {"b": [["10", "1"]], "a": [["11", "1"]]}},
            {"type": "delta", "ts": 6, "data": {"b": [["10", "2"]], "a": []}}]
    p = write(tmp_path, lines_of(*objs))
    msgs = load(p)
    assert [m.symbol for m in msgs] == [dp.DEFAULT_SYMBOL] * 2
    assert msgs[0].update_id is None and msgs[1].bids == [(10, 2.0)]
    assert {m.symbol for m in load(p, symbol="XYZ")} == {"XYZ"}


@pytest.mark.parametrize("compression", ["gzip", "zstd", "zip", "bz2"])
def test_compressed_inputs_equal_plain(tmp_path, compression):
    data = lines_of(*good_stream())
    if compression == "gzip":
        raw = gzip.compress(data)
    elif compression == "bz2":
        import bz2

        raw = bz2.compress(data)
    elif compression == "zstd":
        import zstandard

        raw = zstandard.ZstdCompressor().compress(data)
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("2024-01-01_BTCUSDT_ob200.data", data)
        raw = buf.getvalue()
    plain = load(write(tmp_path, data, "plain.data"))
    packed = load(write(tmp_path, raw, "packed.bin"))  # detected from content, not from the name
    assert packed == plain


def test_zip_with_two_members_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.data", lines_of(SNAP))
        zf.writestr("b.data", lines_of(SNAP))
    with pytest.raises(DataFormatError, match="exactly one"):
        load(write(tmp_path, buf.getvalue(), "x.zip"))


def test_several_symbols_refused_with_list(tmp_path):
    objs = [SNAP, snap(1000, 7, [["5", "1"]], [["6", "1"]], s="ETHUSDT"),
            snap(1000, 9, [["5", "1"]], [["6", "1"]], s="SOLUSDT")]
    p = write(tmp_path, lines_of(*objs))
    with pytest.raises(DataFormatError, match=r"BTCUSDT, ETHUSDT, SOLUSDT") as e:
        load(p)
    assert e.value.line == 2
    assert [m.symbol for m in load(p, symbol="ETHUSDT")] == ["ETHUSDT"]


def test_deterministic(tmp_path):
    p = write(tmp_path, lines_of(*good_stream()))
    assert load(p) == load(p)


# --------------------------------------------------------------------- errors one by one

BAD = [
    # (name, lines, bad 1-based line, reason regex)
    ("malformed JSON", [SNAP, b'{"topic": "orderbook.50.BTCUSDT", "type": ', delta(1100, 2, [], [])], 2, "malformed JSON"),
    ("not an object", [SNAP, b"[1, 2, 3]"], 2, "not a JSON object"),
    ("missing field", [SNAP, {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1100,
                              "data": {"s": "BTCUSDT", "b": [], "u": 2}}], 2, "missing field 'a'"),
    ("missing ts", [SNAP, {"topic": "orderbook.50.BTCUSDT", "type": "delta",
                           "data": {"s": "BTCUSDT", "b": [], "a": [], "u": 2}}], 2, "missing field 'ts'"),
    ("unknown type", [SNAP, {**delta(1100, 2, [], []), "type": "update"}], 2, "unknown message type 'update'"),
    ("topic not a string", [SNAP, {"topic": ["orderbook.50.BTCUSDT"], "type": "delta", "ts": 1100,
                                    "data": {"s": "BTCUSDT", "b": [], "a": [], "u": 2}}], 2, "'topic' is not a string"),
    ("unknown topic", [SNAP, {"topic": "weird.BTCUSDT", "type": "snapshot", "ts": 1, "data": {}}], 2, "unknown message type"),
    ("non-numeric price", [SNAP, delta(1100, 2, [["abc", "1"]], [])], 2, "price 'abc' in 'b' is not a decimal string"),
    ("non-numeric size", [SNAP, delta(1100, 2, [["99.0", "x"]], [])], 2, "size 'x' in 'b' is not a decimal string"),
    ("NaN price", [SNAP, delta(1100, 2, [], [["NaN", "1"]])], 2, "price 'NaN' in 'a' is not a decimal string"),
    ("NaN size", [SNAP, delta(1100, 2, [["99.0", "nan"]], [])], 2, "size 'nan' in 'b' is not a decimal string"),
    ("negative price", [SNAP, delta(1100, 2, [["-99.0", "1"]], [])], 2, "negative price '-99.0'"),
    ("negative size", [SNAP, delta(1100, 2, [["99.0", "-1"]], [])], 2, "negative size '-1'"),
    ("off tick grid", [SNAP, delta(1100, 2, [["99.05", "1"]], [])], 2, "off the tick grid"),
    ("bad trade price", [SNAP, trade(1100, "1e400", "1")], 2, "price"),
    ("bad trade side", [SNAP, trade(1100, "100.0", "1", side="Hold")], 2, "side"),
    ("delta before snapshot", [delta(1100, 2, [], []), SNAP], 1, "delta before any snapshot"),
    ("gap", [SNAP, delta(1100, 2, [], []), delta(1200, 4, [], [])], 3, r"gap in update ids.*u=4 after 2"),
    ("time backwards", [SNAP, delta(1100, 2, [], []), delta(1050, 3, [], [])], 3, "timestamp goes backwards"),
    ("crossed", [SNAP, delta(1100, 2, [["100.5", "1"]], [])], 2, "crossed"),
    ("crossed snapshot", [snap(1000, 1, [["101", "1"]], [["100", "1"]])], 1, "crossed"),
]


def run_mode(path, mode, **kw):
    """The messages of ``path`` read one of three ways (errors must not depend on the way):
    ``light``: load_messages alone (its own light book checks crossing); ``book``: with the
    caller's OrderBook (``book=``); ``replay``: ``replay()``. Returns (messages, book)."""
    if mode == "light":
        msgs = load(path, **kw)
        book = OrderBook()
        for m in msgs:
            book.apply(m)
        return msgs, book
    if mode == "book":
        book = OrderBook("BTCUSDT", 0.1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matching tick: no warning
            return list(load_messages(path, book=book, tick_size=0.1, **kw)), book
    pairs = list(dp.replay(path, **kw))
    assert len({id(b) for _, b in pairs}) <= 1  # one book throughout
    return [m for m, _ in pairs], (pairs[-1][1] if pairs else None)


MODES = ["light", "book", "replay"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,objs,line,reason", BAD, ids=[b[0] for b in BAD])
def test_each_bad_input_names_file_and_line(tmp_path, name, objs, line, reason, mode):
    p = write(tmp_path, lines_of(*objs))
    with pytest.raises(DataFormatError, match=reason) as e:
        if mode == "light":
            load(p)
        else:
            run_mode(p, mode)
    err = e.value
    assert isinstance(err, ValueError)
    assert (err.path, err.line) == (str(p), line)
    assert str(err).startswith(f"{p}:{line}: ")


def test_empty_file(tmp_path):
    p = write(tmp_path, b"")
    with pytest.raises(DataFormatError, match="empty file") as e:
        load(p)
    assert e.value.line is None and str(e.value) == f"{p}: empty file"
    with pytest.raises(DataFormatError, match="empty file"):
        load(write(tmp_path, b"\n\n  \n", "blank.jsonl"))


def test_truncated_last_line(tmp_path):
    data = lines_of(*good_stream()) + b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":13'
    p = write(tmp_path, data)
    with pytest.raises(DataFormatError, match="truncated last line") as e:
        load(p)
    assert e.value.line == 5
    # a complete last line without a newline is fine
    assert len(load(write(tmp_path, lines_of(*good_stream())[:-1], "ok.jsonl"))) == 4


def test_truncated_single_line_file(tmp_path):
    with pytest.raises(DataFormatError, match="truncated last line") as e:
        load(write(tmp_path, b'{"topic":"orderbook.50.BTC'))
    assert e.value.line == 1


def test_binance_gap_in_pu_chain(tmp_path):
    snap_line = b'1000 {"lastUpdateId":100,"E":5,"T":5,"bids":[["10.0","1"]],"asks":[["11.0","1"]]}'

    def diff(U, u, pu, T):
        return (f'2000 {{"stream":"x@depth","data":{{"e":"depthUpdate","E":{T},"T":{T},"s":"XUSDT",'
                f'"U":{U},"u":{u},"pu":{pu},"b":[["10.0","2"]],"a":[]}}}}').encode()

    ok = [diff(90, 95, 89, 4), snap_line, diff(96, 105, 95, 6), diff(106, 110, 105, 7)]
    msgs = load(write(tmp_path, lines_of(*ok)))
    assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "DeltaMessage", "DeltaMessage"]
    assert msgs[0].symbol == "XUSDT" and [m.update_id for m in msgs] == [100, 105, 110]
    bad = [*ok[:3], diff(107, 110, 106, 7)]
    with pytest.raises(DataFormatError, match=r"pu=106 but the previous diff had u=105") as e:
        load(write(tmp_path, lines_of(*bad), "bad.jsonl"))
    assert e.value.line == 4
    straddle = [snap_line, diff(102, 105, 101, 6)]  # first diff must have U <= 100 <= u
    with pytest.raises(DataFormatError, match="does not cover lastUpdateId 100"):
        load(write(tmp_path, lines_of(*straddle), "straddle.jsonl"))



def test_binance_trade_before_snapshot_with_tick_size_keeps_buffering(tmp_path):
    # Regression: with tick_size= a trade before the REST snapshot created the symbol's state,
    # and the diffs after it were dropped instead of buffered, so the snapshot's covering diff
    # was lost ("first diff after the snapshot ... does not cover lastUpdateId").
    snap_line = b'1000 {"lastUpdateId":100,"E":5,"T":5,"bids":[["10.0","1"]],"asks":[["11.0","1"]]}'
    trade = (b'900 {"stream":"x@trade","data":{"e":"trade","E":3,"T":3,"s":"XUSDT","t":1,'
             b'"p":"10.5","q":"0.1","m":true}}')

    def diff(U, u, pu, T):
        return (f'2000 {{"stream":"x@depth","data":{{"e":"depthUpdate","E":{T},"T":{T},"s":"XUSDT",'
                f'"U":{U},"u":{u},"pu":{pu},"b":[["10.0","2"]],"a":[]}}}}').encode()

    p = write(tmp_path, lines_of(trade, diff(90, 95, 89, 4), diff(96, 105, 95, 6), snap_line, diff(106, 110, 105, 7)))
    for tick in (None, 0.1):
        msgs = load(p, tick_size=tick)
        book = [m for m in msgs if type(m) is not TradeMessage]
        assert [(type(m).__name__, m.update_id) for m in book] == [
            ("SnapshotMessage", 100), ("DeltaMessage", 105), ("DeltaMessage", 110)]
        # the trade before the snapshot is kept only when the tick size is known
        assert sum(type(m) is TradeMessage for m in msgs) == (1 if tick else 0)


def test_binance_book_ticker_lines_skipped_unparsed_unless_include_bbo(tmp_path):
    snap_line = b'1000 {"lastUpdateId":100,"E":5,"T":5,"bids":[["10.0","1"]],"asks":[["11.0","1"]]}'
    diff = (b'2000 {"stream":"x@depth","data":{"e":"depthUpdate","E":6,"T":6,"s":"XUSDT",'
            b'"U":96,"u":105,"pu":95,"b":[["10.0","2"]],"a":[]}}')
    bbo = (b'3000 {"stream":"x@bookTicker","data":{"e":"bookTicker","u":105,"s":"XUSDT",'
           b'"b":"10.0","B":"2","a":"11.0","A":"1","T":6,"E":6}}')
    p = write(tmp_path, lines_of(diff, snap_line, bbo, diff.replace(b'"U":96,"u":105,"pu":95', b'"U":106,"u":107,"pu":105'), bbo))
    rep = LoadReport()
    msgs = list(load_messages(p, report=rep))
    assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "DeltaMessage", "DeltaMessage"]
    assert rep.ignored_lines == 2 and rep.lines == 5
    with_bbo = list(load_messages(p, include_bbo=True))
    assert [type(m).__name__ for m in with_bbo].count("BookTickerMessage") == 2
    # a truncated last bookTicker line is still refused, not skipped
    q = write(tmp_path, lines_of(diff, snap_line) + bbo[:40], "trunc.jsonl")
    with pytest.raises(DataFormatError, match="truncated last line") as e:
        load(q)
    assert e.value.line == 3

def test_binance_real_file_with_tick_size_equals_inferred(shared_data):
    path = shared_data / BINANCE / "btcusdt_20240808.gz"
    with_tick = [m for m in load_messages(path, tick_size=0.1) if type(m) is not TradeMessage]
    inferred = [m for m in load_messages(path) if type(m) is not TradeMessage]
    assert len(with_tick) == len(inferred) == 6548
    assert with_tick == inferred

# ----------------------------------------------------- one book per replay (book=, replay)


def random_changes(rng: random.Random, bids: dict, asks: dict) -> tuple[dict, dict]:
    """Level changes of one delta near the top of a (bids, asks) model; may move the market."""
    bb = max(bids) if bids else None
    ba = min(asks) if asks else None
    db: dict[int, int] = {}
    da: dict[int, int] = {}
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5 and bids:
            t = rng.choice([*bids, bb - rng.randint(1, 4)])
            db[t] = 0 if (t in bids and rng.random() < 0.4 and len(bids) > 1) else rng.randint(1, 9)
        elif asks:
            t = rng.choice([*asks, ba + rng.randint(1, 4)])
            da[t] = 0 if (t in asks and rng.random() < 0.4 and len(asks) > 1) else rng.randint(1, 9)
    move = rng.random()
    gap = bb is not None and ba is not None and ba - bb > 1
    if move < 0.15 and gap:  # improve the bid
        db[rng.randint(bb + 1, ba - 1)] = rng.randint(1, 9)
    elif move < 0.3 and gap:  # improve the ask
        da[rng.randint(bb + 1, ba - 1)] = rng.randint(1, 9)
    elif move < 0.45 and len(bids) > 1:  # the best bid leaves
        db[bb] = 0
    elif move < 0.6 and len(asks) > 1:  # the best ask leaves
        da[ba] = 0
    return db, da


def random_stream(seed: int, n: int = 300, p_cross: float = 0.01, p_bad: float = 0.0) -> list:
    """A Bybit stream (tick 0.1) whose market drifts both ways, with trades, occasional
    snapshots, crossing deltas (probability ``p_cross``) and, with ``p_bad``, gaps, bad
    values and broken lines."""
    rng = random.Random(seed)
    bids = {1000 - i: rng.randint(1, 9) for i in range(1, 6)}
    asks = {1000 + i: rng.randint(1, 9) for i in range(0, 5)}

    def px(t):
        return f"{t / 10:.1f}"

    def levels(d):
        return [[px(t), str(q)] for t, q in d.items()]

    out = [snap(0, 1, levels(bids), levels(asks))]
    u, ts = 1, 0
    for _ in range(n):
        ts += rng.randint(0, 50)
        r = rng.random()
        if r < 0.05:
            out.append(trade(ts, px(max(bids) if bids else 1000), "0.5", rng.choice(["Buy", "Sell"])))
            continue
        u += 1
        if r < 0.08:  # a fresh snapshot
            mid = rng.randint(900, 1100)
            bids = {mid - i: rng.randint(1, 9) for i in range(1, 6)}
            asks = {mid + i: rng.randint(1, 9) for i in range(0, 5)}
            out.append(snap(ts, u, levels(bids), levels(asks)))
            continue
        db, da = random_changes(rng, bids, asks)
        if db and da and max(db) >= min(da):
            continue  # keep the generated market uncrossed unless asked below
        nb = {**bids, **db}
        na = {**asks, **da}
        nb = {t: q for t, q in nb.items() if q}
        na = {t: q for t, q in na.items() if q}
        if nb and na and max(nb) >= min(na):
            continue
        if rng.random() < p_cross and na:
            db[min(na) + rng.randint(0, 2)] = 1  # crosses (or locks) the book
        elif rng.random() < p_bad:
            kind = rng.randrange(4)
            if kind == 0:
                u += 1  # gap
            elif kind == 1:
                db[max(bids) if bids else 999] = -1  # bad size: the size text is "-1"
            elif kind == 2:
                out.append(b"{broken")
            else:
                ts -= 100  # time backwards
        else:
            bids, asks = nb, na
        out.append(delta(ts, u, [[px(t), str(q)] for t, q in db.items()],
                         [[px(t), str(q)] for t, q in da.items()]))
    return out


def collect(path, mode, **kw):
    """(messages, books after each book message, error) of one way of reading ``path``."""
    msgs: list = []
    books: list = []
    err = None
    ref = OrderBook()
    try:
        if mode == "light":
            for m in load_messages(path, **kw):
                msgs.append(m)
                ref.apply(m)
                if type(m) is not TradeMessage:
                    books.append((dict(ref.bids), dict(ref.asks)))
        else:
            book = OrderBook("BTCUSDT", 0.1)
            it = load_messages(path, book=book, **kw) if mode == "book" else dp.replay(path, **kw)
            for x in it:
                m, bk = (x, book) if mode == "book" else x
                msgs.append(m)
                if type(m) is not TradeMessage:
                    books.append((dict(bk.bids), dict(bk.asks)))
    except DataFormatError as e:
        err = (e.path, e.line, e.reason)
    return msgs, books, err


@pytest.mark.parametrize("seed", range(12))
def test_one_book_modes_equal_on_random_streams(tmp_path, seed):
    """The caller's book (book=, replay) gives the same messages, errors and book states as
    load_messages + a separate OrderBook; raise mode (crossings) and skip mode (all problems)."""
    p = write(tmp_path, lines_of(*random_stream(seed, p_cross=0.004)))
    light = collect(p, "light")
    assert collect(p, "book") == light
    assert collect(p, "replay") == light
    p = write(tmp_path, lines_of(*random_stream(seed, p_cross=0.03, p_bad=0.03)), "bad.jsonl")
    reports = []
    for mode in MODES:
        rep = LoadReport()
        got = collect(p, mode, on_error="skip", report=rep)
        reports.append(rep)
        assert got[0] == collect(p, "light", on_error="skip")[0] and got[2] is None
        if mode != "light":  # the book after every yielded book message equals the reference
            assert got[1] == collect(p, "light", on_error="skip")[1]
    assert reports[0] == reports[1] == reports[2]


def test_random_streams_exercise_every_path(tmp_path):
    """The streams above do meet crossings (raise) and every problem kind (skip)."""
    errors = [collect(write(tmp_path, lines_of(*random_stream(s, p_cross=0.004)), f"{s}.jsonl"), "light")[2]
              for s in range(12)]
    assert any(e is not None and "crossed" in e[2] for e in errors)
    assert any(e is None for e in errors)
    rep = LoadReport()
    for s in range(12):
        load(write(tmp_path, lines_of(*random_stream(s, p_cross=0.03, p_bad=0.03)), f"b{s}.jsonl"),
             on_error="skip", report=rep)
    assert {"crossed", "gap", "bad value", "malformed JSON", "time backwards"} <= set(rep.problems)


def test_crossing_bounds_are_conservative(tmp_path):
    """The best bid leaves, then an ask comes in at its old price: not crossed (the fast
    check's stale bound meets the ask, the exact check on the book clears it)."""
    objs = [SNAP, delta(1100, 2, [["100.0", "0"]], []), delta(1200, 3, [], [["100.0", "2"]]),
            delta(1300, 4, [["99.5", "0"]], [["99.5", "1"]])]  # 99.5: locked only if 99.5 bid remained
    for mode in MODES:
        msgs, book = run_mode(write(tmp_path, lines_of(*objs)), mode)
        assert len(msgs) == 4 and book.best_bid() is None and book.best_ask() == (995, 1.0)
    with pytest.raises(DataFormatError, match=r":3: book of BTCUSDT is crossed.*best bid 995 >= best ask 995"):
        run_mode(write(tmp_path, lines_of(*objs[:2], delta(1200, 3, [], [["99.5", "2"]]))), "replay")


def test_book_mode_skip_crossing_keeps_waiting_for_snapshot(tmp_path):
    objs = [SNAP, delta(1100, 2, [["101.0", "1"]], []), delta(1200, 3, [["99.0", "1"]], []),
            trade(1250, "100.5", "1"), snap(1300, 9, [["99.0", "1"]], [["99.5", "1"]]),
            delta(1400, 10, [["98.5", "1"]], [])]
    rep = LoadReport()
    book = OrderBook("BTCUSDT", 0.1)
    msgs = list(load_messages(write(tmp_path, lines_of(*objs)), on_error="skip", report=rep, book=book))
    assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "TradeMessage", "SnapshotMessage", "DeltaMessage"]
    assert rep.problems == {"crossed": 1} and rep.dropped_deltas == 1
    assert rep.messages == {"snapshot": 2, "delta": 1, "trade": 1}
    assert dict(book.bids) == {990: 1.0, 985: 1.0} and dict(book.asks) == {995: 1.0}
    assert book.update_id == 10 and book.n_applied == 4  # the refused delta was applied, then replaced


def test_replay_book_has_symbol_and_tick(tmp_path):
    pairs = list(dp.replay(write(tmp_path, lines_of(*good_stream()))))
    book = pairs[0][1]
    assert (book.symbol, book.tick_size) == ("BTCUSDT", 0.1)
    assert [getattr(m, "update_id", None) for m, _ in pairs] == [1, 2, None, 3]
    assert book.best_bid() == (995, 2.0) and book.best_ask() == (1005, 2.0) and book.size_at(1, 990) == 4.0
    assert book.best_bid_price() == (99.5, 2.0)


def test_book_with_other_tick_warns(tmp_path):
    with pytest.warns(UserWarning, match="tick_size 1.0 but BTCUSDT has tick size 0.1"):
        msgs = list(load_messages(write(tmp_path, lines_of(*good_stream())), book=OrderBook()))
    assert len(msgs) == 4


def test_report_complete_when_iteration_stops_early(tmp_path):
    p = write(tmp_path, lines_of(*good_stream(), delta(1300, 4, [], []), delta(1400, 5, [], [])))
    rep = LoadReport()
    it = load_messages(p, report=rep)
    assert [type(next(it)).__name__ for _ in range(3)] == ["SnapshotMessage", "DeltaMessage", "TradeMessage"]
    del it  # the generator of the file is finalised: its counts reach the report
    gc.collect()
    assert rep.messages == {"snapshot": 1, "delta": 1, "trade": 1} and rep.lines == 3
    full = LoadReport()
    load(p, report=full)
    assert full.messages == {"snapshot": 1, "delta": 4, "trade": 1} and full.lines == 6


# --------------------------------------------------------------------------- skip mode


def test_skip_mode_drops_deltas_until_next_snapshot(tmp_path):
    objs = [
        SNAP,
        delta(1100, 2, [["99.0", "1"]], []),
        delta(1200, 4, [["98.0", "1"]], []),  # gap: 3 missing
        delta(1300, 5, [["97.0", "1"]], []),  # after the gap: dropped
        b"not json",
        snap(1400, 10, [["100.0", "5"]], [["100.5", "5"]]),
        delta(1500, 11, [["99.5", "1"]], []),
        delta(1600, 12, [["-1", "1"]], []),  # bad value: dropped, book waits again
        delta(1700, 13, [["99.0", "1"]], []),  # dropped
    ]
    rep = LoadReport()
    msgs = load(write(tmp_path, lines_of(*objs)), on_error="skip", report=rep)
    assert [m.update_id for m in msgs] == [1, 2, 10, 11]
    assert rep.problems == {"gap": 1, "malformed JSON": 1, "bad value": 1}
    assert rep.dropped_deltas == 2
    assert rep.n_problems == 3 and len(rep.examples) == 3
    assert rep.examples[0].startswith(f"{tmp_path / 'f.jsonl'}:3: gap")
    assert "problems: bad value=1, gap=1, malformed JSON=1" in rep.summary()


def test_skip_mode_logs_every_problem_and_summary(tmp_path, caplog):
    objs = [SNAP, delta(1100, 3, [], []), b"[1]"]
    with caplog.at_level("WARNING", logger="data_processor"):
        load(write(tmp_path, lines_of(*objs)), on_error="skip")
    text = caplog.text
    assert ":2: gap" in text and ":3: line is not a JSON object" in text and "problems:" in text


def test_skip_mode_unnumbered_stream_waits_after_lost_line(tmp_path):
    objs = [{"type": "snapshot", "ts": 5, "data": {"b": [["10", "1"]], "a": [["11", "1"]]}},
            b"{broken", {"type": "delta", "ts": 6, "data": {"b": [["10", "2"]], "a": []}}]
    rep = LoadReport()
    msgs = load(write(tmp_path, lines_of(*objs)), on_error="skip", report=rep)
    assert len(msgs) == 1 and rep.dropped_deltas == 1


def test_bad_on_error_value(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load(write(tmp_path, lines_of(SNAP)), on_error="ignore")


# ------------------------------------------------------------------------- real files


def test_bybit_daily_ob500(shared_data):
    msgs = load(shared_data / BYBIT_XRP)
    assert [type(m) for m in msgs] == [SnapshotMessage] + [DeltaMessage] * 49
    assert msgs[0].tick_size == 0.0001 and len(msgs[0].bids) == 500 and len(msgs[0].asks) == 500
    assert [m.update_id for m in msgs] == list(range(20254869, 20254919))
    book = OrderBook("XRPUSDT", 0.0001)
    for m in msgs:
        book.apply(m)
    assert book.best_bid()[0] == 19537 and book.best_ask()[0] == 19538


@pytest.mark.parametrize("name,symbol,n_delta,n_trade,tick,bbo", [
    (BYBIT_LINEAR, "BTCUSDT", 413, 56, 0.1, (651142, 651143)),
    (BYBIT_LINEAR, "DOGEUSDT", 379, 83, 0.00001, (7055, 7056)),
    (BYBIT_SPOT, "ETHUSDT", 249, 9, 0.01, (192328, 192329)),
    (BYBIT_ZST, "linear:SOLUSDT", 382, 165, 0.01, (7726, 7727)),
    (BYBIT_ZST, "spot:BTCUSDT", 299, 11, 0.1, (651404, 651405)),
])
def test_bybit_ws_recordings(shared_data, name, symbol, n_delta, n_trade, tick, bbo):
    msgs = load(shared_data / name, symbol=symbol)
    kinds = [type(m) for m in msgs]
    assert kinds.count(SnapshotMessage) == 1 and kinds[0] is SnapshotMessage
    assert kinds.count(DeltaMessage) == n_delta and kinds.count(TradeMessage) == n_trade
    assert {m.symbol for m in msgs} == {symbol} and msgs[0].tick_size == tick
    book = OrderBook(symbol, tick)
    for m in msgs:
        book.apply(m)
    assert (book.best_bid()[0], book.best_ask()[0]) == bbo


@pytest.mark.parametrize("names,symbol", [
    ([BYBIT_XRP], None),
    ([BYBIT_LINEAR], "DOGEUSDT"),
    ([BYBIT_ZST], "linear:SOLUSDT"),
    ([f"{BINANCE}/btcusdt_20240718.gz", f"{BINANCE}/btcusdt_20240719.gz"], "BTCUSDT"),
])
def test_replay_one_book_equals_load_and_apply_on_real_files(shared_data, names, symbol):
    """replay(): same messages, and the same best bid/ask after every book message, as
    load_messages + a separate OrderBook (Bybit fast loop, cryptofeed and Binance general path)."""
    paths = [shared_data / n for n in names]
    ref = OrderBook()
    expected = []
    for m in load_messages(paths, symbol=symbol):
        ref.apply(m)
        expected.append((m, ref.best_bid(), ref.best_ask()))
    got = [(m, b.best_bid(), b.best_ask()) for m, b in dp.replay(paths, symbol=symbol)]
    assert got == expected and len(got) > 40
    kinds = {type(m).__name__ for m, _, _ in got}
    assert {"SnapshotMessage", "DeltaMessage"} <= kinds


def test_cryptofeed_capture_equals_derived_file(shared_data):
    """The raw capture's linear BTCUSDT equals the derived jsonl, plus receive times."""
    wrapped = load(shared_data / BYBIT_ZST, symbol="linear:BTCUSDT")
    derived = load(shared_data / BYBIT_LINEAR, symbol="BTCUSDT")
    assert len(wrapped) == len(derived)
    for w, d in zip(wrapped, derived, strict=True):
        assert w.local_ts is not None and d.local_ts is None
        w.symbol, w.local_ts = d.symbol, None
        assert w == d


def test_binance_split_recording_read_as_one(shared_data):
    paths = [shared_data / BINANCE / "btcusdt_20240718.gz", shared_data / BINANCE / "btcusdt_20240719.gz"]
    rep = LoadReport()
    n = {"SnapshotMessage": 0, "DeltaMessage": 0, "TradeMessage": 0}
    prev_u = None
    for m in load_messages(paths, report=rep):
        n[type(m).__name__] += 1
        if type(m) is DeltaMessage:
            assert prev_u is not None
            prev_u = m.update_id
        elif type(m) is SnapshotMessage:
            assert m.update_id == 4984028384061 and len(m.bids) == 1000 and m.tick_size == 0.1
            prev_u = m.update_id
    assert n == {"SnapshotMessage": 1, "DeltaMessage": 9017, "TradeMessage": 10701}
    assert rep.n_problems == 0
    with pytest.raises(DataFormatError, match="no REST snapshot") as e:
        load(paths[1])
    assert e.value.line == 1


def test_binance_book_ticker_confirms_book(shared_data):
    path = shared_data / BINANCE / "ethusdt_20240718.gz"
    book = None
    by_u = {}
    tickers = []
    for m in load_messages(path, include_bbo=True):
        if type(m) is BookTickerMessage:
            tickers.append(m)
            continue
        if book is None:
            book = OrderBook(m.symbol, m.tick_size)
        book.apply(m)
        if type(m) is DeltaMessage:
            by_u[m.update_id] = (book.best_bid(), book.best_ask())
    checked = 0
    for t in tickers:
        if t.update_id in by_u:
            assert by_u[t.update_id] == ((t.bid_price, t.bid_size), (t.ask_price, t.ask_size))
            checked += 1
    assert checked > 100


# ------------------------------------------------------------------------------ Replay


def _full_replay(paths, symbol, t):
    book = None
    rest = []
    for m in load_messages(paths, symbol):
        if isinstance(m, SnapshotMessage | DeltaMessage) and m.ts <= t:
            if book is None:
                book = OrderBook(m.symbol, m.tick_size)
            book.apply(m)
        elif m.ts > t:
            rest.append(m)
    return book, rest


def _check_start_at(replay, paths, symbol, times):
    for t in times:
        book, it = replay.start_at(t)
        ref, rest = _full_replay(paths, symbol, t)
        if ref is None:
            assert len(book) == 0
        else:
            assert dict(book.bids) == dict(ref.bids) and dict(book.asks) == dict(ref.asks), t
        assert list(it) == rest, t


@pytest.mark.parametrize("name,symbol", [(BYBIT_LINEAR, "ETHUSDT"), (BYBIT_ZST, "spot:BTCUSDT")])
def test_replay_start_at_equals_full_replay(shared_data, tmp_path, name, symbol):
    path = shared_data / name
    r = Replay(path, symbol, checkpoint_interval_ms=5_000, cache_dir=tmp_path)
    assert len(r.checkpoint_ts) >= 8 and r.snapshot_ts == [r.start_ts]
    rng = random.Random(7)
    times = [r.start_ts - 1, r.start_ts, r.end_ts, *r.checkpoint_ts[3:5]]
    times += [rng.randint(r.start_ts, r.end_ts) for _ in range(4)]
    _check_start_at(r, path, symbol, times)


@pytest.mark.slow
def test_replay_binance_split_recording(shared_data, tmp_path):
    paths = [shared_data / BINANCE / "ethusdt_20240718.gz", shared_data / BINANCE / "ethusdt_20240719.gz"]
    r = Replay(paths, checkpoint_interval_ms=60_000, cache_dir=tmp_path)
    assert r.symbol == "ETHUSDT" and r.tick_size == 0.01
    rng = random.Random(3)
    _check_start_at(r, paths, None, [r.start_ts, rng.randint(r.start_ts, r.end_ts), r.end_ts - 1000])


def _bybit_file(n, seed, u0=1):
    rng = random.Random(seed)
    objs = [snap(1000, u0, [[f"{100 - i * 0.5:.1f}", "1"] for i in range(30)],
                 [[f"{100.5 + i * 0.5:.1f}", "1"] for i in range(30)])]
    for k in range(1, n):
        side = rng.choice(["b", "a"])
        px = 100 - rng.randint(1, 20) * 0.5 if side == "b" else 100.5 + rng.randint(1, 20) * 0.5
        lv = [[f"{px:.1f}", str(rng.choice([0, 1, 2, 3]))]]
        objs.append(delta(1000 + 100 * k, u0 + k, lv if side == "b" else [], lv if side == "a" else []))
        if k % 7 == 0:
            objs.append(trade(1000 + 100 * k + 50, "100.0", "0.5", "Sell"))
    return lines_of(*objs)


def test_replay_cache_reused_and_rebuilt_when_source_changes(tmp_path):
    p = write(tmp_path, _bybit_file(400, 1), "data.jsonl")
    cache = tmp_path / "cache"
    r = Replay(p, checkpoint_interval_ms=2_000, cache_dir=cache)
    jsons = list(cache.glob("*.replay.json"))
    assert len(jsons) == 1
    stamp = jsons[0].stat().st_mtime_ns
    r2 = Replay(p, checkpoint_interval_ms=2_000, cache_dir=cache)
    assert jsons[0].stat().st_mtime_ns == stamp and r2.checkpoint_ts == r.checkpoint_ts
    rng = random.Random(11)
    _check_start_at(r2, p, None, [rng.randint(r.start_ts, r.end_ts) for _ in range(4)])
    # the file changes (new content, same length class): the cache is rebuilt and stays exact
    p.write_bytes(_bybit_file(500, 2, u0=50))
    os.utime(p, ns=(stamp + 10**9, stamp + 10**9))
    r3 = Replay(p, checkpoint_interval_ms=2_000, cache_dir=cache)
    assert r3.end_ts == 1000 + 100 * 499 and jsons[0].stat().st_mtime_ns != stamp
    _check_start_at(r3, p, None, [rng.randint(r3.start_ts, r3.end_ts) for _ in range(4)])



def test_replay_default_cache_is_per_user_and_data_folder_may_be_read_only(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    p = write(data, gzip.compress(_bybit_file(200, 5)), "ro.jsonl.gz")
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("RLMM_CACHE_DIR", str(cache))
    os.chmod(data, 0o555)
    try:
        r = Replay(p, checkpoint_interval_ms=3_000)
        assert r.cache_dir == cache and dp.default_cache_dir() == cache
        assert sorted(x.name for x in data.iterdir()) == ["ro.jsonl.gz"]  # nothing written beside the data
        assert r.plain[0].parent == cache and len(list(cache.glob("*.replay.json"))) == 1
        _check_start_at(r, p, None, [r.start_ts + 4_321, r.end_ts - 1])
        # the same file reached by another path spelling shares the entry (absolute path key)
        r2 = Replay(data / ".." / "data" / "ro.jsonl.gz", checkpoint_interval_ms=3_000)
        assert r2.checkpoint_ts == r.checkpoint_ts and len(list(cache.glob("*.replay.json"))) == 1
    finally:
        os.chmod(data, 0o755)
    monkeypatch.delenv("RLMM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dp.default_cache_dir() == tmp_path / "xdg" / "rlmm"

def test_replay_compressed_source_uses_plain_copy(tmp_path):
    p = write(tmp_path, gzip.compress(_bybit_file(200, 4)), "data.jsonl.gz")
    r = Replay(p, checkpoint_interval_ms=3_000, cache_dir=tmp_path / "c")
    assert r.plain[0].suffix == ".plain" and r.plain[0].parent == tmp_path / "c"
    _check_start_at(r, p, None, [r.start_ts + 7_777, r.end_ts - 1])


# ------------------------------------------------------------------- a venue plugged in


class ToyFeed(Feed):
    """A made-up venue (``TOY <kind> <ts> ...`` lines), written like a module of ``feeds/``."""

    name = "toy"

    @staticmethod
    def detect(first_line, obj):
        return first_line.startswith(b"TOY ")

    def parse(self, raw):
        r = self.reader
        kind, ts, *rest = raw.decode().split()[1:]
        if not r.want("TOYUSD"):
            return []
        if kind in ("snap", "delta"):
            bid, bsz, ask, asz = rest
            msg = r.book_message(kind == "snap", "TOYUSD", int(ts), [[bid, bsz]], [[ask, asz]],
                                 None, None, None, "u")
            return [] if msg is None else [msg]
        if kind == "trade":
            return [r.trade("TOYUSD", int(ts), rest[0], rest[1], rest[2], None, None)]
        raise Problem("unknown message type", f"unknown toy record {kind!r}")


def test_a_new_venue_is_one_class_and_one_registration(tmp_path, monkeypatch):
    import feeds

    monkeypatch.setattr(feeds, "FEEDS", (ToyFeed, *feeds.FEEDS))
    p = write(tmp_path, b"TOY snap 1000 100.0 1 100.5 2\nTOY delta 1100 100.0 0 100.5 3\n"
              b"TOY trade 1150 100.5 0.3 Buy\nTOY snap 1200 100.5 1 100.5 1\n", "toy.txt")
    rep = LoadReport()
    msgs = list(load_messages(p, on_error="skip", report=rep))
    assert [type(m) for m in msgs] == [SnapshotMessage, DeltaMessage, TradeMessage]
    assert msgs[0].tick_size == 0.1 and msgs[2].price == 1005 and msgs[2].side == 1
    assert rep.problems == {"crossed": 1}  # the shared book rules apply to the new venue
    with pytest.raises(DataFormatError, match=r"toy.txt:4: book of TOYUSD is crossed"):
        list(load_messages(p))
    r = Replay(p, checkpoint_interval_ms=50, cache_dir=tmp_path / "c", on_error="skip")
    assert r.symbol == "TOYUSD" and r.profile.has_trades and r.profile.median_trade_size == 0.3


# ------------------------------------------------------------------------- DataProfile


def _direct_profile(paths, symbol, n=50_000):
    """The env's former ``_scan_data``, written out again: the reference for ``Replay.profile``."""
    import statistics
    from decimal import Decimal
    from itertools import islice

    trade_sizes, level_sizes = [], []
    seen = 0
    for m in islice(load_messages(paths, symbol=symbol), n):
        seen += 1
        if isinstance(m, TradeMessage):
            trade_sizes.append(m.size)
        elif len(level_sizes) < 5000:
            level_sizes.extend(s for _, s in m.bids[:50] if s > 0)
            level_sizes.extend(s for _, s in m.asks[:50] if s > 0)
    sample = trade_sizes[:5000] + level_sizes[:5000]
    decimals = max((max(0, -Decimal(repr(s)).normalize().as_tuple().exponent) for s in sample), default=0)
    lot = 10.0 ** -min(decimals, 8)
    if trade_sizes:
        median = float(statistics.median(trade_sizes))
    elif level_sizes:
        median = 0.1 * float(statistics.median(level_sizes))
    else:
        median = lot
    return bool(trade_sizes), lot, median, seen


def _check_profile(paths, symbol, cache):
    r = Replay(paths, symbol, cache_dir=cache)
    prof = r.profile
    assert isinstance(prof, dp.DataProfile)
    assert (prof.has_trades, prof.lot_size, prof.median_trade_size, prof.n_messages_scanned) \
        == _direct_profile(paths, symbol)
    assert prof.tick_size == r.tick_size
    again = Replay(paths, symbol, cache_dir=cache)  # read back from the cache file
    assert again.profile == prof
    return prof


@pytest.mark.parametrize("names,symbol,has_trades", [
    ([BYBIT_XRP], None, False),
    ([BYBIT_LINEAR], "DOGEUSDT", True),
    ([BYBIT_ZST], "linear:SOLUSDT", True),
    ([f"{BINANCE}/btcusdt_20240718.gz", f"{BINANCE}/btcusdt_20240719.gz"], "BTCUSDT", True),
])
def test_replay_profile_equals_direct_scan_on_real_files(shared_data, tmp_path, names, symbol, has_trades):
    prof = _check_profile([shared_data / n for n in names], symbol, tmp_path)
    assert prof.has_trades is has_trades


def test_replay_profile_equals_direct_scan_on_synthetic_file(tmp_path):
    """Over 50,000 messages (the cap counts), trades present, sizes on the synthetic lot grid."""
    import synthetic_market

    path = synthetic_market.generate_file(tmp_path / "synth.jsonl", 1.5, 3)  # ~58k messages
    prof = _check_profile(path, None, tmp_path / "cache")
    assert prof.n_messages_scanned == 50_000 and prof.has_trades
    assert prof.lot_size == float(synthetic_market.SyntheticMarketConfig().lot_size)


def test_replay_profile_without_trades_and_frozen(tmp_path):
    p = write(tmp_path, lines_of(SNAP, delta(1100, 2, [["100.0", "0.25"]], [])), "book.jsonl")
    prof = _check_profile(p, None, tmp_path / "cache")
    assert not prof.has_trades and prof.lot_size == 0.01 and prof.n_messages_scanned == 2
    assert prof.median_trade_size == pytest.approx(0.1 * 1.0)
    with pytest.raises(AttributeError):
        prof.lot_size = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------------- CLI


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "data_processor.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_inspect(shared_data):
    res = run_cli("inspect", shared_data / BYBIT_LINEAR)
    assert res.returncode == 0, res.stderr
    for s in ("BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "gaps: 0", "problems: 0"):
        assert s in res.stdout
    res = run_cli("inspect", shared_data / BYBIT_XRP, "--symbol", "XRPUSDT")
    assert res.returncode == 0 and "XRPUSDT" in res.stdout and " 49 " in res.stdout


def test_cli_inspect_reports_problems(tmp_path):
    p = write(tmp_path, lines_of(SNAP, delta(1100, 3, [], [])))
    res = run_cli("inspect", p)
    assert res.returncode == 0 and "gaps: 1" in res.stdout and ":2: gap" in res.stdout


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_cli_export(tmp_path, suffix):
    import pandas as pd

    src = write(tmp_path, _bybit_file(100, 5))
    out = tmp_path / f"top.{suffix}"
    res = run_cli("export", src, "--depth", 3, "--out", out, "--every", "1s")
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
    assert list(df.columns) == ["ts"] + [f"{s}_{k}_{i}" for s in ("bid", "ask")
                                         for i in range(1, 4) for k in ("price", "size")]
    assert df["ts"].tolist() == list(range(1000, 1000 + 100 * 99 + 1, 1000))
    assert df.loc[0, "bid_price_1"] == 100.0 and df.loc[0, "ask_price_1"] == 100.5
    assert (df["bid_price_1"] < df["ask_price_1"]).all()


def test_cli_export_every_message(tmp_path):
    import pandas as pd

    src = write(tmp_path, lines_of(*good_stream()))
    out = tmp_path / "all.csv"
    assert run_cli("export", src, "--depth", 1, "--out", out).returncode == 0
    df = pd.read_csv(out)
    assert df["ts"].tolist() == [1000, 1100, 1200]
    assert df["bid_price_1"].tolist() == [100.0, 99.5, 99.5]


@pytest.mark.parametrize("args", [
    ["inspect", "/no/such/file.jsonl"],
    ["export", "/no/such/file.jsonl", "--out", "x.csv"],
    ["frobnicate"],
    ["export", "--depth", "x"],
])
def test_cli_bad_usage_one_line_no_traceback(args):
    res = run_cli(*args)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_cli_bad_out_suffix_and_period(tmp_path):
    src = write(tmp_path, lines_of(*good_stream()))
    res = run_cli("export", src, "--out", tmp_path / "x.txt")
    assert res.returncode == 2 and ".csv or .parquet" in res.stderr
    res = run_cli("export", src, "--out", tmp_path / "x.csv", "--every", "soon")
    assert res.returncode == 2 and "cannot parse period" in res.stderr
