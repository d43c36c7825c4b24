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
2. **No wrong book**: where the project accepts a Bybit-format or a Binance input, an
   independent strict replay of that format (``tests/strict_replays.py``: ``json`` + ``Decimal``
   + plain dicts, nothing from ``feeds/``; the documented rules: number grammar, tick grid,
   time order, no crossing, and each venue's sync: Bybit's ``u`` continuity, Binance's REST
   snapshot with ``U``/``u``/``pu``) must accept it too and give the same full book after every
   book message. The cryptofeed capture is held to oracle 1 only (kind "other").

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
import os
import random
import re
import time
import zipfile
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from strict_replays import Refused, strict_binance, strict_bybit

import data_processor as dp
import order_book
from data_processor import DeltaMessage, SnapshotMessage

FUZZ_ITERATIONS = int(os.environ.get("RLMM_FUZZ_ITERATIONS", "300"))
"""Iterations of the default (CI) run; seeds 0..N-1."""
FUZZ_CAP_S = 60.0
"""Wall-clock cap of the default run (it stops early, with a note, on a very slow machine)."""

# (name, relative path, symbol, kind, lines in the window); kind picks the strict replay (STRICT)
SOURCES = [
    ("bybit-history", "bybit/2024-12-01_XRPUSDT_ob500.data", "XRPUSDT", "bybit", 50),
    ("bybit-linear", "bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl", "ETHUSDT", "bybit", 220),
    ("bybit-spot", "bybit/cryptofeed_v3_BYBIT_spot_ob200_publicTrade.jsonl", "BTCUSDT", "bybit", 160),
    ("cryptofeed", "bybit/cryptofeed_v3_BYBIT.jsonl.zst", "linear:SOLUSDT", "other", 400),
    ("binance", "binance/hftbacktest-usdm/btcusdt_20240718.gz", "BTCUSDT", "binance", 300),
]

STRICT = {"bybit": strict_bybit, "binance": strict_binance}
"""The independent strict replay of each kind of input (``tests/strict_replays.py``); "other": none."""

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
    if kind == "binance" and raw[:1].isdigit():  # "<local_ns> <json>"
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
    strict = STRICT.get(kind)
    if strict is None:  # cryptofeed captures: oracle 1 only
        return None
    try:
        want = strict(data, symbol)
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


def test_strict_bybit_agrees_on_the_intact_windows(shared_data, tmp_path):
    """The oracle itself: on unmutated windows both replays accept and agree."""
    for name, rel, symbol, kind, n in SOURCES:
        if kind != "bybit":
            continue
        data = b"".join(_window(shared_data, rel, n))
        p = tmp_path / f"{name}.data"
        p.write_bytes(data)
        want = strict_bybit(data, symbol)
        assert len(want) >= 10 and project_books(p, symbol) == want, name


def test_strict_bybit_refuses_what_it_should(shared_data):
    lines = _window(shared_data, SOURCES[0][1], 5)
    data = b"".join(lines)
    off_grid = lines[0] + lines[1].replace(b'"b":[["', b'"b":[["0.00001', 1) + b"".join(lines[2:])
    for bad in (data.replace(b'"6203"', b'"6_203"'), off_grid, data.replace(b'"u":20254870', b'"u":20254872'),
                data[: len(data) // 2], data.replace(b'"delta"', b'"snapshot"', 1).replace(b'"a":[["1.9', b'"a":[["0.9', 1)):
        with pytest.raises(Refused):
            strict_bybit(bad, "XRPUSDT")


def test_strict_binance_agrees_on_the_intact_window(shared_data, tmp_path):
    """The Binance oracle itself: on the unmutated window both replays accept and agree."""
    name, rel, symbol, _, n = SOURCES[4]
    data = b"".join(_window(shared_data, rel, n))
    p = tmp_path / f"{name}.data"
    p.write_bytes(data)
    want = strict_binance(data, symbol)
    assert len(want) >= 10 and want[0][0] == "snapshot"
    assert project_books(p, symbol) == want


def _binance_bad_inputs(shared_data) -> dict[str, bytes]:
    """Hand-made corruptions of the first 40 lines of the Binance window, each in a diff that is applied."""
    lines = _window(shared_data, SOURCES[4][1], 40)
    snap_at = next(i for i, ln in enumerate(lines) if b'"lastUpdateId"' in ln)
    i = next(i for i, ln in enumerate(lines) if i > snap_at + 1 and b'"depthUpdate"' in ln)
    diff = json.loads(lines[i].partition(b" ")[2])["data"]
    pu, t = diff["pu"], diff["T"]

    def edit(old: bytes, new: bytes) -> bytes:
        assert old in lines[i]
        return b"".join([*lines[:i], lines[i].replace(old, new, 1), *lines[i + 1:]])

    return {
        "pu gap": edit(b'"pu":%d' % pu, b'"pu":%d' % (pu + 1)),
        "off-grid price": edit(b'"b":[[', b'"b":[["100.05","1"],['),
        "number, not a string": edit(b'"b":[[', b'"b":[[62000.0,"1"],['),
        "time going back": edit(b'"T":%d' % t, b'"T":%d' % (t - 10**6)),
        "crossing diff": edit(b'"b":[[', b'"b":[["99999.90","1"],['),
    }


@pytest.mark.parametrize("case,strict_reason,project_reason", [
    ("pu gap", "pu gap", "gap in update ids"),
    ("off-grid price", "not on the grid", "off the tick grid"),
    ("number, not a string", "not a decimal string", "is not a decimal string"),
    ("time going back", "time backwards", "timestamp goes backwards"),
    ("crossing diff", "crossed", "is crossed"),
])
def test_strict_binance_and_the_project_refuse_what_they_should(shared_data, tmp_path, case, strict_reason,
                                                                 project_reason):
    bad = _binance_bad_inputs(shared_data)[case]
    with pytest.raises(Refused, match=strict_reason):
        strict_binance(bad, "BTCUSDT")
    p = tmp_path / "bad.data"
    p.write_bytes(bad)
    with pytest.raises(ValueError, match=project_reason):
        project_books(p, "BTCUSDT")


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
