"""Tests of synthetic_market: format, exact replay, determinism, fractional hours, CLI."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import orjson
import pytest

import data_processor as dp
import synthetic_market as sm
from messages import TradeMessage

HOURS = 0.01  # 36 s of feed after a 600 s warm-up: ~1 s to generate


def _ticks(price: str) -> int:
    return round(float(price) * 100)


def _lots(size: str) -> int:
    return round(float(size) * 100)


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory) -> Path:
    return sm.generate_file(tmp_path_factory.mktemp("synth") / "s.jsonl", HOURS, seed=3)


def test_byte_identical_per_seed_and_different_across_seeds(tmp_path, synth_file):
    again = sm.generate_file(tmp_path / "again.jsonl", HOURS, seed=3)
    other = sm.generate_file(tmp_path / "other.jsonl", HOURS, seed=4)
    assert again.read_bytes() == synth_file.read_bytes()
    assert other.read_bytes() != synth_file.read_bytes()


def test_fractional_hours_and_prefix_property():
    c = sm.SyntheticMarketConfig()
    short = list(sm.iter_lines(0.005, seed=11))
    longer = list(sm.iter_lines(0.0075, seed=11))
    assert longer[: len(short)] == short  # whole random blocks: a short file is a prefix
    book_ts = [orjson.loads(x)["ts"] for x in longer if b'"orderbook.' in x[:40]]
    assert book_ts[0] == c.start_ts_ms
    # 0.0075 h = 27 s = 270 steps of 100 ms
    assert book_ts[-1] <= c.start_ts_ms + 270 * c.interval_ms
    assert book_ts[-1] >= c.start_ts_ms + 250 * c.interval_ms
    assert all(b > a for a, b in zip(book_ts, book_ts[1:], strict=False))
    assert all((b - a) % c.interval_ms == 0 for a, b in zip(book_ts, book_ts[1:], strict=False))


def test_bybit_shape_contiguous_u_and_200_levels(synth_file):
    lines = synth_file.read_bytes().splitlines()
    first = orjson.loads(lines[0])
    assert list(first) == ["topic", "type", "ts", "data", "cts"]
    assert first["topic"] == "orderbook.200.ETHUSDT" and first["type"] == "snapshot"
    assert list(first["data"]) == ["s", "b", "a", "u", "seq"]
    assert len(first["data"]["b"]) == 200 and len(first["data"]["a"]) == 200
    bids = [_ticks(p) for p, _ in first["data"]["b"]]
    asks = [_ticks(p) for p, _ in first["data"]["a"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    us, n_trades = [], 0
    for raw in lines:
        m = orjson.loads(raw)
        if m["topic"].startswith("orderbook."):
            us.append(m["data"]["u"])
            assert m["cts"] < m["ts"]
            for p, s in m["data"]["b"] + m["data"]["a"]:
                assert p == f"{float(p):.2f}" and s == f"{float(s):.2f}" and float(s) >= 0
        else:
            assert m["topic"] == "publicTrade.ETHUSDT" and m["type"] == "snapshot"
            for t in m["data"]:
                assert list(t)[:8] == ["T", "s", "S", "v", "p", "L", "i", "BT"]
                assert t["S"] in ("Buy", "Sell") and t["BT"] is False and float(t["v"]) > 0
                assert t["T"] < m["ts"]
                n_trades += 1
    assert us == list(range(us[0], us[0] + len(us)))
    assert n_trades > 0


def test_replays_exactly_own_json_replay():
    """The simulator's published book after every book line equals a plain replay of the lines."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    n_checked = 0

    def check(line: bytes, sim_bids: dict[int, int], sim_asks: dict[int, int]) -> None:
        nonlocal n_checked
        m = orjson.loads(line)
        if m["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, book in (("b", bids), ("a", asks)):
            for p, s in m["data"][side]:
                if _lots(s) == 0:
                    del book[_ticks(p)]  # a deletion must name a level the client holds
                else:
                    book[_ticks(p)] = _lots(s)
        assert bids == sim_bids and asks == sim_asks
        assert len(bids) == 200 and len(asks) == 200
        assert max(bids) < min(asks)
        n_checked += 1

    for _ in sm.iter_lines(HOURS, seed=5, check=check):
        pass
    assert n_checked > 300


def test_passes_data_layer_validation_and_order_book_replay(synth_file):
    assert _check_against_data_layer(synth_file) > 0


def test_data_layer_on_multi_level_sweeps(tmp_path):
    """Large market orders walk several levels: one message, several fills."""
    cfg = sm.SyntheticMarketConfig(market_size_median_lots=5000.0, market_rate_per_s=1.0)
    path = sm.generate_file(tmp_path / "big.jsonl", 0.005, seed=8, config=cfg)
    multi = [m for m in map(orjson.loads, path.read_bytes().splitlines())
             if m["topic"].startswith("publicTrade.") and len(m["data"]) > 1]
    assert multi
    assert _check_against_data_layer(path) > len(multi)


def _check_against_data_layer(synth_file: Path) -> int:
    """Line by line: the data layer yields one book message per book line and one trade per
    fill, with the same prices/sizes/sides, and OrderBook equals a plain replay after each."""
    data_processor = pytest.importorskip("data_processor")
    order_book = pytest.importorskip("order_book")
    report = data_processor.LoadReport()
    msgs = data_processor.load_messages(synth_file, on_error="raise", report=report)
    book = order_book.OrderBook("ETHUSDT", 0.01)
    ref_bids: dict[int, int] = {}
    ref_asks: dict[int, int] = {}
    n_trades = 0
    for line in synth_file.read_bytes().splitlines():
        raw = orjson.loads(line)
        if raw["topic"].startswith("publicTrade."):
            for t in raw["data"]:
                msg = next(msgs)
                assert type(msg).__name__ == "TradeMessage"
                assert (msg.ts, msg.price, round(msg.size * 100)) == (t["T"], _ticks(t["p"]), _lots(t["v"]))
                assert msg.side == (1 if t["S"] == "Buy" else -1)
                n_trades += 1
            continue
        msg = next(msgs)
        assert type(msg).__name__ == ("SnapshotMessage" if raw["type"] == "snapshot" else "DeltaMessage")
        assert msg.tick_size == pytest.approx(0.01) and msg.update_id == raw["data"]["u"]
        if raw["type"] == "snapshot":
            ref_bids.clear()
            ref_asks.clear()
        for side, ref in (("b", ref_bids), ("a", ref_asks)):
            for p, s in raw["data"][side]:
                if _lots(s):
                    ref[_ticks(p)] = _lots(s)
                else:
                    ref.pop(_ticks(p))
        book.apply(msg)
        book.check_invariants()
        assert {p: round(s * 100) for p, s in book.bids.items()} == ref_bids
        assert {p: round(s * 100) for p, s in book.asks.items()} == ref_asks
    assert next(msgs, None) is None
    return n_trades


def test_aggressor_first_fill_at_touch(synth_file):
    """A buy's first fill is at the best ask (a sell's at the best bid) of the book before it."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    n = 0
    for raw in synth_file.read_bytes().splitlines():
        m = orjson.loads(raw)
        if m["topic"].startswith("orderbook."):
            if m["type"] == "snapshot":
                bids.clear()
                asks.clear()
            for side, book in (("b", bids), ("a", asks)):
                for p, s in m["data"][side]:
                    if _lots(s):
                        book[_ticks(p)] = _lots(s)
                    else:
                        book.pop(_ticks(p))
            continue
        first = m["data"][0]
        px = _ticks(first["p"])
        if first["S"] == "Buy":
            assert px >= min(asks)
            # fills walk up the book in price priority
            prices = [_ticks(t["p"]) for t in m["data"]]
            assert prices == sorted(prices)
        else:
            assert px <= max(bids)
            prices = [_ticks(t["p"]) for t in m["data"]]
            assert prices == sorted(prices, reverse=True)
        n += 1
    assert n > 0


@pytest.mark.parametrize("field,value", [("limit_rate_per_s", -1.0), ("touch_fraction", 1.5),
                                         ("tick_size", "abc"), ("cancel_fraction", 0.0),
                                         ("max_distance_ticks", 100)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        sm.SyntheticMarketConfig(**{field: value})


@pytest.mark.parametrize("hours", [0, -1, math.nan, math.inf])
def test_bad_hours(hours, tmp_path):
    with pytest.raises(ValueError, match="hours"):
        sm.generate_file(tmp_path / "x.jsonl", hours, seed=1)
    assert not list(tmp_path.iterdir())  # no half file, no temp file left behind


def test_default_dataset_generates_once_and_name_encodes_config(tmp_path):
    p1 = sm.default_dataset(tmp_path, hours=0.002, seed=1)
    mtime = p1.stat().st_mtime_ns
    assert sm.default_dataset(tmp_path, hours=0.002, seed=1) == p1
    assert p1.stat().st_mtime_ns == mtime
    assert "seed1" in p1.name and "0.002h" in p1.name and "ETHUSDT" in p1.name
    p2 = sm.default_dataset(tmp_path, hours=0.002, seed=1,
                            config=sm.SyntheticMarketConfig(market_rate_per_s=0.3))
    assert p2 != p1 and p2.exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    assert sm.main(["--hours", "0.002", "--seed", "9", "--out", str(out)]) == 0
    assert out.read_bytes() == b"\n".join(sm.iter_lines(0.002, seed=9)) + b"\n"


def test_compare_statistics_on_synthetic_and_real(synth_file, shared_data):
    pytest.importorskip("data_processor")
    real = shared_data / "bybit" / "cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
    s = sm.market_statistics(synth_file)
    r = sm.market_statistics(real, symbol="ETHUSDT")
    assert s.keys() == r.keys()
    assert 9.0 < s["book_msgs_per_s"] <= 10.0 + 1e-9
    assert s["spread_1tick_frac"] > 0.9 and r["spread_1tick_frac"] > 0.9
    table = sm.format_comparison({"synthetic": s, "real": r})
    assert "depth_L1" in table and "trades_per_s" in table


# ----------------------------------------------------------------- edge options (issue 10)
def test_edge_options_off_keep_the_default_market_byte_identical():
    # sha256 of iter_lines(0.05, seed=3) computed with the generator before the edge options
    # existed: the options, left off, draw no random numbers and leave the bytes alone.
    digest = hashlib.sha256(b"\n".join(sm.iter_lines(0.05, seed=3))).hexdigest()
    assert digest == "68fddd1541e920f8fae2cc67ab34760a6dcd8b1686f6d39b822ffe164d13067e"
    assert sm.SyntheticMarketConfig().fingerprint() == "b8e9cd3bf0"   # cached default file names too
    assert sm.EDGE_MARKET.fingerprint() != sm.SyntheticMarketConfig().fingerprint()


def test_mean_reversion_halves_the_deviation_each_half_life():
    c = sm.SyntheticMarketConfig(mean_reversion_half_life_s=2.0)   # 20 steps of 100 ms
    sim = sm._Simulator(c, seed=1)
    anchor = math.log(sim.x0)
    sim.log_x = anchor + 0.01
    path = sim._log_price_path(np.zeros(40))
    assert path[19] - anchor == pytest.approx(0.005, rel=1e-12)
    assert path[39] - anchor == pytest.approx(0.0025, rel=1e-12)


def test_latent_drift_has_the_configured_stationary_std_and_half_life():
    c = sm.SyntheticMarketConfig(signal_drift_ticks_per_s=0.5, signal_half_life_s=1.0)
    sim = sm._Simulator(c, seed=2)
    a = sim._drift_path(200_000)
    assert a.std() == pytest.approx(0.5, rel=0.05)
    lag = 10   # one half-life at 100 ms steps: autocorrelation 0.5
    assert np.corrcoef(a[:-lag], a[lag:])[0, 1] == pytest.approx(0.5, abs=0.05)


def test_informed_share_needs_the_drift():
    with pytest.raises(ValueError, match="informed_share"):
        sm.SyntheticMarketConfig(informed_share=0.5)
    with pytest.raises(ValueError, match="signal_half_life_s"):
        sm.SyntheticMarketConfig(signal_half_life_s=0.0)


def _flow_predicts_mid(path: Path) -> float:
    """corr(signed trade volume of the last 5 s, mid change over the next 5 s) on a 1 s grid."""
    mid_ts, mids, tr_ts, flow = [], [], [], []
    for msg, book in dp.replay(path):
        if isinstance(msg, TradeMessage):
            tr_ts.append(msg.ts)
            flow.append(msg.side * msg.size)
        elif (m := book.mid()) is not None:
            mid_ts.append(msg.ts)
            mids.append(m)
    mid_ts, mids = np.asarray(mid_ts), np.asarray(mids)
    tr_ts, cum = np.asarray(tr_ts), np.concatenate([[0.0], np.cumsum(flow)])
    grid = np.arange(mid_ts[0] + 5000, mid_ts[-1] - 5000, 1000)
    past = cum[np.searchsorted(tr_ts, grid, "right")] - cum[np.searchsorted(tr_ts, grid - 5000, "right")]
    now = mids[np.searchsorted(mid_ts, grid, "right") - 1]
    later = mids[np.searchsorted(mid_ts, grid + 5000, "right") - 1]
    return float(np.corrcoef(past, later - now)[0, 1])


def test_edge_market_signal_is_visible_to_causal_trade_flow(tmp_path):
    edge = sm.generate_file(tmp_path / "edge.jsonl", 0.5, seed=7, config=sm.EDGE_MARKET)
    plain = sm.generate_file(tmp_path / "plain.jsonl", 0.5, seed=7)
    assert _flow_predicts_mid(edge) > 0.12
    assert abs(_flow_predicts_mid(plain)) < 0.08


def test_informed_market_orders_buy_with_the_configured_probability():
    # A drift held far above its std (half-life ~ forever): tanh(a / sd) = 1, so a market
    # order buys with probability (1 + informed_share) / 2 = 0.8 (by hand); ~600 orders.
    c = sm.SyntheticMarketConfig(signal_drift_ticks_per_s=0.5, signal_half_life_s=1e9, informed_share=0.6,
                                 market_rate_per_s=1.0)
    sim = sm._Simulator(c, seed=4)
    sim.drift = 100 * c.signal_drift_ticks_per_s
    sides = sim._draw_chunk().mkt_side
    assert len(sides) > 400
    assert np.mean(sides == 1) == pytest.approx(0.8, abs=0.05)
    sim.drift = -sim.drift
    assert np.mean(sim._draw_chunk().mkt_side == 1) == pytest.approx(0.2, abs=0.05)


def test_edge_market_fingerprint_is_pinned():
    # benchmarks/learn_edge.py and its documented figures use the file of this fingerprint.
    assert sm.EDGE_MARKET.fingerprint() == "d761f7a921"
