"""Env throughput with a fixed quoting policy vs bare replay of the same generated file.

Generates (once, cached under data/) a synthetic Bybit-format feed of ``--hours`` hours with
100 ms book updates, then measures on one core:

1. the floor: ``data_processor.load_messages`` + ``OrderBook.apply`` over every message;
2. the env: one episode over the whole file, ``queue`` fill model, 100 ms decisions, the
   agent quoting both sides at the best every step (the fixed policy keeps orders resting,
   so the fill engine works on every message).

Prints CPU and wall seconds, messages/s, env steps/s and the env/replay time ratio. With
``--hours 24`` the env runs a real full day (864,000 book messages at Bybit ob200's 100 ms
rate, the acceptance run); shorter files also print the time scaled to a day.

    python benchmarks/bench_env.py --hours 24          # the full-day acceptance run (~3 min)
    python benchmarks/bench_env.py --hours 2           # quick check

"CPU s" is the process CPU time (``time.process_time``): the one-core figure, which other
jobs on a shared machine distort much less than the wall time printed beside it. The
generation and the one-off Replay cache build are outside the timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_processor import load_messages  # noqa: E402
from event_driven_env import DISCRETE_ACTIONS, MarketMakingEnv  # noqa: E402
from messages import TradeMessage  # noqa: E402
from order_book import OrderBook  # noqa: E402
from synthetic_market import default_dataset  # noqa: E402


def bare_replay(path: str) -> tuple[int, int, float, float]:
    """Bare replay: ``load_messages`` + ``OrderBook.apply``; (messages, book messages, CPU s, wall s)."""
    t, w = time.process_time(), time.perf_counter()
    book = OrderBook()
    n = n_book = 0
    for msg in load_messages(path):
        n += 1
        if not isinstance(msg, TradeMessage):
            book.apply(msg)
            n_book += 1
    return n, n_book, time.process_time() - t, time.perf_counter() - w


def env_episode(path: str, hours: float, fill_model: str, window: int, levels: int,
                interval_ms: float) -> tuple[int, int, float, float, dict]:
    """One episode over the whole file quoting both sides at the best; (steps, book msgs, CPU s, wall s, stats)."""
    env = MarketMakingEnv(data_path=path, fill_model=fill_model, episode_length_s=hours * 3600.0, warmup_s=0.0,
                          obs_window=window, obs_levels=levels, decision_interval_ms=interval_ms)
    action = DISCRETE_ACTIONS.index("both_offset_+0")
    t, w = time.process_time(), time.perf_counter()
    env.reset(options={"start_ts": env.range_start_ts})
    steps = 0
    while True:
        _, _, term, trunc, info = env.step(action)
        steps += 1
        if term or trunc:
            break
    return steps, env._n_book, time.process_time() - t, time.perf_counter() - w, info["episode"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0, help="hours of synthetic feed (24 = a full day)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fill-model", default="queue", choices=["queue", "bbo_cross"])
    ap.add_argument("--obs-window", type=int, default=8)
    ap.add_argument("--obs-levels", type=int, default=10)
    ap.add_argument("--decision-interval-ms", type=float, nargs="+", default=[100.0, 1000.0])
    args = ap.parse_args(argv)
    path = str(default_dataset("data", hours=args.hours, seed=args.seed))
    # warm the Replay cache outside the timing (it is built once per file)
    MarketMakingEnv(data_path=path, episode_length_s=1.0)
    n, n_book, c_replay, w_replay = bare_replay(path)
    print(f"file: {path}  ({n:,} messages, {n_book:,} book messages, {args.hours:g} h)")
    print(f"{'run':<44} {'CPU s':>8} {'wall s':>8} {'msg/s':>10} {'steps/s':>9} {'ratio':>6} {'day CPU s':>9}")
    print(f"{'bare replay (load_messages + OrderBook.apply)':<44} {c_replay:8.2f} {w_replay:8.2f} "
          f"{n / c_replay:10,.0f} {'-':>9} {1.0:6.2f} {864_000 / n_book * c_replay:9.1f}")
    for interval in args.decision_interval_ms:
        steps, env_book, c_env, w_env, ep = env_episode(path, args.hours, args.fill_model, args.obs_window,
                                                        args.obs_levels, interval)
        name = f"env, {args.fill_model}, decisions every {interval:g} ms"
        print(f"{name:<44} {c_env:8.2f} {w_env:8.2f} {n / c_env:10,.0f} {steps / c_env:9,.0f} "
              f"{c_env / c_replay:6.2f} {864_000 / n_book * c_env:9.1f}   "
              f"({steps:,} steps, {env_book:,} book msgs, {ep['n_fills']:,} fills)")
    print("CPU s = process CPU time (one core); ratio = env CPU / bare replay CPU on the same file; "
          "day CPU s = CPU time scaled to 864,000 book messages (measured, not scaled, when --hours 24)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
