"""The cost of recording the replay file: evaluation episodes with and without ``replay_record``.

Runs the same ``--episodes`` episodes of the ``join_best`` baseline (it quotes every step, so
every step has quotes, queue positions and, often, fills) on a generated synthetic market,
alternately without a recorder (the floor) and with one writing ``replay.parquet`` (10
levels), ``--repeats`` times each, and prints the process CPU time of each, their ratio, and
the file's size per step and per episode.

    python benchmarks/bench_replay_record.py                  # 4 episodes of 300 s, 3 repeats

"CPU s" is ``time.process_time`` (one core): other jobs on a shared machine distort it much
less than the wall time. The generation and the Replay cache build are outside the timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import evaluation  # noqa: E402
import replay_record  # noqa: E402
import utils  # noqa: E402
from event_driven_env import EnvConfig  # noqa: E402
from synthetic_market import generate_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print the CPU time of evaluation episodes with and without the replay recorder."""
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--episode_length_s", type=float, default=300.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    import baselines as bl

    tmp = Path(tempfile.mkdtemp(prefix="bench_replay_record_"))
    hours = max(0.2, args.episodes * args.episode_length_s / 3600 * 1.5)
    data = generate_file(tmp / "synth.jsonl", hours=hours, seed=0)
    cfg = utils.from_flat(EnvConfig, data_path=str(data), cache_dir=str(tmp / "cache"), action_mode="continuous",
                          episode_length_s=args.episode_length_s)
    env = evaluation.make_env(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        policy = {"join_best": bl.make_baselines(env)["join_best"]}
    cache = {"continuous": env}
    evaluation.evaluate_policies(policy, cfg, 1, seed=0, progress=False, env_cache=cache)  # warm the cache
    times: dict[str, list[float]] = {"without": [], "with": []}
    path = tmp / replay_record.REPLAY_FILE
    steps = 0
    for _ in range(args.repeats):
        for kind in ("without", "with"):
            t0 = time.process_time()
            if kind == "with":
                with replay_record.ReplayRecorder(path, horizons_ms=utils.get_flat(cfg, "markout_horizons_ms")) as rec:
                    eps, _, _ = evaluation.evaluate_policies(policy, cfg, args.episodes, seed=0, progress=False,
                                                             env_cache=cache, replay=rec)
            else:
                eps, _, _ = evaluation.evaluate_policies(policy, cfg, args.episodes, seed=0, progress=False,
                                                         env_cache=cache)
            times[kind].append(time.process_time() - t0)
            steps = int(eps["length_steps"].sum()) + len(eps)
    env.close()
    a, b = min(times["without"]), min(times["with"])
    size = path.stat().st_size
    print(f"{args.episodes} episodes x {args.episode_length_s:g} s of join_best, {steps} recorded steps, "
          f"{int(eps['n_fills'].sum())} fills")
    print(f"CPU s (best of {args.repeats}): without recording {a:.2f}, with {b:.2f}; ratio {b / a:.3f}")
    print(f"replay.parquet: {size / 1e6:.2f} MB, {size / steps:.1f} bytes/step, {size / args.episodes / 1e3:.0f} kB/episode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
