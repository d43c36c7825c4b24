"""Env throughput with a fixed quoting policy vs bare replay of the same generated file.

Generates (once, cached under data/) a synthetic Bybit-format feed of ``--hours`` hours with
100 ms book updates, then measures on one core:

1. the floor: ``data_processor.load_messages`` + ``OrderBook.apply`` over every message;
2. the env: one episode over the whole file, ``queue`` fill model, 100 ms decisions, the
   agent quoting both sides at the best every step (the fixed policy keeps orders resting,
   so the fill engine works on every message).

Prints messages/s, env steps/s, the env/replay time ratio and the projected time of a full
day (864,000 book messages at Bybit ob200's 100 ms rate).

    python benchmarks/bench_env.py --hours 2

Times are process CPU seconds (``time.process_time``), so a busy shared machine does not
inflate them; the generation and the one-off Replay cache build are outside the timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_processor import load_messages  # noqa: E402
from event_driven_env import DISCRETE_ACTIONS, MarketMakingEnv  # noqa: E402
from order_book import OrderBook  # noqa: E402
from synthetic_market import default_dataset  # noqa: E402


def bare_replay(path: str) -> tuple[int, int, float]:
    t = time.process_time()
    book = OrderBook()
    n = n_book = 0
    for msg in load_messages(path):
        n += 1
        if type(msg).__name__ != "TradeMessage":
            book.apply(msg)
            n_book += 1
    return n, n_book, time.process_time() - t


def env_episode(path: str, hours: float, fill_model: str, window: int, levels: int,
                interval_ms: float) -> tuple[int, int, float, dict]:
    env = MarketMakingEnv(data_path=path, fill_model=fill_model, episode_length_s=hours * 3600.0, warmup_s=0.0,
                          obs_window=window, obs_levels=levels, decision_interval_ms=interval_ms)
    action = DISCRETE_ACTIONS.index("both_offset_+0")
    t = time.process_time()
    env.reset(options={"start_ts": env.range_start_ts})
    steps = 0
    while True:
        _, _, term, trunc, info = env.step(action)
        steps += 1
        if term or trunc:
            break
    return steps, env._n_book, time.process_time() - t, info["episode"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    n, n_book, t_replay = bare_replay(path)
    print(f"file: {path}  ({n:,} messages, {n_book:,} book messages); times are CPU seconds of this process")
    print(f"bare replay (load_messages + OrderBook.apply): {t_replay:8.2f} s  {n / t_replay:12,.0f} msg/s")
    for interval in args.decision_interval_ms:
        steps, env_book, t_env, ep = env_episode(path, args.hours, args.fill_model, args.obs_window,
                                                 args.obs_levels, interval)
        day = 864_000 / n_book * t_env
        print(f"env, {args.fill_model}, decisions every {interval:g} ms: {t_env:8.2f} s  {n / t_env:10,.0f} msg/s  "
              f"{steps / t_env:8,.0f} steps/s  ({steps:,} steps, {ep['n_fills']:,} fills)  "
              f"ratio to bare replay {t_env / t_replay:5.2f}  projected full day {day:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
