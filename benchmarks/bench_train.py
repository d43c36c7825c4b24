r"""End-to-end PPO training throughput on ``MarketMaking-v0``, per network, with a time breakdown.

Trains ``PPOAgent`` on the market environment (synthetic data by default, or a recording
given with ``--data``) with the Conv1D+LSTM network and with the MLP ablation, and prints
environment steps per second and the share of wall time spent in the environment, in
policy inference (normalisation + compiled forward pass + sampling) and in the PPO updates.
The floor printed beside each figure is the environment alone stepped with random actions
in the same run (training cannot be faster than that).

Usage::

    python benchmarks/bench_train.py                         # synthetic data, both networks
    python benchmarks/bench_train.py --data ../shared/data/bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl \
        --symbol ETHUSDT --episode-length-s 30 --warmup-s 5
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import event_driven_env  # noqa: E402,F401  (registers MarketMaking-v0)
from ppo_agent import PPOAgent, PPOConfig  # noqa: E402
from utils import from_flat  # noqa: E402


def make_envs(args: argparse.Namespace, n_envs: int) -> gym.vector.VectorEnv:
    kwargs = {"data_path": str(args.data), "action_mode": args.action_mode}
    if args.symbol:
        kwargs["symbol"] = args.symbol
    if args.episode_length_s:
        kwargs["episode_length_s"] = args.episode_length_s
    if args.warmup_s is not None:
        kwargs["warmup_s"] = args.warmup_s
    fns = [lambda: gym.make("MarketMaking-v0", **kwargs) for _ in range(n_envs)]
    if args.vector == "async":
        return gym.vector.AsyncVectorEnv(fns)
    return gym.vector.SyncVectorEnv(fns)


def env_only_rate(envs: gym.vector.VectorEnv, steps: int, seed: int) -> float:
    """Environment steps/s with random actions (the ceiling for training throughput)."""
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    n = 0
    t0 = time.perf_counter()
    while n < steps:
        envs.step(envs.action_space.sample())
        n += envs.num_envs
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="recording (default: synthetic_market.default_dataset())")
    p.add_argument("--symbol", default=None, help="symbol in a multi-symbol recording, e.g. ETHUSDT")
    p.add_argument("--networks", default="conv_lstm,mlp", help="comma-separated: conv_lstm, mlp")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--n-steps", type=int, default=128, help="PPOConfig.n_steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-epochs", type=int, default=4)
    p.add_argument("--timesteps", type=int, default=16_384, help="training steps per network")
    p.add_argument("--action-mode", default="discrete", choices=["discrete", "continuous"])
    p.add_argument("--episode-length-s", type=float, default=None, help="EnvConfig.episode_length_s")
    p.add_argument("--warmup-s", type=float, default=None, help="EnvConfig.warmup_s")
    p.add_argument("--vector", default="sync", choices=["sync", "async"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.data is None:
        import synthetic_market

        args.data = synthetic_market.default_dataset()
    print(f"# data: {args.data}  envs: {args.n_envs} ({args.vector})  load average: {os.getloadavg()}")
    envs = make_envs(args, args.n_envs)
    floor = env_only_rate(envs, min(args.timesteps, 4096), args.seed)
    print(f"# environment alone (random actions): {floor:.0f} steps/s")
    print("| network | steps | steps/s | ratio to env alone | env % | inference % | update % | other % |")
    print("|---|---|---|---|---|---|---|---|")
    last = []
    for net in args.networks.split(","):
        cfg = from_flat(PPOConfig, network=net, n_steps=args.n_steps, batch_size=args.batch_size,
                        n_epochs=args.n_epochs)
        agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=args.seed)
        # One untimed update first: XLA-compiles the policy and update steps.
        warm_steps = args.n_steps * args.n_envs
        agent.learn(envs, warm_steps)
        stats: dict = {}
        t0 = time.perf_counter()
        agent.learn(envs, warm_steps + args.timesteps, callback=lambda a, s, out=stats: out.update(s))
        wall = time.perf_counter() - t0
        steps = agent.num_timesteps - warm_steps
        sps = steps / wall
        t = agent.timings  # reset at the start of each learn call
        other = wall - t["env_s"] - t["policy_s"] - t["update_s"]
        print(f"| {net} | {steps} | {sps:.0f} | {sps / floor:.2f} | {100 * t['env_s'] / wall:.0f} | "
              f"{100 * t['policy_s'] / wall:.0f} | {100 * t['update_s'] / wall:.0f} | {100 * other / wall:.0f} |")
        last.append(f"{net} {steps} {sps:.0f} ep_return_mean={stats.get('rollout/ep_return_mean', np.nan):.3f}")
    envs.close()
    for line in last:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
