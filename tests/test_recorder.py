"""The live recorder against a real local websocket server replaying real recordings.

A ``websockets`` server on 127.0.0.1 (a thread of this process) replays real payloads message
by message to the recorder, run as a subprocess (``python data_processor.py record --venue
...``): OKX (``../shared/data/okx/cryptofeed_v3_OKX.jsonl.gz``), Bybit (the linear websocket
payloads of ``../shared/data/bybit/``) and Binance USDⓈ-M (the head of
``btcusdt_20240718.gz``, its REST depth snapshot served over HTTP by the same server).
Mid-stream the server drops the connection (no close frame) and "loses" the next messages, as
a real outage would; on the reconnect it re-sends a snapshot of its own book (OKX with OKX's
checksum, Bybit continuing the ``u`` numbering; Binance through the REST snapshot, which the
recorder fetches again) and goes on with the recording, whose own integrity rules (OKX
checksums, Bybit ``u``, Binance ``pu``) then verify the loader's book after the gap. The test
then stops the recorder with SIGINT (Ctrl-C) and checks: exit status 0, files rotated and
gzip-compressed, nothing lost (every payload sent is in the files, the final ``disconnect``
written at shutdown too), the files load with ``load_messages`` (checksums verified), the gap is
reported and flagged, the loader's book after the gap and at the end equals the server's, and
``Replay`` lists the gap. No internet: loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path

import pytest

pytest.importorskip("websockets")

REPO = Path(__file__).resolve().parent.parent


class _Book:
    """The server's own book of one instrument: Decimal price -> (price text, size text)."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, bids, asks, snapshot: bool) -> None:
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz, *_ in levels:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)

    def sorted(self):
        return ([self.bids[k] for k in sorted(self.bids, reverse=True)],
                [self.asks[k] for k in sorted(self.asks)])


class OkxVenue:
    """The real OKX capture; re-snapshots carry OKX's checksum, computed here."""

    name, symbol, loader_symbol, drop_at, lost = "okx", "BTC-USDT", "BTC-USDT", 200, 15

    def __init__(self, data: Path) -> None:
        with gzip.open(data / "okx" / "cryptofeed_v3_OKX.jsonl.gz", "rt") as fh:
            recs = [json.loads(ln) for ln in fh if ln.strip()]
        self.payloads = [r["data"] for r in recs if r["t"] == "recv"]
        self.books: dict[str, _Book] = {}
        self.ts: dict[str, str] = {}

    def url_path(self) -> str:
        return "/ws/v5/public"

    def apply(self, text: str) -> None:
        msg = json.loads(text)
        if msg.get("arg", {}).get("channel") == "books" and "action" in msg:
            inst = msg["arg"]["instId"]
            for d in msg["data"]:
                self.books.setdefault(inst, _Book()).apply(d["bids"], d["asks"], msg["action"] == "snapshot")
                self.ts[inst] = d["ts"]

    def resnapshot(self) -> list[str]:
        out = []
        for inst in sorted(self.books):
            b, a = self.books[inst].sorted()
            parts = []
            for i in range(25):
                parts += list(b[i]) if i < len(b) else []
                parts += list(a[i]) if i < len(a) else []
            crc = zlib.crc32(":".join(parts).encode())
            d = {"asks": [[p, q, "0", "1"] for p, q in a], "bids": [[p, q, "0", "1"] for p, q in b],
                 "ts": self.ts[inst], "checksum": crc - 2**32 if crc >= 2**31 else crc}
            out.append(json.dumps({"arg": {"channel": "books", "instId": inst}, "action": "snapshot", "data": [d]},
                                  separators=(",", ":")))
        return out

    def rest(self, path: str) -> str | None:
        return None

    def gap_ts(self) -> int:
        return int(self.ts[self.symbol])


class BybitVenue:
    """The real Bybit linear websocket payloads; re-snapshots continue the ``u`` numbering."""

    name, symbol, loader_symbol, drop_at, lost = "bybit", "BTCUSDT", "linear:BTCUSDT", 800, 20

    def __init__(self, data: Path) -> None:
        path = data / "bybit" / "cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
        self.payloads = [ln for ln in path.read_text().splitlines() if ln.strip()]
        self.books: dict[str, _Book] = {}
        self.last: dict[str, dict] = {}

    def url_path(self) -> str:
        return "/v5/public/linear"  # the loader qualifies Bybit symbols by this last segment

    def apply(self, text: str) -> None:
        msg = json.loads(text)
        if msg.get("topic", "").startswith("orderbook."):
            d = msg["data"]
            self.books.setdefault(d["s"], _Book()).apply(d["b"], d["a"], msg["type"] == "snapshot")
            self.last[d["s"]] = {"topic": msg["topic"], "ts": msg["ts"], "u": d["u"], "seq": d["seq"]}

    def resnapshot(self) -> list[str]:
        out = []
        for s in sorted(self.books):
            b, a = self.books[s].sorted()
            last = self.last[s]
            out.append(json.dumps({"topic": last["topic"], "type": "snapshot", "ts": last["ts"],
                                   "data": {"s": s, "b": [list(x) for x in b], "a": [list(x) for x in a],
                                            "u": last["u"], "seq": last["seq"]}, "cts": last["ts"]},
                                  separators=(",", ":")))
        return out

    def rest(self, path: str) -> str | None:
        return None

    def gap_ts(self) -> int:
        return self.last[self.symbol]["ts"]


class BinanceVenue:
    """The head of a real Binance USDⓈ-M recording; the REST depth snapshot served over HTTP.

    On the first connection the REST endpoint returns the recording's own snapshot; after the
    drop it returns the server's book (synchronised by Binance's rule) with ``lastUpdateId`` =
    the last diff sent, as the venue would.
    """

    name, symbol, loader_symbol, drop_at, lost = "binance", "BTCUSDT", "BTCUSDT", 1500, 40

    def __init__(self, data: Path) -> None:
        with gzip.open(data / "binance" / "hftbacktest-usdm" / "btcusdt_20240718.gz", "rt") as fh:
            lines = [next(fh) for _ in range(3000)]
        self.payloads, self.snapshot = [], None
        for ln in lines:
            text = ln.rstrip("\n").partition(" ")[2]
            if '"lastUpdateId"' in text:
                self.snapshot = text
            else:
                self.payloads.append(text)
        assert self.snapshot is not None
        snap = json.loads(self.snapshot)
        self.book = _Book()
        self.book.apply(snap["bids"], snap["asks"], True)
        self.lid, self.t = snap["lastUpdateId"], snap["T"]
        self.books = {self.symbol: self.book}
        self.connection = 0

    def url_path(self) -> str:
        return "/stream"

    def apply(self, text: str) -> None:
        d = json.loads(text)["data"]
        if d["e"] == "depthUpdate" and d["u"] >= self.lid:  # Binance's rule: older diffs are in the snapshot
            self.book.apply(d["b"], d["a"], False)
            self.lid, self.t = d["u"], d["T"]

    def resnapshot(self) -> list[str]:
        return []  # Binance re-syncs through the REST snapshot

    def rest(self, path: str) -> str | None:
        if not path.startswith("/depth"):
            return None
        if self.connection <= 1:
            return self.snapshot
        b, a = self.book.sorted()
        self.rest_t, self.rest_book = self.t, (b, a)
        return json.dumps({"lastUpdateId": self.lid, "E": self.t, "T": self.t,
                           "bids": [list(x) for x in b], "asks": [list(x) for x in a]})

    def gap_ts(self) -> int:
        return self.rest_t  # (set by ``rest``; read only after the REST request)


class CoinbaseVenue:
    """The head of the real Coinbase Exchange capture (the recorder subscribes to Advanced Trade;
    the loader reads both APIs); re-snapshots are Exchange ``snapshot`` messages (no time: the
    loader gives them the time of the product's next update)."""

    name, symbol, loader_symbol, drop_at, lost = "coinbase", "SKL-USD", "SKL-USD", 1200, 30

    def __init__(self, data: Path) -> None:
        with gzip.open(data / "coinbase" / "cryptofeed_COINBASE.ws.28.0.gz", "rt") as fh:
            lines = [next(fh) for _ in range(3000)]
        self.payloads = [ln.partition(": ")[2].strip() for ln in lines if ln[:1].isdigit()]
        self.books: dict[str, _Book] = {}

    def url_path(self) -> str:
        return "/"

    def apply(self, text: str) -> None:
        msg = json.loads(text)
        if msg["type"] == "snapshot":
            self.books.setdefault(msg["product_id"], _Book()).apply(msg["bids"], msg["asks"], True)
        elif msg["type"] == "l2update":
            ch = msg["changes"]
            self.books[msg["product_id"]].apply([c[1:] for c in ch if c[0] == "buy"],
                                                [c[1:] for c in ch if c[0] == "sell"], False)

    def resnapshot(self) -> list[str]:
        out = []
        for p in sorted(self.books):
            b, a = self.books[p].sorted()
            out.append(json.dumps({"type": "snapshot", "product_id": p, "bids": [list(x) for x in b],
                                   "asks": [list(x) for x in a]}, separators=(",", ":")))
        return out

    def rest(self, path: str) -> str | None:
        return None

    def gap_ts(self) -> int:
        import calendar

        for text in self.payloads[self.drop_at + self.lost:]:
            msg = json.loads(text)
            if msg["type"] == "l2update" and msg["product_id"] == self.symbol:
                head, _, frac = msg["time"].rstrip("Z").partition(".")
                return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) * 1000 + int((frac + "000")[:3])
        raise AssertionError("no update after the gap")


class ReplayServer:
    """Replays a venue's recorded payloads; drops the first connection at ``venue.drop_at``."""

    def __init__(self, venue) -> None:
        self.venue = venue
        self.sent: list[str] = []
        self.subscriptions: list[str] = []
        self.connections = 0
        self.book_at_gap: tuple | None = None
        self.gap_ts: int | None = None
        self.done = threading.Event()
        self.port: int | None = None
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None

    async def _send(self, ws, text: str) -> None:
        await ws.send(text)
        self.sent.append(text)

    async def handler(self, ws) -> None:
        v = self.venue
        n = self.connections
        self.connections += 1
        v.connection = self.connections
        if v.name != "binance":  # Binance subscribes through the URL
            self.subscriptions.append(await ws.recv())
        pong = asyncio.create_task(self._pongs(ws))
        try:
            if n == 0:
                for text in v.payloads[:v.drop_at]:
                    v.apply(text)
                    await self._send(ws, text)
                for text in v.payloads[v.drop_at:v.drop_at + v.lost]:  # the outage: never sent
                    v.apply(text)
                await asyncio.sleep(0.05)
                ws.transport.abort()  # a dropped connection: no close frame
                return
            self.book_at_gap = v.books[v.symbol].sorted()
            if v.name != "binance":
                self.gap_ts = v.gap_ts()
            for text in v.resnapshot():
                await self._send(ws, text)
            for text in v.payloads[v.drop_at + v.lost:]:
                v.apply(text)  # before sending: a REST snapshot never runs ahead of the stream
                await self._send(ws, text)
            if v.name == "binance":  # the resumption is the REST snapshot fetched after the drop
                for _ in range(1500):
                    if hasattr(v, "rest_t"):
                        break
                    await asyncio.sleep(0.02)
                self.gap_ts, self.book_at_gap = v.rest_t, v.rest_book
            self.done.set()
            await ws.wait_closed()
        finally:
            pong.cancel()

    async def _pongs(self, ws) -> None:
        async for text in ws:
            if text == "ping":
                await ws.send("pong")  # OKX's keepalive reply (not JSON): the recorder skips it

    def process_request(self, connection, request):
        body = self.venue.rest(request.path)
        if body is not None:
            return connection.respond(HTTPStatus.OK, body)
        return None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self.stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        async with serve(self.handler, "127.0.0.1", 0, process_request=self.process_request,
                         max_size=1 << 26) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self.ready.set()
            await self.stop.wait()

    def shutdown(self) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)


def _read(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt") as fh:
            out += [json.loads(ln) for ln in fh if ln.strip()]
    return out


VENUE_CLASSES = {"okx": OkxVenue, "bybit": BybitVenue, "binance": BinanceVenue, "coinbase": CoinbaseVenue}


@pytest.fixture(params=list(VENUE_CLASSES))
def server(shared_data, request):
    srv = ReplayServer(VENUE_CLASSES[request.param](shared_data))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    assert srv.ready.wait(10)
    yield srv
    srv.shutdown()
    th.join(10)


def _wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_recorder_survives_a_dropped_connection_and_ctrl_c(server, tmp_path):
    from data_processor import LoadReport, Replay, SnapshotMessage, load_messages
    from order_book import OrderBook

    v = server.venue
    out = tmp_path / "rec" / f"{v.name}.jsonl"
    base = f"127.0.0.1:{server.port}"
    cmd = [sys.executable, "data_processor.py", "record", "--venue", v.name, "--symbol", v.symbol,
           "--out", str(out), "--url", f"ws://{base}{v.url_path()}", "--rotate_mb", "0.1",
           "--flush_s", "0.05", "--backoff_initial_s", "0.1", "--ping_s", "0.3", "-v",
           "--max_reconnects", "0"]  # a drop after data is not a failed attempt: no give-up
    if v.name == "binance":
        cmd += ["--rest_url", f"http://{base}/depth?symbol={v.symbol}&limit=1000"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.done.wait(90), "the server never finished replaying"
        last = server.sent[-1]

        def written() -> bool:  # the last payload has reached the disk (rotated files included)
            files = sorted(out.parent.glob(f"{v.name}.*"))
            try:
                return any(r.get("data") == last for r in _read([f for f in files if not f.name.endswith(".tmp")]))
            except (EOFError, OSError, json.JSONDecodeError):  # a file being compressed right now
                return False

        _wait_for(written, 60, "the recorder to write the last payload")
        time.sleep(0.5)  # a few keepalive pings / pongs go by
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "connection lost" in stderr or "closed by the server" in stderr  # the drop was seen and logged

    # Files: rotated, every finished one compressed (no plain or temporary file left), in order.
    files = sorted(out.parent.iterdir())
    assert len(files) >= 3 and all(f.name.endswith(".jsonl.gz") for f in files), files
    assert stdout.split() == [str(f) for f in files]
    recs = _read(files)
    assert sum(r["t"] == "header" for r in recs) == len(files)
    assert all(f.open("rb").read(2) == b"\x1f\x8b" for f in files)

    # Nothing lost, nothing invented: every payload the server sent, in order; pongs skipped.
    received = [r["data"] for r in recs if r["t"] == "recv"]
    assert received == server.sent
    assert len(received) == len(v.payloads) - v.lost + len(v.resnapshot())
    assert [r["t"] for r in recs if r["t"] in ("connect", "disconnect")] == ["connect", "disconnect", "connect", "disconnect"]
    assert recs[-1]["t"] == "disconnect" and recs[-1]["reason"] == "stopped by the user"  # written at Ctrl-C
    assert server.connections == 2
    assert sum(r["t"] == "http" for r in recs) == (2 if v.name == "binance" else 0)

    # The loader reads the files as one recording: the venue's rules hold, the gap is a gap.
    rep = LoadReport()
    book = None
    after_gap = None
    n_book = 0
    for m in load_messages(files, symbol=v.loader_symbol, report=rep):
        if book is None:
            book = OrderBook(m.symbol, m.tick_size)
        book.apply(m)
        if isinstance(m, SnapshotMessage) and m.gap:
            after_gap = (list(book.bids.items()), list(book.asks.items()))
        n_book += not hasattr(m, "side")
    assert rep.n_problems == 0 and rep.gaps == 1
    if v.name == "okx":  # every book message of BTC-USDT verified by its checksum
        sent_books = [s for s in server.sent if '"channel":"books"' in s and '"action"' in s and v.symbol + '"' in s]
        assert rep.checksums == len(sent_books) == n_book

    tick = Decimal(repr(book.tick_size))

    def ticks(levels):
        return [(int(Decimal(p) / tick), float(q)) for p, q in levels]

    gb, ga = server.book_at_gap
    assert after_gap == (sorted(ticks(gb)), ticks(ga))  # the book after the gap is the server's
    fb, fa = v.books[v.symbol].sorted()
    assert (list(book.bids.items()), list(book.asks.items())) == (sorted(ticks(fb)), ticks(fa))

    r = Replay(files, symbol=v.loader_symbol, cache_dir=tmp_path / "cache")
    assert r.gap_ts == [server.gap_ts] and r.gaps[0][0] <= r.gaps[0][1]


def test_record_help_documents_every_flag(capsys):
    import data_processor
    import recorder
    from utils import field_docstrings

    with pytest.raises(SystemExit) as e:
        data_processor.main(["record", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    docs = field_docstrings(recorder.RecorderConfig)
    assert len(docs) >= 15
    for name, doc in docs.items():
        assert f"--{name}" in out
        assert " ".join(doc.split()[:4]) in out, name  # its docstring is the help text
    for venue in ("bybit", "binance", "coinbase", "okx"):
        assert venue in out


def test_record_refuses_bad_flags_in_one_line(capsys):
    import data_processor

    for argv, msg in ((["--venue", "kraken", "--symbol", "X", "--out", "x"], "invalid choice: 'kraken'"),
                      (["--venue", "okx", "--symbol", "X", "--out", "x", "--rotate_mb", "0"],
                       "rotate_mb must be a positive number"),
                      (["--venue", "okx", "--out", "x"], "the following arguments are required: --symbol")):
        with pytest.raises(SystemExit) as e:
            data_processor.main(["record", *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err


def test_recorder_gives_up_after_max_reconnects(tmp_path, capsys):
    """Nothing listens on the port: bounded retries, then a one-line error (exit 1)."""
    import socket

    import data_processor

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = data_processor.main(["record", "--venue", "bybit", "--symbol", "BTCUSDT", "--out", str(tmp_path / "b.jsonl"),
                                "--url", f"ws://127.0.0.1:{port}", "--max_reconnects", "2", "--backoff_initial_s", "0.05"])
    err = capsys.readouterr().err
    assert code == 1 and "3 connection attempts in a row failed" in err
    assert list(tmp_path.iterdir()) == []  # nothing connected, no file


def test_recorder_stops_on_a_venue_refusal(tmp_path, capsys):
    """OKX refuses the subscription (an unknown instrument): exit 1 with OKX's own message."""
    from websockets.sync.server import serve

    import data_processor

    def handler(ws):
        ws.recv()
        ws.send('{"event":"error","msg":"Wrong URL or channel:books,instId:BTC-XYZ doesn\'t exist.","code":"60018"}')
        with contextlib.suppress(Exception):
            ws.recv()

    with serve(handler, "127.0.0.1", 0) as srv:
        th = threading.Thread(target=srv.serve_forever, daemon=True)
        th.start()
        code = data_processor.main(["record", "--venue", "okx", "--symbol", "BTC-XYZ", "--out", str(tmp_path / "o.jsonl"),
                                    "--url", f"ws://127.0.0.1:{srv.socket.getsockname()[1]}"])
        srv.shutdown()
    err = capsys.readouterr().err
    assert code == 1 and "OKX refused: Wrong URL or channel:books,instId:BTC-XYZ doesn't exist. (code 60018)" in err
    files = list(tmp_path.iterdir())  # what was received is kept (and compressed)
    assert len(files) == 1 and files[0].name.endswith(".jsonl.gz")


def test_rotating_writer_rotates_by_age_and_compresses_with_zstd(tmp_path):
    """Age-based rotation (``rotate_minutes``), zstd output, names in recording order, and the
    records of each file read back by the loader's capture parser."""
    import recorder
    from data_processor import load_messages

    cfg = recorder.RecorderConfig(venue="okx", symbol="BTC-USDT", out=str(tmp_path / "o.jsonl"),
                                  rotate_minutes=0.2 / 60, compress="zstd")
    w = recorder.RotatingWriter(cfg, {"t": "header", "format": 2, "exchange": "OKX"})
    snap = ('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["100.1","1","0","1"]],'
            '"bids":[["100.0","2","0","1"]],"ts":"1000"}]}')
    w.write({"t": "connect", "conn": "OKX.ws.1", "ts": 1.0, "addr": "wss://ws.okx.com:8443/ws/v5/public"})
    w.write({"t": "recv", "conn": "OKX.ws.1", "ts": 1.0, "data": snap})
    for i in range(3):
        time.sleep(0.25)
        upd = ('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],'
               f'"bids":[["100.0","{3 + i}","0","1"]],"ts":"{1001 + i}"}}]}}')
        w.write({"t": "recv", "conn": "OKX.ws.1", "ts": 2.0 + i, "data": upd})
    files = w.close()
    assert len(files) == 4 and files == sorted(files) and all(f.name.endswith(".jsonl.zst") for f in files)
    assert all(f.open("rb").read(4) == b"\x28\xb5\x2f\xfd" for f in files)  # zstd magic
    assert not [p for p in tmp_path.iterdir() if p not in files]  # no plain or temporary file left
    msgs = list(load_messages(files))
    assert [m.bids for m in msgs] == [[(1000, 2.0)], [(1000, 3.0)], [(1000, 4.0)], [(1000, 5.0)]]


def test_disk_full_is_one_line_and_keeps_what_was_written(tmp_path):
    import errno

    import recorder

    cfg = recorder.RecorderConfig(venue="okx", symbol="BTC-USDT", out=str(tmp_path / "o.jsonl"), compress="none")
    w = recorder.RotatingWriter(cfg, {"t": "header", "format": 2, "exchange": "OKX"})
    w.write({"t": "connect", "conn": "OKX.ws.1", "ts": 1.0, "addr": "wss://ws.okx.com:8443/ws/v5/public"})
    w.flush()

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            self.fh.flush()

        def close(self):
            self.fh.close()

    w.fh = Full(w.fh)
    with pytest.raises(recorder.RecorderError, match=r"cannot write .*o\..*Z\.jsonl: No space left on device"):
        w.write({"t": "recv", "conn": "OKX.ws.1", "ts": 2.0, "data": "{}"})
    files = w.close()
    assert len(files) == 1 and [json.loads(ln)["t"] for ln in files[0].read_text().splitlines()] == ["header", "connect"]
