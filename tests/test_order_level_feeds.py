"""Order-level feeds (LOBSTER, Bitstamp): read straight from their archives, checked against the files' own truth.

The pinned counts are those of the real recordings in ``../shared/data`` (PROVENANCE.md); the
README's data section states them. Small hand-made files cover every problem a line can have.
"""

from __future__ import annotations

import bz2
import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from data_processor import LoadReport, Replay, load_messages
from feeds.compression import compression
from feeds.reader import Reader
from messages import (
    ASK,
    BID,
    ORDER_ADD,
    ORDER_EXECUTE,
    DataFormatError,
    DeltaMessage,
    OrderMessage,
    SnapshotMessage,
    TradeMessage,
)
from order_book import OrderBook

REPO = Path(__file__).resolve().parent.parent

# (rows, rows equal before any correction, rows corrected because a deeper level came to the top)
LOBSTER_PINS = {"AMZN": (57_515, 49_347, 8_168), "GOOG": (49_482, 43_312, 6_170)}


def _lobster(shared_data: Path, ticker: str) -> Path:
    return shared_data / "lobster" / f"LOBSTER_SampleFile_{ticker}_2012-06-21_1.zip"


def _orderbook_rows(path: Path) -> list[tuple[int, int, int, int]]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if "_orderbook_" in n)
        text = zf.read(name).decode()
    return [tuple(int(x) for x in line.split(",")[:4]) for line in text.splitlines()]


@pytest.mark.parametrize("ticker", ["AMZN", "GOOG"])
def test_lobster_book_equals_the_level1_file_on_every_row(shared_data, ticker):
    path = _lobster(shared_data, ticker)
    rows = _orderbook_rows(path)
    rep = LoadReport()
    reader = Reader([path], None, "raise", None, report=rep)
    book = OrderBook(ticker, 0.01)
    checked = 0

    def agree(upto: int) -> None:
        nonlocal checked
        bb, ba = book.best_bid(), book.best_ask()
        while checked < upto:
            ap, az, bp, bz = rows[checked]
            assert (bb[0] * 100, bb[1], ba[0] * 100, ba[1]) == (bp, bz, ap, az), f"row {checked + 1}"
            checked += 1

    for batch in reader.batches():
        agree(reader.line_no - 1)  # rows without a book change keep the previous book
        for m in batch:
            if type(m) in (SnapshotMessage, DeltaMessage):
                book.apply(m)
        agree(reader.line_no)
    agree(len(rows))
    assert checked == len(rows) == LOBSTER_PINS[ticker][0]
    n, equal, revealed = LOBSTER_PINS[ticker]
    assert rep.checks["rows"] == n
    assert rep.checks["rows equal"] == equal
    assert rep.checks["rows corrected: level revealed"] == revealed
    assert rep.checks["rows corrected: unexplained"] == 0
    assert rep.n_problems == 0


def test_lobster_zip_read_directly_with_order_messages(shared_data):
    path = _lobster(shared_data, "AMZN")
    assert compression(path) == "zip"
    msgs = load_messages(path, order_level=True)
    first = [next(msgs) for _ in range(6)]
    # row 1: a hidden execution (a trade; the book starts, checked against the file's row 1);
    # row 2: a submit of 21 at 223.81 (buy); row 3: its execution (a sell hit it)
    assert [type(m).__name__ for m in first] == ["TradeMessage", "SnapshotMessage", "OrderMessage",
                                                 "DeltaMessage", "OrderMessage", "TradeMessage"]
    assert first[0].side == 1 and first[0].size == 1.0
    assert first[0].ts == 1340251200000 + 34200017  # 09:30:00.017 EDT in epoch ms
    assert first[1].bids == [(22318, 100.0)] and first[1].asks == [(22395, 100.0)]
    assert first[2].action == ORDER_ADD and first[2].order_id == 11885113
    assert (first[2].side, first[2].price, first[2].size) == (BID, 22381, 21.0)
    assert first[4].action == ORDER_EXECUTE and first[5].side == -1 and first[5].size == 21.0
    plain = Counter(type(m).__name__ for m in load_messages(path))
    assert "OrderMessage" not in plain and plain["TradeMessage"] == 11_356


def test_lobster_replay_start_at_equals_a_full_replay(shared_data, tmp_path):
    path = _lobster(shared_data, "GOOG")
    rp = Replay(path, cache_dir=tmp_path, order_level=True)
    assert rp.feed_order_level and rp.symbol == "GOOG" and rp.tick_size == 0.01
    t = rp.start_ts + 3 * 3_600_000 + 123
    book, it = rp.start_at(t)
    ref = OrderBook("GOOG", 0.01)
    after = []
    for m in load_messages(path, order_level=True):
        if m.ts <= t:
            if type(m) in (SnapshotMessage, DeltaMessage):
                ref.apply(m)
        else:
            after.append(m)
            if len(after) == 50:
                break
    assert book.best_bid() == ref.best_bid() and book.best_ask() == ref.best_ask()
    got = [next(it) for _ in range(50)]
    assert got == after
    assert any(type(m) is OrderMessage for m in got)


# -------------------------------------------------------------------------------- Bitstamp
_BITSTAMP_SCRIPT = r"""
import json, resource, sys
from collections import Counter
from data_processor import LoadReport, load_messages
rep = LoadReport()
kinds = Counter()
for m in load_messages(sys.argv[1], report=rep, order_level=True):
    kinds[type(m).__name__] += 1
# VmHWM: this process image's peak RSS. ru_maxrss is not: Linux keeps it across execve, so a
# child of a big pytest worker (TensorFlow loaded) would report the worker's peak.
try:
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"kinds": kinds, "checks": rep.checks, "problems": rep.n_problems, "maxrss_mb": peak}))
"""


@pytest.fixture(scope="module")
def bitstamp_day(shared_data):
    """The whole day read once in a fresh process (its peak RSS is the memory bound's witness)."""
    path = shared_data / "bitstamp" / "2015-05-01.log.bz2"
    out = subprocess.run([sys.executable, "-c", _BITSTAMP_SCRIPT, str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_bitstamp_day_reads_end_to_end_never_crossed(bitstamp_day):
    # check_crossed=True (the default) refuses any message that leaves the book crossed:
    # the whole day read without a problem is the proof.
    assert bitstamp_day["problems"] == 0
    k = bitstamp_day["kinds"]
    assert k["SnapshotMessage"] == 1 and k["TradeMessage"] == 4_250
    assert k["OrderMessage"] == 242_376 and k["DeltaMessage"] == 235_575


@pytest.mark.slow
def test_bitstamp_top20_agreement_is_pinned(bitstamp_day):
    c = bitstamp_day["checks"]
    assert c["snapshots compared"] == 29_963
    assert c["snapshots equal"] == 29_044            # 96.93 %
    assert c["snapshots lagged"] == 736              # equal to the book a few events earlier
    assert c["snapshots corrected"] == 183           # 0.61 %
    assert c["snapshots while crossed"] == 28
    assert c["unknown order deleted"] == 527 and c["unknown order changed"] == 20


@pytest.mark.slow
def test_bitstamp_day_memory_stays_flat(bitstamp_day):
    # the decompressed day is 36 MB and its 480k messages would take several hundred MB as
    # objects; a streaming read stays near the interpreter's own footprint
    assert bitstamp_day["maxrss_mb"] < 150


# -------------------------------------------------------------------------------- bad lines
_BS = [
    '1430438404518 order_created {"price": "236.47", "amount": "2.00000000", "datetime": "1", "id": 1, "order_type": 0}',
    '1430438405885 order_book {"bids": [["236.47", "2.0"], ["236.40", "1.0"]], "asks": [["236.64", "3.0"]]}',
    '1430438405900 order_created {"price": "236.50", "amount": "1.00000000", "datetime": "1", "id": 2, "order_type": 0}',
    '1430438405950 trade {"price": 236.64, "amount": 0.5, "id": 9}',
    '1430438406000 order_deleted {"price": "236.50", "amount": "1.00000000", "datetime": "1", "id": 2, "order_type": 0}',
    '1430438406100 order_deleted {"price": "236.40", "amount": "1.00000000", "datetime": "1", "id": 77, "order_type": 0}',
]


def _write_bz2(path: Path, lines: list[str]) -> Path:
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_bitstamp_small_file_messages(tmp_path):
    path = _write_bz2(tmp_path / "day.log.bz2", _BS)
    rep = LoadReport()
    msgs = list(load_messages(path, report=rep, order_level=True))
    snap = msgs[0]
    assert type(snap) is SnapshotMessage and snap.symbol == "BTCUSD" and snap.tick_size == 0.01
    assert snap.bids == [(23640, 1.0), (23647, 2.0)] and snap.asks == [(23664, 3.0)]
    add, delta = msgs[1], msgs[2]
    assert type(add) is OrderMessage and (add.order_id, add.price, add.size) == (2, 23650, 1.0)
    assert type(delta) is DeltaMessage and delta.bids == [(23650, 1.0)]
    trade = msgs[3]
    assert type(trade) is TradeMessage and trade.side == 1  # at the ask: a buy (side from the mid)
    # the unknown order 77 (placed before the recording) is counted, and its cancel applied
    assert rep.checks["unknown order deleted"] == 1
    assert msgs[-1].bids == [(23640, 0.0)]


@pytest.mark.parametrize(("line", "reason"), [
    ("1430438406200 order_created {not json", "malformed JSON"),
    ('1430438406200 order_created {"price": "236.505", "amount": "1", "id": 3, "order_type": 0}', "tick grid"),
    ('1430438406200 order_created {"price": "236.50", "amount": "-1", "id": 3, "order_type": 0}', "non-negative"),
    ('1430438406200 order_created {"price": "236.50", "amount": "1", "id": 3, "order_type": 5}', "order_type"),
    ('1430438406200 order_created {"price": "236.50", "amount": "1", "order_type": 0}', "missing field 'id'"),
    ('1430438406200 order_moved {"price": "236.50"}', "unknown Bitstamp event"),
    ('x order_created {"price": "236.50"}', "<local ms> <event> <json>"),
])
def test_bitstamp_bad_line_names_file_and_line(tmp_path, line, reason):
    path = _write_bz2(tmp_path / "bad.log.bz2", [*_BS[:3], line])
    with pytest.raises(DataFormatError, match=reason) as e:
        list(load_messages(path))
    assert e.value.line == 4 and e.value.path == str(path)


def _lobster_zip(path: Path, messages: list[str], books: list[str]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("XYZ_2012-06-21_34200000_57600000_message_1.csv", "\n".join(messages) + "\n")
        zf.writestr("XYZ_2012-06-21_34200000_57600000_orderbook_1.csv", "\n".join(books) + "\n")
        zf.writestr("LOBSTER_SampleFiles_ReadMe.txt", "readme")
    path.write_bytes(buf.getvalue())
    return path


_LOB_MSG = ["34200.1,1,1,10,1000000,1", "34200.2,1,2,5,1000100,-1", "34200.3,4,1,4,1000000,1"]
_LOB_BOOK = ["9999999999,0,1000000,10", "1000100,5,1000000,10", "1000100,5,1000000,6"]


def test_lobster_small_zip(tmp_path):
    path = _lobster_zip(tmp_path / "x.zip", _LOB_MSG, _LOB_BOOK)
    rep = LoadReport()
    msgs = [m for m in load_messages(path, report=rep) if type(m) is not OrderMessage]
    assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "DeltaMessage", "TradeMessage", "DeltaMessage"]
    assert msgs[0].symbol == "XYZ" and msgs[0].bids == [(10000, 10.0)]
    assert msgs[2].side == -1 and msgs[2].price == 10000 and msgs[2].size == 4.0  # a sell hit the bid
    assert msgs[3].bids == [(10000, 6.0)]
    assert rep.checks["rows"] == 3 and rep.checks["rows equal"] == 3


def test_lobster_mismatch_not_explained_is_counted_and_corrected(tmp_path):
    books = [*_LOB_BOOK[:2], "1000100,5,1000000,7"]  # the file says 7 left, the messages 6
    path = _lobster_zip(tmp_path / "x.zip", _LOB_MSG, books)
    rep = LoadReport()
    last = [m for m in load_messages(path, report=rep) if type(m) is DeltaMessage][-1]
    assert last.bids == [(10000, 7.0)]
    assert rep.checks["rows corrected: unexplained"] == 1


@pytest.mark.parametrize(("row", "reason"), [
    ("34200.4,1,3,10,1000000", "6 comma-separated fields"),
    ("34200.4,9,3,10,1000000,1", "unknown LOBSTER event type 9"),
    ("34200.4,1,3,10,1000000,2", "direction must be 1 or -1"),
    ("34200.4,1,3,0,1000000,1", "size and price must be positive"),
    ("34200.4,1,3,10,1000050,1", "off the tick grid"),
    ("34200.4,1,3,x,1000000,1", "non-numeric"),
])
def test_lobster_bad_row_names_file_and_line(tmp_path, row, reason):
    path = _lobster_zip(tmp_path / "x.zip", [*_LOB_MSG, row], [*_LOB_BOOK, "1000100,5,1000000,6"])
    with pytest.raises(DataFormatError, match=reason) as e:
        list(load_messages(path))
    assert e.value.line == 4


def test_lobster_orderbook_file_too_short(tmp_path):
    path = _lobster_zip(tmp_path / "x.zip", _LOB_MSG, _LOB_BOOK[:2])
    with pytest.raises(DataFormatError, match="fewer rows than the message file"):
        list(load_messages(path))


def test_zip_with_two_unrelated_data_files_is_refused(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.jsonl", "{}\n")
        zf.writestr("b.jsonl", "{}\n")
    with pytest.raises(DataFormatError, match="exactly one data file"):
        list(load_messages(path))


def test_sides_are_the_message_constants():
    assert (BID, ASK) == (1, -1)
