"""The compiled per-level loops (``_speedups``) against their pure-Python reference.

Same outcome for every input: converted levels equal (value, type, sign of zero) or both
refused; books equal after every message, splits, merges and positional indexes included;
every message of every real recording equal. Plus the two ways a build is not used
(``RLMM_PURE_PYTHON``, a stale build).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import data_processor as dp
import feeds.common as fc
import messages
import order_book
from order_book import OrderBook

REPO = Path(__file__).resolve().parent.parent
SP = order_book.SPEEDUPS
needs_build = pytest.mark.skipif(
    SP is None, reason="the C accelerator _speedups is not built in this checkout (pip install -e . with a C compiler)"
)


def SnapshotMessage(ts, update_id, bids, asks):  # noqa: N802 - short constructor of the real class
    return messages.SnapshotMessage(ts=ts, symbol="T", bids=bids, asks=asks, update_id=update_id, tick_size=1.0)


def DeltaMessage(ts, update_id, bids, asks):  # noqa: N802
    return messages.DeltaMessage(ts=ts, symbol="T", bids=bids, asks=asks, update_id=update_id, tick_size=1.0)


def _outcome(fn, *args):
    """``repr`` of the result (shows types and -0.0), or ``"_Bad"`` when the levels are refused."""
    try:
        return repr(fn(*args))
    except fc.BadLevels:
        return "_Bad"


def _levels_both(raw, tick):
    """``feeds.common.levels`` with the compiled loop and with the Python loop, fresh caches."""
    inv = fc.inverse_tick(tick)
    compiled = _outcome(fc.levels, raw, inv, {})
    saved = order_book.SPEEDUPS
    order_book.SPEEDUPS = None
    try:
        python = _outcome(fc.levels, raw, inv, {})
    finally:
        order_book.SPEEDUPS = saved
    return compiled, python


# Texts the two paths must agree on: the plain decimal shape the C parser handles and every
# shape it must leave to float() (signs, exponents, whitespace, underscores, specials, other
# digits, more than 15 digits, grid edge cases).
_SPECIAL = [
    "0", "0.00", "-0", "-0.0", "5.", ".5", ".", "", " ", "1e2", "1E-2", "+3", " 12.5", "12.5 ",
    "1_000.5", "0x10", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1", "-12.34",
    "١٢", "\ud800", "1\u00a0", "00012.50", "1922.380", "1922.385", "1922.3800000001", "1922.380000000000001",
    "123456789012345", "1234567890123456", "0.000000000000001", "99999999.99", "10000000.00",
    "1000000000", "999999999", "12.345678901234567890",
]
_digits = st.text(alphabet="0123456789", min_size=1, max_size=9)
_decimal_text = st.builds(lambda i, f: i + ("." + f if f is not None else ""), _digits,
                          st.one_of(st.none(), st.text(alphabet="0123456789", max_size=10)))
_text = st.one_of(_decimal_text, st.sampled_from(_SPECIAL))
_value = st.one_of(
    _text, _text, _text,
    st.integers(min_value=-5, max_value=10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, True, [1], {"a": 1}]),
)
_level = st.one_of(
    st.lists(_value, min_size=2, max_size=2),
    st.lists(_value, min_size=2, max_size=2),
    st.lists(_value, min_size=2, max_size=2),
    st.tuples(_value, _value), st.lists(_value, min_size=0, max_size=3), _value,
)
_raw = st.one_of(st.lists(_level, max_size=8), st.none(), st.just("x"), st.just({"1": "2"}))
_ticks = st.sampled_from([0.01, 0.1, 1.0, 0.5, 1e-8, 25.0, 0.0001, 0.25, 1e-6])


@needs_build
@settings(max_examples=1500, deadline=None)
@given(raw=_raw, tick=_ticks)
def test_level_conversion_matches_python(raw, tick):
    compiled, python = _levels_both(raw, tick)
    assert compiled == python, (raw, tick)


@needs_build
@pytest.mark.parametrize("tick", [0.01, 0.1, 1.0, 0.5, 1e-8, 25.0])
@pytest.mark.parametrize("text", _SPECIAL)
def test_every_special_text_as_price_and_size(text, tick):
    for raw in ([[text, "1.5"]], [["100", text]], [[text, text]]):
        compiled, python = _levels_both(raw, tick)
        assert compiled == python, (raw, tick)


@needs_build
def test_plain_decimals_take_the_compiled_parser_and_round_like_float():
    """Random plain decimals: sizes bit-identical to float(), prices on the grid exact ticks."""
    rng = random.Random(7)
    for _ in range(20_000):
        digits = rng.randint(1, 15)
        decimals = rng.randint(0, min(digits, 10))
        text = str(rng.randrange(10 ** digits)).zfill(digits)
        if decimals:
            text = text[:-decimals] + "." + text[-decimals:]
        out = SP.levels([["1", text]], 1.0, {}, fc.new_price)
        assert out is not None and out[0][1] == float(text) and repr(out[0][1]) == repr(float(text)), text
        ticks = SP.levels([[text, "1"]], 10.0 ** decimals, {}, fc.new_price)
        value = int(text.replace(".", ""))
        if 0 < value < 10**9:  # larger tick counts: float(price) * inv may miss the 1e-6 grid tolerance
            assert ticks == [(value, 1.0)], text


@needs_build
def test_declines_instead_of_raising():
    new_price = fc.new_price
    for raw in ([["1", "nan"]], [["1", "-1"]], [["x", "1"]], [["0", "1"]], [["1.005", "1"]], [[[1], "1"]],
                [("1", "1")], [["1", "1", "1"]], "x", None, [["1", None]]):
        assert SP.levels(raw, 100.0, {}, new_price) is None, raw
    assert SP.levels([], 100.0, {}, new_price) == []


# --------------------------------------------------------------------------------- the book


def _pair(book_c: OrderBook, book_py: OrderBook, msg) -> None:
    book_c.apply(msg)
    book_py.apply(msg)
    book_c.check_invariants(allow_crossed=True)
    book_py.check_invariants(allow_crossed=True)
    assert list(book_c.bids.items()) == list(book_py.bids.items())
    assert list(book_c.asks.items()) == list(book_py.asks.items())
    assert book_c.crossed == book_py.crossed


def _books(load: int | None = None) -> tuple[OrderBook, OrderBook]:
    book_c = OrderBook("T", 1.0)
    saved = order_book.SPEEDUPS
    order_book.SPEEDUPS = None
    try:
        book_py = OrderBook("T", 1.0)
    finally:
        order_book.SPEEDUPS = saved
    assert book_c._fast_delta is not None and book_py._fast_delta is None
    if load is not None:
        for book in (book_c, book_py):
            book.bids._reset(load)
            book.asks._reset(load)
    return book_c, book_py


_prices = st.integers(min_value=1, max_value=60)
_sizes = st.sampled_from([0.0, 0.0, -0.0, 1.0, 2.5, 1e-9])
_side = st.one_of(
    st.lists(st.tuples(_prices, _sizes), max_size=14),
    st.lists(st.tuples(_prices, _sizes).map(list), max_size=3),  # [price, size] lists: the Python loop
)


@needs_build
@settings(max_examples=300, deadline=None)
@given(load=st.sampled_from([4, 5, 1000]), stream=st.lists(st.tuples(st.booleans(), _side, _side), min_size=1, max_size=30))
def test_book_matches_python_loop(load, stream):
    book_c, book_py = _books(load)
    _pair(book_c, book_py, SnapshotMessage(ts=0, update_id=0, bids=[(p, 1.0) for p in range(1, 25)],
                                           asks=[(p, 1.0) for p in range(30, 55)]))
    for i, (index, bids, asks) in enumerate(stream, start=1):
        _pair(book_c, book_py, DeltaMessage(ts=i, update_id=i, bids=bids, asks=asks))
        if index and len(book_c.bids) > 2:  # a consumer's positional read builds the index
            assert book_c.bids.keys()[1] == book_py.bids.keys()[1]


@needs_build
@pytest.mark.parametrize("load", [4, 1000])
def test_book_matches_python_loop_under_churn(load):
    rng = random.Random(load)
    book_c, book_py = _books(load)
    _pair(book_c, book_py, SnapshotMessage(ts=0, update_id=0, bids=[(p, 1.0) for p in range(500, 3000)],
                                           asks=[(p, 1.0) for p in range(3001, 5500)]))
    n_sublists = set()
    for i in range(1, 2_000):
        n_sublists.add(len(book_c.bids._list._lists))
        bids = [(rng.randint(1, 3000), rng.choice([0.0, 0.0, rng.random()])) for _ in range(rng.randint(0, 20))]
        asks = [(rng.randint(3001, 6000), rng.choice([0.0, 0.0, rng.random()])) for _ in range(rng.randint(0, 20))]
        _pair(book_c, book_py, DeltaMessage(ts=i, update_id=i, bids=bids, asks=asks))
        if i % 101 == 0:
            book_c.asks.keys()[len(book_c.asks) // 2]
    assert len(n_sublists) > 1  # sublists were split or merged along the way


# ------------------------------------------------------------------------ real recordings


def _all_messages(path, symbol):
    return [(type(m).__name__, repr(m)) for m in dp.load_messages(path, symbol=symbol)]


@needs_build
@pytest.mark.parametrize("name,symbols", [
    ("bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]),
    ("bybit/cryptofeed_v3_BYBIT_spot_ob200_publicTrade.jsonl", ["BTCUSDT", "ETHUSDT"]),
    ("bybit/2024-12-01_XRPUSDT_ob500.data", [None]),
    ("binance/hftbacktest-usdm/ethusdt_20240808.gz", [None]),
])
def test_real_recordings_give_identical_messages_and_books(shared_data, name, symbols):
    path = shared_data / name
    for symbol in symbols:
        compiled = _all_messages(path, symbol)
        books_c = [(b.best_bid(), b.best_ask(), len(b.bids), len(b.asks)) for _, b in dp.replay(path, symbol=symbol)]
        saved = order_book.SPEEDUPS
        order_book.SPEEDUPS = None
        try:
            python = _all_messages(path, symbol)
            books_py = [(b.best_bid(), b.best_ask(), len(b.bids), len(b.asks)) for _, b in dp.replay(path, symbol=symbol)]
        finally:
            order_book.SPEEDUPS = saved
        assert len(compiled) >= 50 and compiled == python, (name, symbol)
        assert books_c == books_py, (name, symbol)


# ------------------------------------------------------------------- when a build is not used


def _import_order_book(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import order_book; print('SPEEDUPS', order_book.SPEEDUPS is not None)"
    return subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=True)


@needs_build
def test_pure_python_switch():
    assert "SPEEDUPS True" in _import_order_book(REPO).stdout
    assert "SPEEDUPS False" in _import_order_book(REPO, {"RLMM_PURE_PYTHON": "1"}).stdout


@needs_build
def test_stale_build_is_ignored_with_a_warning(tmp_path):
    """A build from another version of _speedups.pyx is not used (pip install -e . rebuilds it)."""
    shutil.copy(REPO / "order_book.py", tmp_path)
    shutil.copy(REPO / "messages.py", tmp_path)
    shutil.copy(SP.__file__, tmp_path)
    (tmp_path / "_speedups.pyx").write_text((REPO / "_speedups.pyx").read_text() + "\n# edited\n")
    out = _import_order_book(tmp_path, {"PYTHONPATH": str(tmp_path)})
    assert "SPEEDUPS False" in out.stdout
    assert "built from another version of _speedups.pyx" in out.stderr
    (tmp_path / "_speedups.pyx").write_text((REPO / "_speedups.pyx").read_text())
    assert "SPEEDUPS True" in _import_order_book(tmp_path, {"PYTHONPATH": str(tmp_path)}).stdout
