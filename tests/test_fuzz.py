"""Mutation fuzzer over the real recordings: refuse with one error naming the file, or give the right book.

Each iteration takes a window of a real recording in ``../shared/data`` (Bybit history file,
Bybit linear/spot websocket recordings, the cryptofeed Bybit capture, a Binance USDⓈ-M
session), applies one seeded random mutation (a hostile JSON value at a random place, a key
removed, a byte flipped, inserted or cut, lines duplicated, dropped or swapped, or the file
compressed with gzip/zstd/zip and then cut, flipped or given trailing garbage) and reads it
with ``data_processor.replay`` (compiled and pure-Python per-level loops alternately; every
tenth iteration also through ``Replay``, which decompresses into its cache). The oracle:

1. **No crash**: the only exception allowed is a ``ValueError`` (``DataFormatError``) whose
   message names the mutated file.
2. **No wrong book**: where the project accepts a Bybit-format input, an independent strict
   replay written here (``json`` + ``Decimal`` + plain dicts, the documented rules: number
   grammar, tick grid, update-id continuity, time order, no crossing) must accept it too and
   give the same full book after every book message. Binance and cryptofeed inputs are held
   to oracle 1 (their sync rules are checked against an exact replay on the unmutated
   recordings in ``tests/test_real_data_replay.py``).

Iteration ``i`` always gets the same input (seed ``i``), so a failure is reproduced by its
index: ``python -m pytest tests/test_fuzz.py -k repro --fuzz-case`` is not needed, the
assertion message prints the seed and the mutation. The default test runs iterations
``0..FUZZ_ITERATIONS-1`` (CI); the ``slow`` one runs further seeds for ``RLMM_FUZZ_SECONDS``
(default 120) and writes its figures to ``$RLMM_FUZZ_REPORT`` when set (docs/reliability.md
quotes them).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import random
import re
import time
import zipfile
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path

import orjson
import pytest

import data_processor as dp
import order_book
from data_processor import DeltaMessage, SnapshotMessage

FUZZ_ITERATIONS = int(os.environ.get("RLMM_FUZZ_ITERATIONS", "300"))
"""Iterations of the default (CI) run; seeds 0..N-1."""
FUZZ_CAP_S = 60.0
"""Wall-clock cap of the default run (it stops early, with a note, on a very slow machine)."""

# (name, relative path, symbol, kind, lines in the window)
SOURCES = [
    ("bybit-history", "bybit/2024-12-01_XRPUSDT_ob500.data", "XRPUSDT", "bybit", 50),
    ("bybit-linear", "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl", "ETHUSDT", "bybit", 220),
    ("bybit-spot", "bybit/cryptofeed_v3_BYBIT_spot_ob200_publicTrade.jsonl", "BTCUSDT", "bybit", 160),
    ("cryptofeed", "bybit/cryptofeed_v3_BYBIT.jsonl.zst", "linear:SOLUSDT", "other", 400),
    ("binance", "binance/hftbacktest-usdm/btcusdt_20240718.gz", "BTCUSDT", "other", 300),
]

HOSTILE = [True, False, None, 0, -1, 1.5, 1e308, -0.0, 2**64, 10**30, "1e-400", "1_00.1", " +1 ", "\u0661\u0662",
           "\uff11", "NaN", "nan", "inf", "-1", "", "0", "0.0", "1e20", "100000000000000000000", [], {}, [["1", "1"]],
           "x", "delta", "snapshot", "XRPUSDT", "BTCUSDT", "ETHUSDT", [1], {"s": 1}, "0." + "0" * 330 + "1",
           "9" * 30, ".5", "5.", "\u00b2", "1.0000001"]


# ------------------------------------------------------------------ inputs


_windows: dict[str, list[bytes]] = {}


def _window(shared: Path, rel: str, n: int) -> list[bytes]:
    if rel not in _windows:
        p = shared / rel
        data = p.read_bytes()
        if rel.endswith(".gz"):
            data = gzip.decompress(data)
        elif rel.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
        _windows[rel] = list(io.BytesIO(data))[:n]
    return list(_windows[rel])


def _paths(obj, at=()):
    """Every (path, value) of a JSON value."""
    yield at, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*at, i))


def _set(obj, path, value):
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def _tweak_number_text(rng: random.Random, text: str) -> object:
    choices = [text + rng.choice("0123456789"), text[:-1] or "0", "-" + text, " " + text, text + " ",
               text.replace(".", "_", 1), text + "e-400", "+" + text, text.replace("1", "\u0661"), text * 3,
               text + "0000001", float(text) if re.fullmatch(r"\d+(\.\d+)?", text) else text,
               "0." + "0" * rng.randint(300, 400) + "1", "1" + "0" * rng.randint(15, 25)]
    return rng.choice(choices)


def _mutate_json(rng: random.Random, lines: list[bytes], kind: str) -> str:
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    i = rng.choice(idx)
    raw = lines[i]
    prefix = b""
    body = raw
    if kind == "other" and raw[:1].isdigit():  # Binance: "<local_ns> <json>"
        sp = raw.find(b" ")
        prefix, body = raw[: sp + 1], raw[sp + 1:]
    try:
        obj = json.loads(body)
    except ValueError:
        return "none (unparsable line kept)"
    inner_key = None
    if isinstance(obj, dict) and isinstance(obj.get("data"), str) and rng.random() < 0.7:  # cryptofeed payload
        inner_key = "data"
        try:
            outer, obj = obj, json.loads(obj["data"])
        except ValueError:
            return "none"
    nodes = list(_paths(obj))
    path, value = rng.choice(nodes)
    r = rng.random()
    if r < 0.15 and path and isinstance(path[-1], str):
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        del parent[path[-1]]
        what = f"deleted {path}"
    elif r < 0.45 and isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):
        new = _tweak_number_text(rng, value)
        obj = _set(obj, path, new)
        what = f"{path}: {value!r} -> {str(new)[:40]!r}"
    elif r < 0.55 and isinstance(value, list) and value:
        value.insert(rng.randrange(len(value) + 1), rng.choice(value))
        what = f"duplicated an item of {path}"
    else:
        new = rng.choice(HOSTILE)
        obj = _set(obj, path, new)
        what = f"{path}: -> {str(new)[:40]!r}"
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=rng.random() < 0.5).encode()
    if inner_key is not None:
        outer[inner_key] = text.decode()
        text = json.dumps(outer, separators=(",", ":")).encode()
    lines[i] = prefix + text + (b"\n" if raw.endswith(b"\n") else b"")
    return f"line {i + 1}: {what}"


def _mutate_bytes(rng: random.Random, lines: list[bytes]) -> str:
    r = rng.random()
    i = rng.randrange(len(lines))
    raw = lines[i]
    if r < 0.2 and len(raw) > 1:
        j = rng.randrange(len(raw))
        lines[i] = raw[:j] + bytes([rng.randrange(256)]) + raw[j + 1:]
        return f"line {i + 1}: byte {j} replaced"
    if r < 0.35:
        j = rng.randrange(len(raw) + 1)
        lines[i] = raw[:j] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + raw[j:]
        return f"line {i + 1}: bytes inserted at {j}"
    if r < 0.5:
        j = rng.randrange(len(raw) + 1)
        del lines[i + 1:]
        lines[i] = raw[:j]
        return f"file cut in line {i + 1} at byte {j}"
    if r < 0.65:
        lines.insert(i, raw if raw.endswith(b"\n") else raw + b"\n")
        return f"line {i + 1} duplicated"
    if r < 0.8 and len(lines) > 1:
        del lines[i]
        return f"line {i + 1} dropped"
    j = rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return f"lines {i + 1} and {j + 1} swapped"


def _container(rng: random.Random, data: bytes) -> tuple[bytes, str, str]:
    kind = rng.choice(["gzip", "zstd", "zip"])
    if kind == "gzip":
        packed, suffix = gzip.compress(data, mtime=0), ".gz"
    elif kind == "zstd":
        import zstandard

        packed, suffix = zstandard.ZstdCompressor().compress(data), ".zst"
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("rec.data", data)
        packed, suffix = buf.getvalue(), ".zip"
    r = rng.random()
    if r < 0.3:
        j = rng.randrange(1, len(packed))
        return packed[:j], suffix, f"{kind} cut at {j}/{len(packed)}"
    if r < 0.6:
        j = rng.randrange(len(packed))
        return packed[:j] + bytes([packed[j] ^ (1 << rng.randrange(8))]) + packed[j + 1:], suffix, f"{kind} bit flip at {j}"
    if r < 0.8:
        return packed + bytes(rng.randrange(256) for _ in range(rng.randint(1, 32))), suffix, f"{kind} + trailing garbage"
    return packed, suffix, f"{kind} intact"


def make_case(shared: Path, seed: int) -> tuple[bytes, str, str, str, str, str]:
    """The mutated input of iteration ``seed``: ``(bytes, suffix, symbol, kind, source, mutation)``."""
    rng = random.Random(seed)
    name, rel, symbol, kind, n = SOURCES[seed % len(SOURCES)]
    lines = _window(shared, rel, n)
    r = rng.random()
    if r < 0.55:
        what = _mutate_json(rng, lines, kind)
    elif r < 0.85:
        what = _mutate_bytes(rng, lines)
    else:
        what = "content intact"
    data = b"".join(lines)
    suffix = ".data"
    if rng.random() < 0.2:
        data, suffix, how = _container(rng, data)
        what += f"; {how}"
    return data, suffix, symbol, kind, name, what


# ------------------------------------------------------------------ the independent strict Bybit replay

_PLAIN = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)\Z")  # ASCII digits, at most one '.'
_IGNORED = {"tickers", "kline", "liquidation", "allLiquidation", "insurance", "lt", "adlAlert", "priceLimit",
            "kline_lt", "tickers_lt", "orderbook.rpi"}


class Refused(Exception):
    """The strict replay refuses the input."""


def _num(text) -> Decimal:
    if type(text) is not str or not _PLAIN.match(text):
        raise Refused(f"not a decimal string: {text!r}")
    return Decimal(text)


def _tick_of(prices: list[Decimal], texts: list[str]) -> Decimal:
    """The documented rule: ``d`` = most decimals; gcd of the prices in 10**-d with >= 20 distinct prices."""
    d = max((len(t) - t.index(".") - 1) if "." in t else 0 for t in texts)
    scale = Decimal(10) ** d
    ints = {int(p * scale) for p in prices}
    g = 1
    if len(ints) >= 20:
        g = 0
        for i in ints:
            g = math.gcd(g, i)
    return Decimal(g) / scale


def _levels(raw, tick: Decimal) -> list[tuple[int, float]]:
    if not isinstance(raw, list):
        raise Refused("levels not a list")
    out = []
    for lv in raw:
        if not isinstance(lv, list) or len(lv) != 2:
            raise Refused("level not a pair")
        p, s = _num(lv[0]), _num(lv[1])
        ticks = p / tick
        if p <= 0 or ticks != ticks.to_integral_value() or ticks >= 2**53:
            raise Refused(f"price {lv[0]!r} not on the grid / too large")
        q = float(s)
        if q == math.inf or (q == 0.0 and s != 0):
            raise Refused(f"size {lv[1]!r} not representable")
        out.append((int(ticks), q))
    return out


def strict_bybit(data: bytes, symbol: str) -> list[tuple]:  # noqa: C901 - the whole strict replay in one readable function
    """Books of ``symbol`` after each of its book messages: ``[(type, ts, u, bids, asks, tick)]``.

    Rules (docs/data.md, feeds/bybit.py): lines without the symbol's text that name a topic are
    skipped unread (the documented pre-filter); a book line needs ``type`` snapshot/delta, an
    integer ``ts`` that never goes back, an integer ``u`` following the previous one, levels of
    decimal strings on the tick grid (the tick inferred from the first snapshot); deltas before
    the first snapshot, and a crossed book after any message, are refused. Trades of the symbol
    are checked by the same number grammar.
    """
    if data[:2] == b"\x1f\x8b" or data[:4] in (b"\x28\xb5\x2f\xfd", b"PK\x03\x04"):
        data = _decompress(data)
    sym_bytes = symbol.encode()
    out: list[tuple] = []
    tick = None
    bids: dict[int, float] = {}
    asks: dict[int, float] = {}
    last_ts = last_u = None
    for raw in io.BytesIO(data):  # lines end at b"\n" only, as in the project (not at b"\r")
        if sym_bytes not in raw and b'"topic"' in raw:
            continue  # the byte pre-filter
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(Refused(c)))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise Refused(f"not JSON: {e}") from None
        if type(obj) is not dict:
            raise Refused("not an object")
        topic = obj.get("topic")
        if topic is None:
            if "success" in obj or "op" in obj:
                continue
            topic_sym = None
        elif type(topic) is not str:
            raise Refused("topic not a string")
        else:
            head, _, rest = topic.partition(".")
            if head == "publicTrade":
                _strict_trades(obj, rest, symbol, tick)
                continue
            if head != "orderbook":
                if head in _IGNORED or topic in _IGNORED:
                    continue
                raise Refused(f"unknown topic {topic!r}")
            topic_sym = rest.rpartition(".")[2]
        for k in ("type", "ts", "data"):
            if k not in obj:
                raise Refused(f"missing {k}")
        typ, ts, d = obj["type"], obj["ts"], obj["data"]
        if type(d) is not dict or "b" not in d or "a" not in d:
            raise Refused("data")
        if typ not in ("snapshot", "delta"):
            raise Refused("type")
        name = d.get("s") or topic_sym
        if name is not None and type(name) is not str:
            raise Refused("symbol type")
        if (name if name is not None else symbol) != symbol:
            continue
        u, seq = d.get("u"), d.get("seq")
        if type(ts) is not int or (u is not None and type(u) is not int) or (seq is not None and type(seq) is not int):
            raise Refused("ts/u/seq type")
        if tick is None:
            if typ != "snapshot":
                raise Refused("delta before snapshot")
            try:
                texts = [lv[0] for lv in d["b"]] + [lv[0] for lv in d["a"]]
                tick = _tick_of([_num(t) for t in texts], texts)
            except (TypeError, KeyError, IndexError, ZeroDivisionError, InvalidOperation) as e:
                raise Refused(f"tick: {e}") from None
            if tick <= 0:
                raise Refused("tick")
        if last_ts is not None and ts < last_ts:
            raise Refused("time backwards")
        if typ == "delta" and u is not None and last_u is not None and u != last_u + 1:
            raise Refused("gap")
        b, a = _levels(d["b"], tick), _levels(d["a"], tick)
        if typ == "snapshot":
            bids, asks = {}, {}
        for book, lv in ((bids, b), (asks, a)):
            for p, q in lv:
                if q == 0:
                    book.pop(p, None)
                else:
                    book[p] = q
        if bids and asks and max(bids) >= min(asks):
            raise Refused("crossed")
        last_ts, last_u = ts, u
        out.append((typ, ts, u, dict(bids), dict(asks), tick))
    return out


def _strict_trades(obj: dict, topic_sym: str, symbol: str, tick) -> None:
    d = obj.get("data")
    if type(d) is not list:
        raise Refused("trades not a list")
    for tr in d:
        if type(tr) is not dict:
            raise Refused("trade not an object")
        name = tr.get("s") or topic_sym
        if type(name) is not str:
            raise Refused("trade symbol")
        if name != symbol:
            return
        for k in ("T", "p", "v", "S"):
            if k not in tr:
                raise Refused(f"trade {k}")
        if tr["S"] not in ("Buy", "Sell") or type(tr["T"]) is not int:
            raise Refused("trade side/time")
        if tick is None:
            continue  # dropped: tick size unknown before the first snapshot
        _levels([[tr["p"], tr["v"]]], tick)
        if Decimal(tr["v"]) == 0:
            raise Refused("trade size 0")


def _decompress(data: bytes) -> bytes:
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = [m for m in zf.infolist() if not m.is_dir()]
                if len(names) != 1:
                    raise Refused("zip members")
                return zf.read(names[0])
        import zstandard

        obj = zstandard.ZstdDecompressor().decompressobj()
        out = obj.decompress(data)
        if not obj.eof or obj.unused_data:
            raise Refused("zstd incomplete or trailing data")
        return out
    except Refused:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder complaint is a refusal here
        raise Refused(f"container: {e}") from None


# ------------------------------------------------------------------ one iteration


def project_books(path: Path, symbol: str) -> list[tuple]:
    out = []
    for msg, book in dp.replay(path, symbol=symbol):
        if type(msg) is SnapshotMessage or type(msg) is DeltaMessage:
            out.append(("snapshot" if type(msg) is SnapshotMessage else "delta", msg.ts, msg.update_id,
                        dict(book.bids), dict(book.asks), Decimal(repr(msg.tick_size))))
    return out


def run_case(shared: Path, tmp: Path, seed: int, stats: Counter) -> str | None:
    """One iteration; a failure's description, or None."""
    data, suffix, symbol, kind, source, what = make_case(shared, seed)
    path = tmp / f"fuzz{seed}{suffix}"
    path.write_bytes(data)
    label = f"seed {seed} ({source}; {what})"
    saved = order_book.SPEEDUPS
    if seed % 2:
        order_book.SPEEDUPS = None  # the pure-Python loops on odd seeds
    try:
        try:
            got = project_books(path, symbol)
            if seed % 10 == 0:
                dp.Replay(path, symbol, cache_dir=tmp / "cache", checkpoint_interval_ms=1_000)
        except ValueError as e:
            stats["refused"] += 1
            if str(path) not in str(e):
                return f"{label}: {type(e).__name__} does not name the file: {e}"
            if "\n" in str(e):
                return f"{label}: error of several lines: {e!r}"
            if ".plain" in str(e):
                return f"{label}: error names the cache copy: {e}"
            return None
        except Exception as e:  # noqa: BLE001 - the oracle: anything else is a crash
            stats["crashes"] += 1
            return f"{label}: crash {type(e).__name__}: {e}"
    finally:
        order_book.SPEEDUPS = saved
        path.unlink()
    stats["accepted"] += 1
    if kind != "bybit":
        return None
    try:
        want = strict_bybit(data, symbol)
    except Refused as e:
        return f"{label}: the project accepted what the strict replay refuses ({e})"
    stats["compared"] += 1
    stats["book_messages_compared"] += len(want)
    if len(got) != len(want):
        return f"{label}: {len(got)} book messages, strict replay {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g != w:
            return f"{label}: book differs after book message {i + 1}: project {g[:3]} vs strict {w[:3]}"
    return None


def fuzz(shared: Path, tmp: Path, seeds: range, cap_s: float) -> tuple[Counter, list[str]]:
    stats: Counter = Counter()
    failures: list[str] = []
    t0 = time.monotonic()
    for seed in seeds:
        if time.monotonic() - t0 > cap_s:
            stats["stopped_by_time_cap"] = 1
            break
        stats["iterations"] += 1
        fail = run_case(shared, tmp, seed, stats)
        if fail:
            failures.append(fail)
    stats["seconds"] = round(time.monotonic() - t0, 1)
    return stats, failures


# ------------------------------------------------------------------ tests


def test_strict_replay_agrees_on_the_intact_windows(shared_data, tmp_path):
    """The oracle itself: on unmutated windows both replays accept and agree."""
    for name, rel, symbol, kind, n in SOURCES:
        if kind != "bybit":
            continue
        data = b"".join(_window(shared_data, rel, n))
        p = tmp_path / f"{name}.data"
        p.write_bytes(data)
        want = strict_bybit(data, symbol)
        assert len(want) >= 10 and project_books(p, symbol) == want, name


def test_strict_replay_refuses_what_it_should(shared_data):
    lines = _window(shared_data, SOURCES[0][1], 5)
    data = b"".join(lines)
    off_grid = lines[0] + lines[1].replace(b'"b":[["', b'"b":[["0.00001', 1) + b"".join(lines[2:])
    for bad in (data.replace(b'"6203"', b'"6_203"'), off_grid, data.replace(b'"u":20254870', b'"u":20254872'),
                data[: len(data) // 2], data.replace(b'"delta"', b'"snapshot"', 1).replace(b'"a":[["1.9', b'"a":[["0.9', 1)):
        with pytest.raises(Refused):
            strict_bybit(bad, "XRPUSDT")


def test_fuzz_ci(shared_data, tmp_path):
    stats, failures = fuzz(shared_data, tmp_path, range(FUZZ_ITERATIONS), FUZZ_CAP_S)
    print(f"fuzz (CI): {dict(stats)}")
    assert not failures, "\n".join(failures[:20])
    assert stats["iterations"] >= min(FUZZ_ITERATIONS, 50) and stats["refused"] > 0 and stats["compared"] > 0


@pytest.mark.slow
def test_fuzz_long(shared_data, tmp_path):
    seconds = float(os.environ.get("RLMM_FUZZ_SECONDS", "120"))
    stats, failures = fuzz(shared_data, tmp_path, range(FUZZ_ITERATIONS, 10**9), seconds)
    print(f"fuzz (slow): {dict(stats)}")
    report = os.environ.get("RLMM_FUZZ_REPORT")
    if report:
        Path(report).write_bytes(orjson.dumps({"stats": dict(stats), "failures": failures}, option=orjson.OPT_INDENT_2))
    assert not failures, "\n".join(failures[:20])
