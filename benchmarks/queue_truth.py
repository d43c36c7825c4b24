"""The L2 queue models against the true FIFO queue, on every order-level recording.

One job: print, for each order-level recording in ``../shared/data`` (LOBSTER AMZN and GOOG
2012-06-21, Bitstamp BTC/USD 2015-05-01), the table of ``queue_study.calibrate_queue``: the same
fixed quoting policy (every 30 s a bid and an ask at the best and one tick behind, for the
median and 5x the median trade size, each resting 30 s) filled by the exact ``fifo`` model
and by each L2 queue model (``power`` n = 0.5, 1, 2, 3, 4, 5, ``log``, ``risk_averse``) that
sees only the aggregated deltas and trades. The floor of this benchmark is ``fifo`` itself:
every ratio (``vs fifo``) and agreement is against it, measured in the same run. Wall time and
load are printed at the end.

Usage::

    python benchmarks/queue_truth.py                 # all three recordings
    python benchmarks/queue_truth.py --hours 6       # the first 6 hours of each
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from queue_study import calibrate_queue  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
RECORDINGS = (
    ("LOBSTER AMZN 2012-06-21 (NASDAQ, 6.5 h)", DATA / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip"),
    ("LOBSTER GOOG 2012-06-21 (NASDAQ, 6.5 h)", DATA / "lobster" / "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"),
    ("Bitstamp BTC/USD 2015-05-01 (24 h)", DATA / "bitstamp" / "2015-05-01.log.bz2"),
)


def main(argv: list[str] | None = None) -> int:
    """Run the study on every recording and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=None, help="study only the first hours of each recording")
    ap.add_argument("--every_s", type=float, default=30.0)
    ap.add_argument("--life_s", type=float, default=30.0)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"real recordings not found at {DATA}", file=sys.stderr)
        return 1
    t_all = time.perf_counter()
    closest = []
    for name, path in RECORDINGS:
        t0 = time.perf_counter()
        study = calibrate_queue(path, every_s=args.every_s, life_s=args.life_s, max_hours=args.hours)
        dt = time.perf_counter() - t0
        print(f"\n### {name}\n")
        print(f"sizes {study.settings['sizes']}, {study.n_messages:,} messages, {dt:.0f} s\n")
        print(study.table())
        closest.append((name, study.closest))
        sys.stdout.flush()
    print("\nclosest L2 model to fifo (per-order agreement):")
    for name, label in closest:
        print(f"  {name}: {label}")
    load = os.getloadavg()
    print(f"\nwall {time.perf_counter() - t_all:.0f} s, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
