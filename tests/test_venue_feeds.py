"""OKX, Coinbase and BitMEX parsers: every problem named by file and line, and recorded gaps.

Small hand-made files in the venues' real shapes (``feeds/okx.py``, ``feeds/coinbase.py``,
``feeds/bitmex.py`` quote real lines), plus the real OKX capture with one size altered.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from data_processor import DataFormatError, LoadReport, SnapshotMessage, load_messages
from feeds.okx import okx_checksum


def _write(tmp_path: Path, name: str, lines: list) -> Path:
    p = tmp_path / name
    p.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln, separators=(",", ":"))) + "\n" for ln in lines))
    return p


def _okx_book(action, bids, asks, ts, seq=None, prev=None, checksum=True, inst="BTC-USDT"):
    d = {"asks": [[p, s, "0", "1"] for p, s in asks], "bids": [[p, s, "0", "1"] for p, s in bids], "ts": str(ts)}
    if seq is not None:
        d["seqId"], d["prevSeqId"] = seq, prev
    msg = {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [d]}
    return msg


def _okx_lines(with_checksums: bool = True):
    """Snapshot + two updates with correct checksums and a seqId chain 10 -> 11 -> 12."""
    book_b = {"100.0": "2", "99.9": "1"}
    book_a = {"100.1": "1", "100.2": "5"}
    steps = [("snapshot", [("100.0", "2"), ("99.9", "1")], [("100.1", "1"), ("100.2", "5")], 10, -1),
             ("update", [("99.9", "0"), ("99.8", "3")], [], 11, 10),
             ("update", [], [("100.1", "4")], 12, 11)]
    out = []
    for i, (action, b, a, seq, prev) in enumerate(steps):
        for p, s in b:
            book_b.pop(p) if s == "0" else book_b.__setitem__(p, s)
        for p, s in a:
            book_a.pop(p) if s == "0" else book_a.__setitem__(p, s)
        msg = _okx_book(action, b, a, 1000 + i, seq, prev)
        if with_checksums:
            bids = sorted(book_b.items(), key=lambda kv: -float(kv[0]))
            asks = sorted(book_a.items(), key=lambda kv: float(kv[0]))
            msg["data"][0]["checksum"] = okx_checksum(bids, asks)
        out.append(msg)
    return out


# -------------------------------------------------------------------------------- OKX


def test_okx_raw_payload_file_loads_with_chain_and_checksums(tmp_path):
    path = _write(tmp_path, "okx.jsonl", [{"event": "subscribe", "arg": {"channel": "books", "instId": "BTC-USDT"}},
                                          *_okx_lines()])
    rep = LoadReport()
    msgs = list(load_messages(path, report=rep))
    assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "DeltaMessage", "DeltaMessage"]
    assert [m.update_id for m in msgs] == [10, 11, 12]
    assert msgs[1].bids == [(999, 0.0), (998, 3.0)] and msgs[0].tick_size == 0.1
    assert rep.checksums == 3 and rep.ignored_lines == 1


def test_okx_sequence_gap_named_by_line(tmp_path):
    lines = _okx_lines(with_checksums=False)
    lines[2]["data"][0]["prevSeqId"] = 13
    path = _write(tmp_path, "okx.jsonl", lines)
    with pytest.raises(DataFormatError, match=r"okx\.jsonl:3: gap in the OKX sequence of BTC-USDT: prevSeqId=13 .* seqId=11"):
        list(load_messages(path))
    rep = LoadReport()
    assert len(list(load_messages(path, on_error="skip", report=rep))) == 2
    assert rep.problems["gap"] == 1


def test_okx_checksum_mismatch_named_by_line(tmp_path):
    lines = _okx_lines()
    lines[1]["data"][0]["bids"][1][1] = "3.5"  # the size changed, the checksum not
    path = _write(tmp_path, "okx.jsonl", lines)
    with pytest.raises(DataFormatError, match=r"okx\.jsonl:2: OKX checksum mismatch for BTC-USDT"):
        list(load_messages(path))


def test_okx_real_capture_with_one_altered_size_fails_its_checksum(shared_data, tmp_path):
    with gzip.open(shared_data / "okx" / "cryptofeed_v3_OKX.jsonl.gz", "rt") as fh:
        lines = fh.read().splitlines()
    target = next(i for i, ln in enumerate(lines) if '\\"action\\":\\"update\\"' in ln and "BTC-USDT\\\"" in ln)
    rec = json.loads(lines[target])
    payload = json.loads(rec["data"])
    level = payload["data"][0]["bids"][0] if payload["data"][0]["bids"] else payload["data"][0]["asks"][0]
    level[1] = str(float(level[1]) + 1)
    rec["data"] = json.dumps(payload, separators=(",", ":"))
    lines[target] = json.dumps(rec)
    path = _write(tmp_path, "okx_tampered.jsonl", lines)
    with pytest.raises(DataFormatError, match=rf"okx_tampered\.jsonl:{target + 1}: OKX checksum mismatch"):
        list(load_messages(path, symbol="BTC-USDT"))


@pytest.mark.parametrize(("bad", "match"), [
    ('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"upd', "malformed JSON"),
    ({"arg": {"channel": "books-l3", "instId": "BTC-USDT"}, "data": []}, "unknown OKX channel 'books-l3'"),
    ({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "patch", "data": [{}]}, "unknown OKX book action 'patch'"),
    ({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": [{"bids": [], "asks": [], "ts": "x"}]},
     "OKX 'ts' is not an integer"),
    ({"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [{"px": "100.0", "sz": "1", "ts": "1003"}]},
     "OKX trade is missing field 'side'"),
])
def test_okx_bad_lines_named_by_line(tmp_path, bad, match):
    lines = _okx_lines()
    path = _write(tmp_path, "okx.jsonl", [*lines[:2], bad, lines[2]])
    with pytest.raises(DataFormatError, match=rf"okx\.jsonl:3: .*{match}"):
        list(load_messages(path))


# ---------------------------------------------------------------------------- Coinbase


def _cb(seq, channel="l2_data", typ="update", updates=None, ts="2023-02-09T20:32:50.714964855Z", product="BTC-USD"):
    ev = {"type": typ, "product_id": product, "updates": updates or []}
    return {"channel": channel, "client_id": "", "timestamp": ts, "sequence_num": seq, "events": [ev]}


def _cb_lines():
    snap = _cb(0, typ="snapshot", updates=[
        {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73", "new_quantity": "0.06"},
        {"side": "offer", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.74", "new_quantity": "1.5"}])
    upd = _cb(1, updates=[{"side": "bid", "event_time": "2023-02-09T20:32:50.7Z", "price_level": "21921.72", "new_quantity": "2"}],
              ts="2023-02-09T20:32:51.000000001Z")
    trades = {"channel": "market_trades", "client_id": "", "timestamp": "2023-02-09T20:32:51.2Z", "sequence_num": 2,
              "events": [{"type": "update", "trades": [{"trade_id": "7", "product_id": "BTC-USD", "price": "21921.74",
                                                        "size": "0.1", "side": "SELL", "time": "2023-02-09T20:32:51.1Z"}]}]}
    hb = {"channel": "heartbeats", "client_id": "", "timestamp": "2023-02-09T20:32:51.3Z", "sequence_num": 3,
          "events": [{"current_time": "2023-02-09 20:32:51", "heartbeat_counter": 1}]}
    upd2 = _cb(4, updates=[{"side": "offer", "event_time": "2023-02-09T20:32:51.4Z", "price_level": "21921.74", "new_quantity": "0"}],
               ts="2023-02-09T20:32:51.4Z")
    return [snap, upd, trades, hb, upd2]


def test_coinbase_advanced_trade_file_loads(tmp_path):
    path = _write(tmp_path, "cb.jsonl", _cb_lines())
    rep = LoadReport()
    msgs = list(load_messages(path, report=rep))
    kinds = [type(m).__name__ for m in msgs]
    assert kinds == ["SnapshotMessage", "DeltaMessage", "TradeMessage", "DeltaMessage"]
    assert msgs[0].ts == 1675974770714 and msgs[1].ts == 1675974771000 and msgs[0].tick_size == 0.01
    assert msgs[2].side == 1 and msgs[2].price == 2192174  # maker sold: a buyer-initiated trade
    assert msgs[3].asks == [(2192174, 0.0)]


def test_coinbase_sequence_gap_named_by_line(tmp_path):
    lines = _cb_lines()
    del lines[3]  # the heartbeat: sequence_num 2 -> 4
    path = _write(tmp_path, "cb.jsonl", lines)
    with pytest.raises(DataFormatError, match=r"cb\.jsonl:4: gap in the Coinbase sequence_num of the connection: 4 after 2"):
        list(load_messages(path))
    rep = LoadReport()
    msgs = list(load_messages(path, on_error="skip", report=rep))
    assert rep.problems["gap"] == 1 and len(msgs) == 3  # the update after the gap waits for a snapshot


@pytest.mark.parametrize(("bad", "match"), [
    ('{"channel":"l2_data","events":[{"type":"upd', "malformed JSON"),
    ({"channel": "level3", "client_id": "", "timestamp": "2023-02-09T20:32:51Z", "sequence_num": 2, "events": []},
     "unknown Coinbase channel 'level3'"),
    ({"type": "l2update", "product_id": "BTC-USD", "changes": [["buy", "21921.72"]], "time": "2023-02-09T20:32:51Z"},
     r"Coinbase change is not \[side, price, size\]"),
    ({"type": "last_trade", "product_id": "BTC-USD"}, "unknown Coinbase message type 'last_trade'"),
    (_cb(2, updates=[{"side": "ask", "event_time": "x", "price_level": "1", "new_quantity": "1"}]),
     "Coinbase update side must be 'bid' or 'offer'"),
    (_cb(2, ts="2023-02-09 20:32:51"), "not an ISO-8601 UTC time"),
])
def test_coinbase_bad_lines_named_by_line(tmp_path, bad, match):
    lines = _cb_lines()
    path = _write(tmp_path, "cb.jsonl", [*lines[:2], bad])
    with pytest.raises(DataFormatError, match=rf"cb\.jsonl:3: .*{match}"):
        list(load_messages(path))


def test_coinbase_exchange_snapshot_takes_the_time_of_the_next_update(tmp_path):
    """The Exchange (Pro) snapshot has no time: it takes its product's next update's."""
    lines = [
        "wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298",
        '1618677817.08014: {"type":"snapshot","product_id":"NU-GBP","asks":[["0.4394","2000.0"]],"bids":[["0.4385","10"]]}',
        '1618677817.09: {"type":"l2update","product_id":"NU-GBP","changes":[["buy","0.4386","5.0"]],"time":"2021-04-17T16:43:37.080304Z"}',
        '1618677817.1: {"type":"match","trade_id":563679,"side":"buy","size":"70","price":"0.4386","product_id":"NU-GBP","sequence":1,"time":"2021-04-17T16:43:37.09Z"}',
    ]
    path = _write(tmp_path, "cb.ws", lines)
    msgs = list(load_messages(path))
    assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "DeltaMessage", "TradeMessage"]
    assert msgs[0].ts == msgs[1].ts == 1618677817080
    assert msgs[0].local_ts == 1618677817080140000
    assert msgs[2].side == -1  # maker bought: a seller-initiated trade
    # a snapshot with no update after it takes its receive time
    only = list(load_messages(_write(tmp_path, "cb2.ws", lines[:2])))
    assert [m.ts for m in only] == [1618677817080]


# ----------------------------------------------------------------------------- BitMEX


def test_bitmex_unknown_id_is_a_gap_named_by_line(tmp_path):
    lines = [
        '1626993370.1: {"table":"orderBookL2","action":"partial","data":[{"symbol":"XBTUSD","id":1,"side":"Sell","size":10,"price":31964.5},{"symbol":"XBTUSD","id":2,"side":"Buy","size":5,"price":31964}]}',
        '1626993370.2: {"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":2,"side":"Buy","size":7}]}',
        '1626993370.3: {"table":"orderBookL2","action":"delete","data":[{"symbol":"XBTUSD","id":9,"side":"Buy"}]}',
    ]
    path = _write(tmp_path, "bitmex.ws", lines)
    with pytest.raises(DataFormatError, match=r"bitmex\.ws:3: BitMEX delete of unknown id 9 of XBTUSD"):
        list(load_messages(path))
    msgs = list(load_messages(_write(tmp_path, "b2.ws", lines[:2])))
    assert msgs[1].bids == [(319640, 7.0)] and msgs[1].ts == 1626993370200 and msgs[0].tick_size == 0.1


# --------------------------------------------------------------------- recorded gaps


def _v3(exchange, records):
    out = [{"t": "header", "format": 2, "exchange": exchange}]
    for i, r in enumerate(records):
        if isinstance(r, str):
            out.append({"t": r, "conn": f"{exchange}.ws.1", "ts": 1.0 + i, "addr": "wss://ws.okx.com:8443/ws/v5/public"})
        else:
            out.append({"t": "recv", "conn": f"{exchange}.ws.1", "ts": 1.0 + i, "data": json.dumps(r)})
    return out


def test_disconnect_is_a_gap_never_replayed_as_continuous(tmp_path):
    snap, upd1, upd2 = _okx_lines()
    resnap = json.loads(json.dumps(snap))
    resnap["data"][0]["ts"] = "2000"
    after = json.loads(json.dumps(upd1))
    after["data"][0]["ts"] = "2001"
    after["data"][0]["prevSeqId"] = 10
    records = ["connect", snap, upd1, "disconnect", upd2, "connect", resnap, after]
    path = _write(tmp_path, "rec.jsonl", _v3("OKX", records))
    rep = LoadReport()
    msgs = list(load_messages(path, report=rep))
    assert [(type(m).__name__, m.ts) for m in msgs] == [
        ("SnapshotMessage", 1000), ("DeltaMessage", 1001), ("SnapshotMessage", 2000), ("DeltaMessage", 2001)]
    assert [m.gap for m in msgs if isinstance(m, SnapshotMessage)] == [False, True]
    assert rep.gaps == 1 and rep.dropped_deltas == 1 and rep.n_problems == 0
    assert "recorded gaps (reconnects): 1" in rep.summary()
    # without the disconnect record the same lines are a broken chain, not a gap
    records_no_gap = ["connect", snap, upd1, upd2, resnap, after]
    bad = _write(tmp_path, "bad.jsonl", _v3("OKX", records_no_gap))
    lines = list(load_messages(bad))  # the snapshot simply replaces the book...
    assert not any(getattr(m, "gap", False) for m in lines)


def test_capture_of_an_unsupported_exchange_is_refused(tmp_path):
    path = _write(tmp_path, "k.jsonl", [{"t": "header", "format": 2, "exchange": "KRAKEN"}])
    with pytest.raises(DataFormatError, match=r"k\.jsonl:1: cryptofeed capture of KRAKEN: supported exchanges are BYBIT, OKX"):
        list(load_messages(path))


# ------------------------------------------------------------- env, Replay and gaps


@pytest.mark.parametrize(("rel", "symbol"), [("okx/cryptofeed_v3_OKX.jsonl.gz", "BTC-USDT"),
                                             ("coinbase/cryptofeed_COINBASE.ws.28.0.gz", "SKL-USD"),
                                             ("bitmex/cryptofeed_BITMEX.ws.1.0.gz", "XBTUSD")])
def test_env_runs_an_episode_on_okx_coinbase_and_bitmex(shared_data, tmp_path, rel, symbol):
    import warnings

    import numpy as np

    from data_processor import replay
    from event_driven_env import DISCRETE_ACTIONS, MarketMakingEnv

    path = shared_data / rel
    n_book = sum(1 for m, _ in replay(path, symbol=symbol) if not hasattr(m, "side"))
    assert n_book > 90
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ~11 s / ~31 s captures: shorter than an episode
        env = MarketMakingEnv(data_path=str(path), symbol=symbol, episode_length_s=3600.0, warmup_s=1.0,
                              cache_dir=str(tmp_path))
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, term, trunc, info = env.step(DISCRETE_ACTIONS.index("both_offset_+0"))
        steps += 1
        if term or trunc:
            break
    ep = info["episode"]
    assert steps > 50 and np.isfinite([v for v in ep.values() if isinstance(v, float)]).all()
    assert ep["pnl"] == pytest.approx(ep["spread_capture"] + ep["inventory_pnl"] - ep["fees"])


def _gap_capture(tmp_path) -> Path:
    """An OKX capture: 1 s of book, a disconnect, 1 s lost, a re-snapshot, 2 s more."""
    snap, upd1, upd2 = _okx_lines()
    recs = ["connect"]
    t = 1_000_000
    recs.append({**snap, "data": [{**snap["data"][0], "ts": str(t)}]})
    for i in range(1, 11):  # alternating size changes at the best bid, 100 ms apart
        d = {"asks": [], "bids": [["100.0", str(2 + i % 2), "0", "1"]], "ts": str(t + 100 * i)}
        recs.append({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": [d]})
    recs += ["disconnect", "connect"]
    t2 = t + 2000
    recs.append({**snap, "data": [{**snap["data"][0], "ts": str(t2)}]})
    for i in range(1, 21):
        d = {"asks": [], "bids": [["100.0", str(2 + i % 2), "0", "1"]], "ts": str(t2 + 100 * i)}
        recs.append({"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update", "data": [d]})
    return _write(tmp_path, "gap.jsonl", _v3("OKX", recs))


def test_replay_lists_gaps_and_episodes_never_span_them(tmp_path):
    import warnings

    from data_processor import Replay
    from event_driven_env import MarketMakingEnv

    path = _gap_capture(tmp_path)
    r = Replay(path, cache_dir=tmp_path / "cache")
    assert r.gaps == [(1_001_000, 1_002_000)] and r.gap_ts == [1_002_000]
    book, it = r.start_at(1_002_000)  # a checkpoint at the resumption
    assert book.best_bid() == (1000, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = MarketMakingEnv(data_path=str(path), episode_length_s=60.0, warmup_s=5.0, order_size=1.0,
                              cache_dir=str(tmp_path / "cache"))
    # an episode starting before the gap ends at the last message before it (truncation)
    env.reset(seed=0, options={"start_ts": 1_000_300})
    assert env.end_ts == 1_001_000
    done, steps = False, 0
    while not done:
        _, _, term, trunc, info = env.step(0)
        done, steps = term or trunc, steps + 1
    assert trunc and env._now == 1_001_000 and steps == 7
    # one starting inside the gap starts at the resumption, and warms up only after it
    env.reset(seed=0, options={"start_ts": 1_001_500})
    assert env.start_ts == 1_002_000 and env.end_ts == 1_004_000
    assert env._book.best_bid() == (1000, 2.0)  # the re-snapshot's book, not the one before the gap


def test_binance_and_bybit_payloads_in_a_capture_load_as_their_native_files(shared_data, tmp_path):
    """The recorder's format (cryptofeed v3 records) gives the same messages as the native files."""
    import dataclasses

    with gzip.open(shared_data / "binance" / "hftbacktest-usdm" / "btcusdt_20240718.gz", "rt") as fh:
        native = [next(fh) for _ in range(3000)]
    native_path = tmp_path / "native.txt"
    native_path.write_text("".join(native))
    recs = [{"t": "header", "format": 2, "exchange": "BINANCE_FUTURES"},
            {"t": "connect", "conn": "BINANCE_FUTURES.ws.1", "ts": 1.0, "addr": "wss://fstream.binance.com/stream"}]
    for line in native:
        ns, _, text = line.rstrip("\n").partition(" ")
        ts = int(ns) / 1e9
        if '"lastUpdateId"' in text:
            recs.append({"t": "http", "conn": "BINANCE_FUTURES.ws.1", "ts": ts,
                         "url": "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000", "data": text})
        else:
            recs.append({"t": "recv", "conn": "BINANCE_FUTURES.ws.1", "ts": ts, "data": text})
    wrapped = _write(tmp_path, "wrapped.jsonl", recs)

    def strip(msgs):
        return [dataclasses.replace(m, local_ts=None) for m in msgs]

    a = strip(load_messages(native_path))
    b = strip(load_messages(wrapped))
    assert len(a) > 1000 and a == b
    # Bybit: the plain payload file and the original capture it was cut from agree too
    linear = list(load_messages(shared_data / "bybit" / "cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl", symbol="ETHUSDT"))
    capture = list(load_messages(shared_data / "bybit" / "cryptofeed_v3_BYBIT.jsonl.zst", symbol="linear:ETHUSDT"))
    assert [dataclasses.replace(m, local_ts=None, symbol="ETHUSDT") for m in capture] == strip(linear)


@pytest.mark.parametrize(("rel", "symbol"), [("okx/cryptofeed_v3_OKX.jsonl.gz", "BTC-USDT"),
                                             ("coinbase/cryptofeed_COINBASE.ws.28.0.gz", "DASH-BTC"),
                                             ("bitmex/cryptofeed_BITMEX.ws.1.0.gz", "XBTUSD")])
def test_replay_checkpoints_restore_the_parsers_state(shared_data, tmp_path, rel, symbol):
    """Starting mid-recording from a checkpoint restores the OKX level texts (checksums go on
    holding), the Coinbase state and the BitMEX id map (updates by id go on resolving)."""
    from data_processor import Replay, replay

    path = shared_data / rel
    book = None
    for _, b in replay(path, symbol=symbol):
        book = b
    final = (book.best_bid(), book.best_ask(), list(book.bids.items())[:50], list(book.asks.items())[:50])
    r = Replay(path, symbol=symbol, checkpoint_interval_ms=2500, cache_dir=tmp_path)
    assert len(r.checkpoint_ts) >= 5
    for t in (r.checkpoint_ts[3], r.checkpoint_ts[-2] + 1):
        book, it = r.start_at(t)
        rest = list(it)
        assert rest, t
        for m in rest:
            book.apply(m)
        assert (book.best_bid(), book.best_ask(), list(book.bids.items())[:50], list(book.asks.items())[:50]) == final


def test_okx_books5_and_bbo_tbt_pushes_are_snapshots(tmp_path):
    """``books5`` / ``bbo-tbt`` push a whole top-N book each time (no ``action``)."""
    def push(channel, ts, bid, ask, seq):
        d = {"asks": [[ask, "1", "0", "1"]], "bids": [[bid, "2", "0", "1"]], "instId": "BTC-USDT", "ts": str(ts), "seqId": seq}
        d["checksum"] = okx_checksum([(bid, "2")], [(ask, "1")])
        return {"arg": {"channel": channel, "instId": "BTC-USDT"}, "data": [d]}

    for channel in ("books5", "bbo-tbt"):
        path = _write(tmp_path, f"{channel}.jsonl", [push(channel, 1000, "100.0", "100.1", 5),
                                                      push(channel, 1001, "100.1", "100.2", 9)])
        rep = LoadReport()
        msgs = list(load_messages(path, report=rep))
        assert [(type(m).__name__, m.update_id, m.bids) for m in msgs] == [
            ("SnapshotMessage", 5, [(1000, 2.0)]), ("SnapshotMessage", 9, [(1001, 2.0)])]
        assert rep.checksums == 2


def test_binance_rest_snapshots_of_two_symbols_in_one_capture(tmp_path):
    """Each REST snapshot belongs to the symbol its URL names, whatever stream message came last."""
    def diff(s, U, u, pu, T, px):
        return {"stream": f"{s.lower()}@depth@0ms", "data": {"e": "depthUpdate", "E": T, "T": T, "s": s, "U": U, "u": u,
                                                             "pu": pu, "b": [[px, "1"]], "a": []}}

    def rest(s, lid, T, px):
        return {"lastUpdateId": lid, "E": T, "T": T, "bids": [[px, "5"]], "asks": [[str(float(px) + 100), "5"]]}

    conn = "BINANCE_FUTURES.ws.1"
    recs = [{"t": "header", "format": 2, "exchange": "BINANCE_FUTURES"},
            {"t": "recv", "conn": conn, "ts": 1.0, "data": json.dumps(diff("BTCUSDT", 10, 12, 9, 100, "60000.0"))},
            {"t": "recv", "conn": conn, "ts": 1.1, "data": json.dumps(diff("ETHUSDT", 50, 52, 49, 100, "3000.00"))},
            {"t": "http", "conn": conn, "ts": 1.2, "url": "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000",
             "data": json.dumps(rest("BTCUSDT", 11, 99, "59999.0"))},
            {"t": "http", "conn": conn, "ts": 1.3, "url": "https://fapi.binance.com/fapi/v1/depth?symbol=ETHUSDT&limit=1000",
             "data": json.dumps(rest("ETHUSDT", 51, 99, "2999.00"))}]
    path = _write(tmp_path, "two.jsonl", recs)
    for sym, first in (("BTCUSDT", 599990), ("ETHUSDT", 299900)):
        msgs = list(load_messages(path, symbol=sym))
        assert [type(m).__name__ for m in msgs] == ["SnapshotMessage", "DeltaMessage"]
        assert msgs[0].bids[0][0] == first and all(m.symbol == sym for m in msgs)


def test_rotated_capture_file_keeps_the_connection_names(tmp_path):
    """A recorder file that starts mid-connection names its Bybit symbols like the first file."""
    snap = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1,
            "data": {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": [["100.1", "1"]], "u": 1, "seq": 1}}
    recs = [{"t": "header", "format": 2, "exchange": "BYBIT",
             "connections": {"BYBIT.ws.1": "wss://stream.bybit.com/v5/public/linear"}},
            {"t": "recv", "conn": "BYBIT.ws.1", "ts": 2.0, "data": json.dumps(snap)}]
    msgs = list(load_messages(_write(tmp_path, "part2.jsonl", recs)))
    assert [m.symbol for m in msgs] == ["linear:BTCUSDT"]


@pytest.mark.parametrize(("bad", "match"), [
    ('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"upd', "malformed JSON in the websocket payload"),
    ('{"arg":{"channel":"books-l3","instId":"BTC-USDT"},"data":[]}', "unknown OKX channel 'books-l3'"),
])
def test_bad_payloads_inside_a_capture_are_named_by_the_capture_line(tmp_path, bad, match):
    snap, upd1, upd2 = _okx_lines()
    recs = _v3("OKX", ["connect", snap, upd1, upd2])
    recs.insert(4, {"t": "recv", "conn": "OKX.ws.1", "ts": 9.0, "data": bad})
    path = _write(tmp_path, "cap.jsonl", recs)
    with pytest.raises(DataFormatError, match=rf"cap\.jsonl:5: {match}"):
        list(load_messages(path))


def test_coinbase_capture_with_two_products_has_no_false_gap_under_symbol(tmp_path):
    """``symbol=`` skips other products' lines in captures, but not in Coinbase's: its
    connection-wide ``sequence_num`` runs through every product's messages."""
    lines = _cb_lines()
    eth = _cb(5, typ="snapshot", product="ETH-USD", updates=[
        {"side": "bid", "event_time": "x", "price_level": "1500.00", "new_quantity": "1"},
        {"side": "offer", "event_time": "x", "price_level": "1500.01", "new_quantity": "1"}])
    btc = _cb(6, updates=[{"side": "bid", "event_time": "x", "price_level": "21921.71", "new_quantity": "1"}],
              ts="2023-02-09T20:32:52Z")
    recs = [{"t": "header", "format": 2, "exchange": "COINBASE"},
            {"t": "connect", "conn": "COINBASE.ws.1", "ts": 1.0, "addr": "wss://advanced-trade-ws.coinbase.com"}]
    recs += [{"t": "recv", "conn": "COINBASE.ws.1", "ts": 2.0 + i, "data": json.dumps(m, separators=(",", ":"))}
             for i, m in enumerate([*lines, eth, btc])]
    path = _write(tmp_path, "cb.jsonl", recs)
    assert len(list(load_messages(path, symbol="BTC-USD"))) == 5
    del recs[-2]  # ETH-USD's message lost: a real gap, seen with symbol="BTC-USD" too
    with pytest.raises(DataFormatError, match=r"cb2\.jsonl:8: gap in the Coinbase sequence_num of the connection: 6 after 4"):
        list(load_messages(_write(tmp_path, "cb2.jsonl", recs), symbol="BTC-USD"))
