"""Can PPO learn to make markets? The same ``PPOAgent`` against the known optima of the AS model market.

Trains ``ppo_agent.PPOAgent`` (MLP network, ``model_market.as_ppo_config()``) on
``AvellanedaStoikov-v0`` (sigma 2, A 140, k 1.5, T 1, 200 steps) for two objectives and
scores the deterministic policy with the project's vectorised simulator
``as_model_env.simulate`` on 1,000 held-out paths (seed ``EVAL_SEED``; training episodes
use the seeds ``seed .. seed + n_envs - 1``), the same paths for the agent and the optimum:

- ``pnl``: the PnL objective; optimum: both quotes at depth ``1/k`` (``risk_neutral``).
- ``cj``: the Cartea–Jaimungal criterion ``PnL - phi int q^2 dt - alpha q_T^2`` with
  mbt_gym's setting for this model (phi 0.01, alpha 0.001: its notebook "Test 2 - replicate
  CJP 2015 - closed-form solution for value function"); optimum: the closed form
  (``model_market.closed_form_cj_policy``).

Acceptance (issue 10): on every seed, ``pnl`` agent / optimum >= 0.95, ``cj`` agent / optimum
>= 0.95 and ``cj`` terminal-inventory std / optimum's <= 1.2. The last line is
``pnl_ratio=<min over seeds> cj_ratio=<min over seeds> inv_std_ratio=<max over seeds> seeds=N``.

Usage::

    python benchmarks/learn_as.py --seeds 3
    python benchmarks/learn_as.py --seeds 1 --timesteps 20000 --eval-paths 200   # quick look

Default budget: 200k steps per agent, 16 envs (6 agents: about 150 s of training on the
shared 2-core machine, 25 s per agent).

What was tried (PnL objective unless stated; 3 seeds; ratio = agent / optimum on 1,000
held-out paths; base: 16 envs x 200 steps, minibatch 800, 10 epochs, gamma 1, lambda 0.95,
reward and observation normalisation, lr 3e-4 annealed, log-std init 0; "CV" = training on
``MarkToMarketControlVariate``'s reward; wall times on the shared 2-core machine):

| change | steps | ratio per seed | what it did |
|---|---|---|---|
| base (raw reward, std 1) | 64k | 0.879 (1 seed) | learns; depths 1.0-1.1: a mean this wide is optimal under noise of std 1 |
| log-std init -1 | 200k | 0.983, 0.998, 0.910 | std 0.37: the mean can settle near 1/k; one seed slow |
| log-std init -1.6 | 200k | 0.956, 0.925, 0.953 | too little exploration: the mean crawls from depth 0 |
| log-std -1, lr 1e-3 | 200k | 0.990, 0.987, 0.855 | faster; one seed stuck (critic explained variance 0.66) |
| log-std -1, CV | 200k | 0.973, 0.975, 0.966 | every seed learns; explained variance 0.99 |
| log-std -1, lr 1e-3 | 400k | 0.982, 0.996, 0.898 | raw reward: the same seed still behind |
| log-std -1, lr 1e-3, CV | 400k | 0.976, 0.996, 0.994 | CV: every seed |
| same, cj objective | 400k | 0.983, 0.994, 0.995; inv std 0.49, 0.82, 0.90 x optimum's | (b) met |
| same, lambda 0.8 | 400k | 0.975, 0.994, 0.978 | no gain |
| same, log-std init -0.5 | 400k | 0.965, 0.993, 0.980 | worse |
| same, 32 envs, minibatch 1600 | 400k | 0.987, 0.997, 0.983 | less noise per update, same wall time |
| same (16 envs), 20 epochs | 400k | 0.987, 0.994, 0.996 | more use of each rollout: kept (``AS_PPO_DEFAULTS``) |
| defaults, both objectives | 100k | pnl 0.968, 0.987, 0.968; cj 0.963, 0.981, 0.961; inv 0.77, 0.85, 1.07 | passes, thin margin |
| defaults, both objectives | 200k | pnl 0.988, 1.004, 0.994; cj 0.984, 0.999, 0.990; inv 0.65, 0.80, 0.81 | the default budget |
| defaults, both objectives | 400k | pnl 0.997, 1.000, 0.996; cj 0.994, 0.997, 0.992; inv 0.78, 0.72, 0.79 | |
| defaults, cj phi 1, alpha 0.1 | 200k | cj 0.980, 0.976, 0.974; inv 1.17, 1.29, 1.24 | strong aversion: criterion met, inventory std not |
| same | 400k | cj 0.985, 0.980, 0.977; inv 1.06, 1.19, 1.30 | not met on one seed |

Findings: (1) the mark-to-market term ``q_{t+1} (S_{t+1} - S_t)`` is zero-mean noise for every
policy and the largest part of the reward's variance; removing it from the training reward
(an env wrapper, no PPO change) is what makes every seed learn; (2) the Gaussian's initial
std must be well below the optimal depth (std 1 price unit vs 1/k = 0.67 keeps the learned
mean wide); (3) no action rescaling or centring is needed: the agent starts at depth 0 and
finds 1/k itself; (4) mbt_gym's phi = 0.01, alpha = 0.001 is a mild aversion: on the same
paths the risk-neutral quotes reach 0.993 of the closed form's criterion (AS gamma 0.1: 0.955,
GLFT: 0.993) but leave 1.45 x its terminal-inventory std, so in (b) the inventory condition is
the one that needs inventory-dependent quotes; with phi = 1, alpha = 0.1 (risk-neutral
quotes: 0.37 of the criterion) the agent reaches 0.97-0.98 of the criterion (400k steps:
62.9-63.3 against the optimum's 64.3, AS 62.4, GLFT 62.8) with 1.06-1.30 x the optimum's
inventory std: the inventory condition of (b) is not met there at these budgets.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from as_model_env import ASModelConfig  # noqa: E402
from model_market import (  # noqa: E402
    ASTrainingConfig,
    as_ppo_config,
    evaluate_as_model,
    reference_policies,
    train_as_model,
)

EVAL_SEED = 1_000_003
"""Seed of the held-out evaluation paths (training episodes use seeds ``seed .. seed + n_envs - 1``)."""
MBT_GYM_CJ = {"per_step_inventory_aversion": 0.01, "terminal_inventory_aversion": 0.001}
"""phi and alpha of mbt_gym's Cartea–Jaimungal notebook on this very model (sigma 2, A 140, k 1.5)."""
OPTIMUM = {"pnl": "risk_neutral", "cj": "cartea_jaimungal"}
THRESHOLDS = {"ratio": 0.95, "inv_std_ratio": 1.2}

logger = logging.getLogger("learn_as")


def objective_config(objective: str, phi: float, alpha: float) -> ASModelConfig:
    """The model of the reference experiment with the objective's inventory aversions."""
    if objective == "pnl":
        return ASModelConfig()
    return ASModelConfig(per_step_inventory_aversion=phi, terminal_inventory_aversion=alpha)


def run_one(objective: str, seed: int, args: argparse.Namespace) -> tuple[dict, pd.DataFrame]:
    """Train one agent and score it beside the closed-form strategies on the held-out paths."""
    config = objective_config(objective, args.phi, args.alpha)
    training = ASTrainingConfig(n_envs=args.n_envs)
    if EVAL_SEED in range(seed, seed + training.n_envs):
        raise ValueError(f"evaluation seed {EVAL_SEED} is one of the training seeds {seed}..{seed + training.n_envs - 1}")
    t0 = time.perf_counter()
    agent = train_as_model(config, as_ppo_config(network=args.network), args.timesteps, seed=seed, training=training)
    wall = time.perf_counter() - t0
    table = evaluate_as_model({"ppo": agent, **reference_policies(config)}, config, n_paths=args.eval_paths,
                              seed=EVAL_SEED, reference=OPTIMUM[objective])
    row = {"objective": objective, "seed": seed, "timesteps": agent.num_timesteps, "train_wall_s": wall,
           "agent": table.loc["ppo", "reward_mean"], "optimum": table.loc[OPTIMUM[objective], "reward_mean"],
           "ratio": table.loc["ppo", "reward_ratio"], "inv_std": table.loc["ppo", "final_inv_std"],
           "optimum_inv_std": table.loc[OPTIMUM[objective], "final_inv_std"],
           "inv_std_ratio": table.loc["ppo", "inv_std_ratio"]}
    return row, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    p.add_argument("--timesteps", type=int, default=200_000, help="training budget per agent (default 200k)")
    p.add_argument("--n-envs", type=int, default=16, help="training envs (default 16)")
    p.add_argument("--eval-paths", type=int, default=1000, help="held-out simulated paths (default 1000)")
    p.add_argument("--network", choices=("mlp", "conv_lstm"), default="mlp",
                   help="mlp (default: the [inventory, time_left] observation) or conv_lstm (the "
                        "ModelMarketWindow observation of the last 8 steps)")
    p.add_argument("--objectives", nargs="+", choices=("pnl", "cj"), default=["pnl", "cj"],
                   help="objectives to train (default both; the last line needs both)")
    p.add_argument("--phi", type=float, default=MBT_GYM_CJ["per_step_inventory_aversion"],
                   help="running inventory aversion of the cj objective (default mbt_gym's 0.01)")
    p.add_argument("--alpha", type=float, default=MBT_GYM_CJ["terminal_inventory_aversion"],
                   help="terminal inventory aversion of the cj objective (default mbt_gym's 0.001)")
    args = p.parse_args(argv)
    if not (args.phi > 0 and args.alpha > 0):
        p.error("the cj objective needs phi > 0 and alpha > 0")
    logging.basicConfig(level=logging.WARNING)
    print(f"# load average at start: {os.getloadavg()}, CPUs: {os.cpu_count()}")
    print(f"# PPO: {as_ppo_config(network=args.network)}")
    print(f"# cj objective: phi={args.phi:g} alpha={args.alpha:g}; eval seed {EVAL_SEED}, {args.eval_paths} paths")
    t_all = time.perf_counter()
    rows = []
    for objective in args.objectives:
        for seed in range(args.seeds):
            row, table = run_one(objective, seed, args)
            rows.append(row)
            print(f"\n## {objective}, seed {seed}: {row['timesteps']} steps in {row['train_wall_s']:.0f} s")
            print(table.round(3).to_string())
    df = pd.DataFrame(rows)
    print()
    print(df.round(4).to_string(index=False))
    pnl, cj = df[df.objective == "pnl"], df[df.objective == "cj"]
    nan = float("nan")  # an objective not trained (--objectives) prints nan and fails the acceptance
    pnl_ratio = float(pnl.ratio.min()) if len(pnl) else nan
    cj_ratio = float(cj.ratio.min()) if len(cj) else nan
    inv_ratio = float(cj.inv_std_ratio.max()) if len(cj) else nan
    ok = pnl_ratio >= THRESHOLDS["ratio"] and cj_ratio >= THRESHOLDS["ratio"] and inv_ratio <= THRESHOLDS["inv_std_ratio"]
    print(f"# training wall time: {df.train_wall_s.sum():.0f} s for {int(df.timesteps.sum())} steps "
          f"({int(np.mean(df.timesteps))} per agent); total wall time {time.perf_counter() - t_all:.0f} s")
    print(f"# load average at end: {os.getloadavg()}")
    print(f"# acceptance (ratios >= {THRESHOLDS['ratio']}, inventory std ratio <= {THRESHOLDS['inv_std_ratio']} "
          f"on every seed): {'PASS' if ok else 'FAIL'}")
    print(f"pnl_ratio={pnl_ratio:.4f} cj_ratio={cj_ratio:.4f} inv_std_ratio={inv_ratio:.4f} seeds={args.seeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
