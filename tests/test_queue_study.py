"""``queue_study.calibrate_queue``: the L2 queue models against ``fifo`` on order-level data."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from queue_study import DEFAULT_MODELS, calibrate_queue


def _zip(path: Path, n: int) -> Path:
    """A LOBSTER pair: 100 shares bid at 100.00 / ask at 100.02; every second a buy of 10 at the
    bid joins, then a seller executes 10 of the oldest bid (so the queue walks forward)."""
    t = 34_200.0
    msgs = [f"{t:.3f},1,1,100,1000000,1", f"{t + 0.001:.3f},1,2,50,1000200,-1"]
    books = ["1000200,50,1000000,100", "1000200,50,1000000,100"]
    bid = [[1, 100]]  # [order id, size] queue at the bid, oldest first
    oid = 10
    for _ in range(n):
        t += 1.0
        msgs.append(f"{t:.3f},1,{oid},10,1000000,1")
        bid.append([oid, 10])
        oid += 1
        books.append(f"1000200,50,1000000,{sum(s for _, s in bid)}")
        head = bid[0]
        msgs.append(f"{t + 0.5:.3f},4,{head[0]},10,1000000,1")
        head[1] -= 10
        if head[1] == 0:
            bid.pop(0)
        books.append(f"1000200,50,1000000,{sum(s for _, s in bid)}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("TOY_2012-06-21_34200000_57600000_message_1.csv", "\n".join(msgs) + "\n")
        zf.writestr("TOY_2012-06-21_34200000_57600000_orderbook_1.csv", "\n".join(books) + "\n")
    path.write_bytes(buf.getvalue())
    return path


def test_calibrate_queue_on_a_hand_made_queue(tmp_path):
    path = _zip(tmp_path / "toy.zip", 120)
    study = calibrate_queue(path, sizes=[5.0], every_s=30.0, life_s=20.0, latency_ms=1.0)
    assert [r.label for r in study.rows] == ["fifo"] + [label for label, _ in DEFAULT_MODELS]
    fifo = study.rows[0]
    assert fifo.agreement == 1.0 and fifo.volume_ratio == 1.0
    # every 30 s our bid joins behind ~110 shares and 10 shares of the oldest order execute
    # per second: under fifo it is reached after ~11 s (the last round's order lives past the
    # data's end: 4 of the 5 bids at the best fill); the asks never trade
    assert fifo.fill_rate_join == 0.4 and fifo.fill_rate_behind == 0.0
    assert 10.0 <= fifo.median_first_fill_s <= 12.0
    # no cancellations at all: where an L2 model puts them cannot matter, every model is fifo
    for r in study.rows:
        assert (r.agreement, r.volume_ratio, r.fill_rate_join) == (1.0, 1.0, 0.4), r
    assert study.closest in {label for label, _ in DEFAULT_MODELS}
    assert "| fifo |" in study.table()


def test_calibrate_queue_refuses_l2_data(shared_data):
    with pytest.raises(ValueError, match="not an order-level recording"):
        calibrate_queue(shared_data / "bybit" / "2024-12-01_XRPUSDT_ob500.data", sizes=[1.0])
