"""Does PPO find the edge of the synthetic edge market? Agent vs the baselines on the same held-out episodes.

One job: the issue-10 acceptance run for the book env. It generates
``synthetic_market.EDGE_MARKET`` (seeded, ``--hours`` of feed), trains ``--seeds`` agents with
``train.py`` (one subprocess per seed, the project's default network and PPO settings) on the
first 70 % of the file, and evaluates the models together with ``evaluate.py --model_path
run0 run1 ...`` on the held-out last 30 %: every model and every baseline on the same
``--episodes`` episodes. It prints the per-policy table and the paired agent − baseline table
of ``evaluate.py`` and ends with the line::

    best_baseline=<name> diff=<mean> ci=[lo, hi] agent_pnl=<mean> agent_ci=[lo, hi] seeds=3 episodes=30

where the best baseline is the one with the highest mean PnL on those episodes, ``diff`` /
``ci`` the agent's paired mean PnL difference against it (two-level bootstrap 95 % CI over
episodes and training seeds) and ``agent_pnl`` / ``agent_ci`` the agent's own mean PnL per
episode and its CI.

The edge market as evaluated here (``EDGE_ENV``; measured in docs/synthetic_and_baselines.md,
section "The edge market"): ``EDGE_MARKET``'s flow (latent drift that informed market orders
lean with, mean-reverting log price, 1 market order/s per side), a market-maker fee tier
(maker rebate 0.5 bps, taker 5.5 bps) and a position limit of 2 order sizes, so the taker
liquidation of the inventory left at the end is bounded. 10 hours give 3 held-out hours: 36
non-overlapping 300 s episodes, so 30 episodes do not overlap.

Usage::

    python benchmarks/learn_edge.py                                   # 3 seeds x 180k steps, 30 episodes
    python benchmarks/learn_edge.py --seeds 1 --timesteps 20000 --episodes 5 --hours 2   # quick look

Acceptance (issue 10): the paired difference against the best baseline has a 95 % CI above
zero, and the agent's PnL has a CI above zero. Measured with the defaults (``--jobs 3``, 15 min
37 s; docs/synthetic_and_baselines.md, "The edge market"): agent +0.944 [0.163, 1.601] per
episode, − ``join_best`` +0.159 [−0.016, 0.301]: the agent's CI is above zero, the paired one
is not (acceptance not met).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

import synthetic_market as sm  # noqa: E402

EDGE_ENV: tuple[str, ...] = ("--maker_fee_bps", "-0.5", "--taker_fee_bps", "5.5", "--max_inventory", "2",
                             "--episode_length_s", "300")
"""Env flags of the edge market's evaluation (shared by training and evaluation): the fee tier
(maker rebate 0.5 bps, taker 5.5 bps) and the position limit (2 order sizes)."""
DATA_SEED = 7
"""Seed of the generated market."""
HELD_OUT = ("0.7", "1.0")
"""Held-out time range (fractions of the file); training uses 0 .. 0.7."""
AGENT = "agent"
"""Policy name of the agent rows in ``episodes.csv`` (``evaluation.AGENT``)."""

logger = logging.getLogger("learn_edge")


def train_one(data: Path, seed: int, args: argparse.Namespace, results: Path) -> tuple[Path, float]:
    """Train one seed with ``train.py``; return its run folder and the wall time."""
    cmd = [sys.executable, str(REPO / "train.py"), "--data_path", str(data), "--train_range", "0", HELD_OUT[0],
           "--eval_range", *HELD_OUT, "--seed", str(seed), "--total_timesteps", str(args.timesteps),
           "--run_name", f"edge_s{seed}", "--results_dir", str(results), "--no_progress",
           "--final_eval", "false", "--eval_interval", "0", "--plot_interval", "1000000", *EDGE_ENV,
           *args.train_args]
    t0 = time.perf_counter()
    log = results / f"train_s{seed}.log"
    with open(log, "wb") as fh:
        rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError(f"train.py seed {seed} failed (exit {rc}); see {log}")
    runs = sorted(results.glob(f"edge_s{seed}_*"))
    if not runs:
        raise RuntimeError(f"train.py seed {seed}: no run folder edge_s{seed}_* under {results}")
    return runs[-1], time.perf_counter() - t0


def evaluate(data: Path, runs: list[Path], args: argparse.Namespace, results: Path) -> Path:
    """Evaluate every model and baseline on the same held-out episodes; return the output folder."""
    cmd = [sys.executable, str(REPO / "evaluate.py"), "--model_path", *map(str, runs), "--data_path", str(data),
           "--eval_range", *HELD_OUT, "--num_episodes", str(args.episodes), "--no_progress",
           "--out_dir", str(results / "eval"), "--name", "edge", *EDGE_ENV]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"evaluate.py failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    print(out.stdout)
    folders = sorted((results / "eval").glob("edge_*"))
    return folders[-1]


def headline(eval_dir: Path, n_seeds: int) -> str:
    """The last line: agent vs the best baseline (highest mean PnL) from the evaluation's CSVs."""
    summary = pd.read_csv(eval_dir / "evaluation_summary.csv").set_index("policy")
    paired = pd.read_csv(eval_dir / "paired_differences.csv").set_index("baseline")
    baselines = summary.drop(index=AGENT)
    best = str(baselines["pnl_mean"].idxmax())
    d, a = paired.loc[best], summary.loc[AGENT]
    return (f"best_baseline={best} diff={d['diff_mean']:.4f} ci=[{d['diff_ci_lo']:.4f}, {d['diff_ci_hi']:.4f}] "
            f"agent_pnl={a['pnl_mean']:.4f} agent_ci=[{a['pnl_ci95_low']:.4f}, {a['pnl_ci95_high']:.4f}] "
            f"seeds={n_seeds} episodes={int(d['n_episodes'])}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    p.add_argument("--timesteps", type=int, default=180_000, help="training steps per seed (default 180k)")
    p.add_argument("--episodes", type=int, default=30, help="held-out evaluation episodes (default 30)")
    p.add_argument("--hours", type=float, default=10.0, help="hours of generated market (default 10)")
    p.add_argument("--jobs", type=int, default=1, help="seeds trained at the same time (default 1)")
    p.add_argument("--results_dir", type=Path, default=REPO / "results" / "learn_edge",
                   help="folder of the runs and the evaluation (default results/learn_edge)")
    p.add_argument("--data_dir", type=Path, default=REPO / "data", help="folder of the generated market")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="extra train.py flags after '--' (e.g. -- --reward pnl_inventory_penalty)")
    args = p.parse_args(argv)
    args.train_args = [a for a in args.train_args if a != "--"]
    if args.seeds < 1 or args.timesteps < 1 or args.episodes < 2 or args.jobs < 1:
        p.error("--seeds, --timesteps, --jobs must be >= 1 and --episodes >= 2")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t_all = time.perf_counter()
    print(f"# load average at start: {os.getloadavg()}, CPUs: {os.cpu_count()}")
    data = sm.default_dataset(args.data_dir, hours=args.hours, seed=DATA_SEED, config=sm.EDGE_MARKET)
    print(f"# market: {data} (EDGE_MARKET, {args.hours:g} h, seed {DATA_SEED}); env flags: {' '.join(EDGE_ENV)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = args.results_dir / stamp
    results.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda s: train_one(data, s, args, results), range(args.seeds)))
    runs = [r for r, _ in done]
    t_train = time.perf_counter() - t_all
    for seed, (run, wall) in enumerate(done):
        print(f"# seed {seed}: {run.name}, {args.timesteps} steps in {wall:.0f} s")
    eval_dir = evaluate(data, runs, args, results)
    print(f"# evaluation: {eval_dir}")
    print(f"# wall time: training {t_train:.0f} s ({args.jobs} at a time), total {time.perf_counter() - t_all:.0f} s;"
          f" load average at end: {os.getloadavg()}")
    print(headline(eval_dir, args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
