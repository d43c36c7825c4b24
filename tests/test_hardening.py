"""Hostile inputs end in one clear error naming the user's file, never a traceback or a wrong book.

One test (or parametrised group) per class of failure of issue 17, each with a small reproducer
made here: damaged compressed containers (gzip, zstd, zip), identifier fields of the wrong
type, numbers outside the feeds' grammar, a Binance symbol absent from the file, the replay
cache after an in-place edit that keeps size and mtime, the cache's size bound and ``cache
--clear``, an over-long line, a directory given as a data file. The data-layer tests run with
the compiled per-level loops and with the pure-Python ones (``both_loops``). Checkpoints and
config settings are in ``tests/test_hardening_runs.py``; the mutation fuzzer over the real
recordings is ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

import data_processor as dp
from data_processor import DataFormatError, Replay
from feeds.common import MAX_LINE_BYTES

pytestmark = pytest.mark.usefixtures("both_loops")

REPO = Path(__file__).resolve().parent.parent


def snap(ts, u, b, a, s="BTCUSDT"):
    return {"topic": f"orderbook.50.{s}", "type": "snapshot", "ts": ts, "data": {"s": s, "b": b, "a": a, "u": u}}


def delta(ts, u, b, a, s="BTCUSDT"):
    return {"topic": f"orderbook.50.{s}", "type": "delta", "ts": ts, "data": {"s": s, "b": b, "a": a, "u": u}}


def lines(*objs) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def bybit_file(n: int = 400) -> bytes:
    """A valid Bybit stream of ``n`` lines (snapshot, then deltas moving one level)."""
    objs = [snap(1000, 1, [[f"{100 - i * 0.5:.1f}", "1"] for i in range(20)],
                 [[f"{100.5 + i * 0.5:.1f}", "1"] for i in range(20)])]
    for k in range(1, n):
        objs.append(delta(1000 + 10 * k, 1 + k, [[f"{99 - (k % 7) * 0.5:.1f}", str(k % 4)]], []))
    return lines(*objs)


def load(path, **kw):
    return list(dp.load_messages(path, **kw))


def run_dp(*args, env=None):
    return subprocess.run([sys.executable, str(REPO / "data_processor.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, **(env or {})})


# ------------------------------------------------------------------ damaged compressed containers


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _zst(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("day.data", data)
    return buf.getvalue()


DATA = bybit_file(8000)  # ~600 KB: more than a decompressor's internal buffer
DAMAGED = {
    # name: (file bytes, suffix, reason regex, whether some lines were read before the damage)
    "gzip cut in half": (_gz(DATA)[: len(_gz(DATA)) // 2], ".gz", "ends before the end", True),
    "gzip without trailer": (_gz(DATA)[:-8], ".gz", "ends before the end", True),
    "gzip bad CRC": (_gz(DATA)[:-8] + b"\0\0\0\0" + _gz(DATA)[-4:], ".gz", "checksum", True),
    "gzip trailing garbage": (_gz(DATA) + b"garbage\n", ".gz", "trailing garbage", True),
    "gzip magic only": (b"\x1f\x8b", ".gz", "damaged gzip", False),
    "zstd cut": (_zst(DATA)[: len(_zst(DATA)) // 2], ".zst", "ends before the end", True),
    "zstd junk": (b"\x28\xb5\x2f\xfd" + bytes(range(256)) * 4, ".zst", "damaged zstd", False),
    "zstd trailing garbage": (_zst(DATA) + b"garbage!", ".zst", "damaged zstd", True),
    "zip junk": (b"PK\x03\x04" + bytes(range(256)) * 4, ".zip", "damaged zip", False),
    "zip cut": (_zip(DATA)[: len(_zip(DATA)) // 2], ".zip", "damaged zip", False),
    "zip bad CRC": (_zip(DATA)[:300] + bytes([_zip(DATA)[300] ^ 0xFF]) + _zip(DATA)[301:], ".zip", "damaged zip", None),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_container_names_the_users_file(tmp_path, name):
    data, suffix, reason, some_read = DAMAGED[name]
    p = tmp_path / f"day{suffix}"
    p.write_bytes(data)
    with pytest.raises(DataFormatError, match=reason) as e:
        load(p)
    assert e.value.path == str(p) and "\n" not in str(e.value)
    if some_read:
        assert "lines 1-" in str(e.value)
    elif some_read is False:
        assert "lines 1-" not in str(e.value)
    # Replay decompresses into its cache first: the error still names the user's file, and no
    # partial copy (nor a temp file) is left in the cache
    cache = tmp_path / "cache"
    with pytest.raises(DataFormatError, match=reason) as e:
        Replay(p, cache_dir=cache)
    assert e.value.path == str(p) and ".cache" not in str(e.value) and str(cache) not in str(e.value)
    assert list(cache.iterdir()) == [] if cache.is_dir() else True


def test_intact_containers_still_read(tmp_path):
    want = load(_write(tmp_path, DATA, "a.data"))
    for suffix, pack in ((".gz", _gz), (".zst", _zst), (".zip", _zip)):
        assert load(_write(tmp_path, pack(DATA), f"a{suffix}")) == want
    two_frames = _zst(DATA[:5000]) + _zst(DATA[5000:])  # several zstd frames: one stream
    assert load(_write(tmp_path, two_frames, "b.zst")) == want


def _write(tmp_path: Path, data: bytes, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_damaged_file_cli_one_line_exit_2(tmp_path, both_loops):
    if both_loops == "python":
        pytest.skip("the CLI runs in a subprocess (compiled loops): one run is enough")
    p = _write(tmp_path, _gz(DATA)[:-8], "cut.gz")
    res = run_dp("inspect", p)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and str(p) in res.stderr and "ends before" in res.stderr


# ------------------------------------------------------------------ identifiers of the wrong type

SNAP = snap(1000, 1, [["100.0", "1"]], [["100.5", "1"]])


@pytest.mark.parametrize("bad,reason", [
    ({**delta(1100, 2, [["100.0", "2"]], []), "data": {"s": 7, "b": [["100.0", "2"]], "a": [], "u": 2}},
     "symbol 's' is not a string: 7"),
    ({**delta(1100, 2, [["100.0", "2"]], []), "data": {"s": ["BTCUSDT"], "b": [], "a": [], "u": 2}},
     r"symbol 's' is not a string: \['BTCUSDT'\]"),
    ({**delta(1100, 2, [], []), "data": {"s": "BTCUSDT", "b": [], "a": [], "u": 2, "seq": [1]}}, "'seq' is not an integer"),
    ({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1100,
      "data": [{"T": 1100, "s": {"x": 1}, "S": "Buy", "v": "1", "p": "100.0", "i": "a"}]}, "trade symbol 's' is not a string"),
])
def test_bybit_identifier_of_wrong_type(tmp_path, bad, reason):
    p = _write(tmp_path, lines(SNAP, bad), "f.jsonl")
    with pytest.raises(DataFormatError, match=reason) as e:
        load(p)
    assert e.value.line == 2
    with pytest.raises(DataFormatError, match=reason):
        list(dp.replay(p))
    rep = dp.LoadReport()
    assert len(load(p, on_error="skip", report=rep)) == 1 and rep.n_problems == 1  # skip mode counts it


@pytest.mark.parametrize("side,reason", [
    ({"12": "1"}, "'b' is not a list of"),  # a dict iterated its keys: "12" -> price "1", size "2"
    (["12"], "level 0 is not a \\[price, size\\] pair"),
    ("12", "'b' is not a list of"),
    (None, "'b' is not a list of"),  # Bybit never sends null for a side (fuzzer, seed 8075)
])
def test_levels_of_the_wrong_shape_never_iterate_into_a_book(tmp_path, side, reason):
    """Found by the fuzzer: a dict of two-character keys was read as levels by the fused loop."""
    p = _write(tmp_path, lines(SNAP, {**delta(1100, 2, [], []), "data": {"s": "BTCUSDT", "b": side, "a": [], "u": 2}}),
               "f.jsonl")
    with pytest.raises(DataFormatError, match=reason) as e:
        list(dp.replay(p))
    assert e.value.line == 2
    with pytest.raises(DataFormatError, match=reason):
        load(p)


@pytest.mark.parametrize("record,reason", [
    ({"t": {"s": 1}}, "record type 't' is not a string"),
    ({"t": "connect", "conn": ["x"], "addr": "wss://stream.bybit.com/v5/public/linear"}, "'conn'/'addr' are not strings"),
    ({"t": "recv", "conn": {"s": 1}, "ts": 1.5, "data": "{}"}, "'conn' is not a string"),
    ({"t": "recv", "conn": "BYBIT.ws.2", "ts": 1e308, "data": "{}"}, "'ts' is not a receive time"),
])
def test_cryptofeed_fields_of_the_wrong_type(tmp_path, record, reason):
    head = {"t": "header", "exchange": "BYBIT"}
    p = _write(tmp_path, lines(head, record), "c.jsonl")
    with pytest.raises(DataFormatError, match=reason) as e:
        load(p)
    assert e.value.line == 2


def _binance_lines(*records) -> bytes:
    return b"".join(f"{1721347020984480942 + i} ".encode() + orjson.dumps(r) + b"\n" for i, r in enumerate(records))


REST = {"lastUpdateId": 10, "E": 1000, "T": 1000, "bids": [["100.0", "1"]], "asks": [["100.5", "1"]]}


def diff(U, u, pu, b, a, s="BTCUSDT", T=1001):
    return {"stream": "btcusdt@depth@0ms", "data": {"e": "depthUpdate", "E": T, "T": T, "s": s, "U": U, "u": u,
                                                     "pu": pu, "b": b, "a": a}}


@pytest.mark.parametrize("bad,reason", [
    ({"stream": "x", "data": {"e": ["depthUpdate"], "s": "BTCUSDT"}}, "event type 'e' is not a string"),
    (diff(11, 12, 10, [], [], s=123), "symbol 's' is not a string: 123"),
    (diff(11, 12, 10, [], [], s=["BTCUSDT"]), "symbol 's' is not a string"),
    ({"stream": "x", "data": {"e": "trade", "T": 1002, "s": "BTCUSDT", "p": "100.0", "q": "1", "m": "yes", "t": 1}},
     "'m' .* is not true/false"),
])
def test_binance_identifier_of_wrong_type(tmp_path, bad, reason):
    p = _write(tmp_path, _binance_lines(diff(9, 11, 8, [], []), REST, bad), "b.data")
    with pytest.raises(DataFormatError, match=reason) as e:
        load(p)
    assert e.value.line == 3


def test_binance_local_time_must_be_digits(tmp_path):
    p = _write(tmp_path, _binance_lines(diff(9, 11, 8, [], []), REST) + b"1_000 " + orjson.dumps(diff(11, 12, 11, [], []))
               + b"\n", "b.data")
    with pytest.raises(DataFormatError, match="not '<local_ns> <json>'") as e:
        load(p)
    assert e.value.line == 3


# ------------------------------------------------------------------ numbers outside the grammar


@pytest.mark.parametrize("price,size,reason", [
    ("99.0", True, r"size True in 'b' is not a decimal string"),
    ("99.0", "1_00.1", r"size '1_00.1' in 'b' is not a decimal string"),
    ("99.0", " +1 ", r"size ' \+1 ' in 'b' is not a decimal string"),
    ("99.0", "\u0661\u0660", "is not a decimal string"),  # Arabic-Indic digits: float() takes them
    ("99.0", "1e-400", "is not a decimal string"),
    ("99.0", "0." + "0" * 400 + "1", "underflows to 0"),
    ("99.0", 1.5, "is not a decimal string"),  # a JSON number: Bybit sends strings
    ("99.0", "1" * 400, "too large size"),
    ("1" + "0" * 20, "1", r"above 9007199254740992"),  # 1e20: not exact in ticks
    ("99.00000001", "1", "off the tick grid"),  # within the old 1e-6-tick slack
    ("\uff19\uff19.0", "1", "is not a decimal string"),  # fullwidth digits
    (False, "1", "price False in 'b' is not a decimal string"),
    ("-99.0", "1", "negative price"),
])
def test_bybit_number_grammar(tmp_path, price, size, reason):
    p = _write(tmp_path, lines(SNAP, delta(1100, 2, [[price, size]], [])), "f.jsonl")
    with pytest.raises(DataFormatError, match=reason) as e:
        load(p)
    assert e.value.line == 2
    with pytest.raises(DataFormatError, match=reason):
        list(dp.replay(p))


def test_number_grammar_of_a_trade(tmp_path):
    tr = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1100,
          "data": [{"T": 1100, "s": "BTCUSDT", "S": "Buy", "v": "1e-400", "p": "100.0", "i": "a"}]}
    with pytest.raises(DataFormatError, match="size '1e-400' in 'trade' is not a decimal string"):
        load(_write(tmp_path, lines(SNAP, tr), "f.jsonl"))


def test_grammar_keeps_every_plain_decimal(tmp_path):
    """Sizes and prices the venues do send stay accepted (exactly, in ticks)."""
    p = _write(tmp_path, lines(SNAP, delta(1100, 2, [["99.50", "0.000000001"], ["99", ".5"], ["98.", "7."]],
                                           [["101.0000", "1000000000000"]])), "f.jsonl")
    m = load(p)[1]
    assert m.bids == [(995, 1e-9), (990, 0.5), (980, 7.0)] and m.asks == [(1010, 1e12)]
    assert dp.price_to_ticks(65114.2, 0.1) == 651142  # JSON numbers: where a venue sends them
    with pytest.raises(ValueError, match="off the tick grid"):
        dp.price_to_ticks("65114.2000001", 0.1)


@pytest.mark.parametrize("zeros", [330, 310])
def test_price_with_hundreds_of_decimals_in_the_first_snapshot(tmp_path, zeros):
    """330 decimals made the inferred tick underflow to 0.0 and ``1 / tick`` raise
    ``decimal.DivisionByZero`` (a crash; fuzz seed 12910); 310 give a subnormal tick."""
    tiny = "0." + "0" * zeros + "1"
    p = _write(tmp_path, lines(snap(1000, 1, [[tiny, "1"], ["99.5", "1"]], [["100.5", "1"]])), "f.jsonl")
    with pytest.raises(DataFormatError, match=r"f.jsonl:1: .*(underflows a double|too large price)"):
        load(p)


# ------------------------------------------------------------------ a symbol absent from the file


def test_binance_absent_symbol_is_refused(tmp_path):
    p = _write(tmp_path, _binance_lines(diff(9, 11, 8, [], []), REST, diff(11, 12, 11, [["100.0", "2"]], [])), "b.data")
    assert [m.symbol for m in load(p)] == ["BTCUSDT"] * 3
    assert load(p, symbol="ETHUSDT") == []  # the REST snapshot is never given the asked name
    with pytest.raises(DataFormatError, match=r"no book messages for ETHUSDT \(the recording holds: BTCUSDT\)"):
        Replay(p, "ETHUSDT", cache_dir=tmp_path / "c")
    assert Replay(p, "BTCUSDT", cache_dir=tmp_path / "c").symbol == "BTCUSDT"


# ------------------------------------------------------------------ the book paired with each message of a sync line


@pytest.mark.parametrize("order", ["diffs before the snapshot", "snapshot first"])
def test_binance_sync_line_pairs_each_message_with_its_own_book(tmp_path, order):
    """A line releasing several book messages pairs each with the book after it (``replay()``).

    The REST snapshot line releases the snapshot and the diffs buffered for it (and a diff line
    releases a snapshot read before any stream message); all were applied before the first was
    yielded, so the snapshot came paired with the buffered diffs' levels already in (found by the
    fuzzer's strict Binance replay).
    """
    d1, d2 = diff(9, 11, 8, [["99.0", "2"]], []), diff(12, 13, 11, [], [["101.0", "3"]])
    records = (d1, d2, REST) if order == "diffs before the snapshot" else (REST, d1, d2)
    p = _write(tmp_path, _binance_lines(*records), "b.data")
    got = [(type(m).__name__, dict(b.bids), dict(b.asks), b.n_applied) for m, b in dp.replay(p, "BTCUSDT")]
    assert got == [("SnapshotMessage", {1000: 1.0}, {1005: 1.0}, 1),
                   ("DeltaMessage", {1000: 1.0, 990: 2.0}, {1005: 1.0}, 2),
                   ("DeltaMessage", {1000: 1.0, 990: 2.0}, {1005: 1.0, 1010: 3.0}, 3)]


def test_binance_every_snapshot_before_the_first_diff_is_kept(tmp_path):
    """Two REST snapshots before any stream message: both are book messages of the symbol.

    The parser kept only the last one, so a second snapshot older than the first was accepted
    (time going back, unseen) and the first was lost (found by the fuzzer's strict Binance replay).
    """
    second = {**REST, "bids": [["100.0", "5"]]}
    p = _write(tmp_path, _binance_lines(REST, second, diff(9, 11, 8, [], [])), "b.data")
    got = [(type(m).__name__, dict(b.bids)) for m, b in dp.replay(p, "BTCUSDT")]
    assert got == [("SnapshotMessage", {1000: 1.0}), ("SnapshotMessage", {1000: 5.0}), ("DeltaMessage", {1000: 5.0})]
    p = _write(tmp_path, _binance_lines(REST, {**second, "T": 999}, diff(9, 11, 8, [], [])), "b.data")
    with pytest.raises(DataFormatError, match=r"b.data:2: timestamp goes backwards for BTCUSDT: 999 < 1000"):
        load(p)


# ------------------------------------------------------------------ replay cache after an in-place edit


def test_replay_cache_not_reused_after_in_place_edit_keeping_size_and_mtime(tmp_path):
    p = _write(tmp_path, bybit_file(400), "data.jsonl")
    cache = tmp_path / "cache"
    r = Replay(p, checkpoint_interval_ms=500, cache_dir=cache)
    book, _ = r.start_at(r.end_ts)
    st = p.stat()
    # the same bytes but one size digit: same length; mtime restored as `touch -r` would
    data = p.read_bytes()
    i = data.rindex(b'"2"]]')  # the last delta's level with size 2 becomes size 3
    edited = data[:i] + b'"3"]]' + data[i + 5:]
    assert len(edited) == len(data)
    with open(p, "r+b") as fh:
        fh.write(edited)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (p.stat().st_size, p.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    r2 = Replay(p, checkpoint_interval_ms=500, cache_dir=cache)
    book2, _ = r2.start_at(r2.end_ts)
    want = {}
    for _, b in dp.replay(p):
        want = dict(b.bids)
    assert dict(book2.bids) == want and dict(book.bids) != want
    # a chmod changes only the ctime: the content hash matches and the cache is reused
    js = next(cache.glob("*.replay.json"))
    stamp = js.stat().st_mtime_ns
    os.chmod(p, 0o600)
    Replay(p, checkpoint_interval_ms=500, cache_dir=cache)
    assert orjson.loads(js.read_bytes())["sources"][0]["ctime_ns"] == p.stat().st_ctime_ns
    assert js.stat().st_mtime_ns >= stamp  # rewritten only to record the new ctime, not rebuilt
    assert orjson.loads(js.read_bytes())["checkpoints"] == r2._meta["checkpoints"]


# ------------------------------------------------------------------ the cache's size bound and cache --clear


def test_cache_size_bound_and_clear(tmp_path, monkeypatch, both_loops):
    cache = tmp_path / "cache"
    srcs = [_write(tmp_path, _gz(bybit_file(300 + 50 * i)), f"d{i}.jsonl.gz") for i in range(3)]
    Replay(srcs[0], cache_dir=cache)
    one = sum(p.stat().st_size for p in cache.iterdir())
    monkeypatch.setenv("RLMM_CACHE_MAX_BYTES", str(int(one * 1.5)))  # room for about one entry
    Replay(srcs[1], cache_dir=cache)
    Replay(srcs[2], cache_dir=cache)
    total = sum(p.stat().st_size for p in cache.iterdir())
    names = [p.name for p in cache.iterdir()]
    assert total <= one * 1.5 + 4 * one  # bounded (the entry in use is never evicted)
    assert any(n.startswith("d2.jsonl.gz") for n in names) and not any(n.startswith("d0.jsonl.gz") for n in names)
    # an evicted entry is rebuilt on demand, identically
    assert Replay(srcs[0], cache_dir=cache).end_ts == 1000 + 10 * 299
    if both_loops == "python":
        return
    (cache / "notes.txt").write_text("not ours")
    res = run_dp("cache", "--dir", cache)
    assert res.returncode == 0 and "files" in res.stdout
    res = run_dp("cache", "--clear", "--dir", cache)
    assert res.returncode == 0 and "removed" in res.stdout, res.stderr
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]  # only the cache's own files
    res = run_dp("cache", "--clear", env={"RLMM_CACHE_DIR": str(cache)})
    assert res.returncode == 0 and "removed 0 files" in res.stdout


# ------------------------------------------------------------------ smaller ones


def test_overlong_line_is_refused_before_parsing(tmp_path):
    big = b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1100,"data":{"s":"BTCUSDT","b":[' + \
        b'["99.0","1"],' * (MAX_LINE_BYTES // 13) + b'["99.0","1"]],"a":[],"u":2}}\n'
    p = _write(tmp_path, lines(SNAP) + big, "f.jsonl")
    with pytest.raises(DataFormatError, match="longer than the 16,777,216 bytes") as e:
        load(p)
    assert e.value.line == 2
    with pytest.raises(DataFormatError, match="longer than"):
        load(_write(tmp_path, big, "g.jsonl"))  # as the first line too (format detection)


def test_directory_as_data_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a data file"):
        load(tmp_path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        Replay(tmp_path)
    import cli
    import utils

    with pytest.raises(utils.CliError, match="is a directory, not a data file"):
        cli.resolve_data_paths(str(tmp_path))
