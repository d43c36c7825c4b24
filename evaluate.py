"""Evaluate a trained agent against the baseline market makers on the very same episodes.

One job: the evaluation command line. It loads a saved agent (``cli.load_model``), rebuilds
the env it was trained with from the ``env_config.json`` saved beside it (data, symbol,
range and episode/cost settings may be overridden; the spaces may not change), builds the
baselines and runs ``evaluation.run_evaluation``, which writes the per-episode metrics, the
per-policy summary, comparison plots and (optionally) a figure of each first episode.

Public names:

- ``build_parser`` / ``add_env_overrides``: the flags (``python evaluate.py --help``).
- ``saved_env_config`` / ``resolve_env_config``: the evaluation ``EnvConfig``.
- ``calibration_data``: the data on which AS/GLFT fit their intensity.
- ``check_spaces``: refuse an env whose spaces differ from the model's.
- ``main``: the CLI.
- Re-exported for scripts and tests: ``load_model``, ``make_env`` (``cli``),
  ``run_evaluation`` (``evaluation``).

Example::

    python evaluate.py --model_path results/<run>/models/final_model
        --data_path ../shared/data/bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl
        --symbol ETHUSDT --visualize_first
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cli
import utils
from cli import load_model, make_env, parse_range, resolve_data_paths
from evaluation import build_policies, format_table, run_evaluation, table_footnote

__all__ = [
    "add_env_overrides", "build_parser", "calibration_data", "check_spaces", "load_model", "main",
    "make_env", "resolve_env_config", "run_evaluation", "saved_env_config",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``evaluate.py`` with its own flags (``add_env_overrides`` adds the EnvConfig ones)."""
    p = utils.OneLineErrorParser(
        prog="evaluate.py",
        description="Evaluate a trained agent and the baselines on the same episodes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model, data and run")
    g.add_argument("--model_path", default=None,
                   help="folder of a saved agent (results/<run>/models/final_model or best_model); "
                        "omit to evaluate the baselines only")
    g.add_argument("--data_path", nargs="+", default=None,
                   help="recording(s): one file, several files or a glob; default: the data the "
                        "model was trained on (or the synthetic market without a model)")
    g.add_argument("--symbol", default=None, help="symbol to use in files holding several")
    g.add_argument("--num_episodes", type=int, default=10, help="episodes per policy")
    g.add_argument("--baselines", nargs="*", default=None,
                   help="baselines to run (default: all of them; give no names for none)")
    g.add_argument("--seed", type=int, default=0, help="seed of the episode start times")
    g.add_argument("--eval_range", nargs=2, type=float, default=None, metavar=("START", "END"),
                   help="time range as fractions of the recording; default: the held-out range "
                        "of the model's training run on its own data, else 0 1")
    g.add_argument("--visualize_first", action="store_true",
                   help="draw the multi-panel figure of each policy's first episode")
    g.add_argument("--out_dir", default="evaluation_results",
                   help="parent folder; results go to <out_dir>/<name>_<timestamp>/")
    g.add_argument("--name", default=None, help="run name (default: the model's run name, or 'baselines')")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    g.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


def add_env_overrides(p: argparse.ArgumentParser) -> dict[str, str]:
    """Add the EnvConfig flags that override the model's saved env settings.

    For example a shorter ``--episode_length_s`` for a short recording. Settings that change
    the observation or action spaces are refused when a model is given.
    """
    from event_driven_env import EnvConfig

    return utils.add_dataclass_arguments(
        p, EnvConfig, title="environment overrides (EnvConfig; default: the model's training settings)",
        exclude=("data_path", "symbol", "time_range", "seed"))


def saved_env_config(saved: dict[str, Any] | None) -> Any:
    """The training ``EnvConfig`` of a model's ``env_config.json`` content (nested or flat), or ``None``."""
    cfg_dict = (saved or {}).get("env_config")
    if not cfg_dict:
        return None
    from event_driven_env import EnvConfig

    return utils.dataclass_from_dict(EnvConfig, cfg_dict, source=f"model {cli.ENV_CONFIG_FILE}")


def resolve_env_config(
    saved: dict[str, Any] | None, args: argparse.Namespace, default_data: Callable[[], Path]
) -> Any:
    """The evaluation ``EnvConfig``: the saved training config with data/symbol/range overridden.

    ``saved`` is the content of a model's ``env_config.json`` (``cli.ENV_CONFIG_FILE``).
    Without ``--data_path`` the held-out data and range of the training run are used; with
    it, the given files and ``--eval_range`` (default: the whole recording, which training
    never saw).
    """
    from event_driven_env import EnvConfig

    base = saved_env_config(saved) or EnvConfig()
    held_out = (saved or {}).get("held_out") or {}
    eval_range = parse_range(args.eval_range, "--eval_range")
    changes: dict[str, Any] = {}
    if args.data_path:
        changes["data_path"] = cli.env_data_path(resolve_data_paths(args.data_path))
        changes["symbol"] = args.symbol
        changes["time_range"] = eval_range or (0.0, 1.0)
    else:
        if held_out.get("data_path"):
            changes["data_path"] = cli.env_data_path(resolve_data_paths(held_out["data_path"]))
        else:
            changes["data_path"] = str(default_data())
        if args.symbol is not None:
            changes["symbol"] = args.symbol
        hr = held_out.get("time_range")
        changes["time_range"] = eval_range or (tuple(hr) if hr else (0.0, 1.0))
    try:
        return utils.replace_flat(base, **changes)
    except (ValueError, TypeError) as exc:
        raise utils.CliError(f"invalid evaluation settings: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""

    def body() -> int:
        parser = build_parser()
        env_map = add_env_overrides(parser)
        return _main(parser.parse_args(argv), env_map)

    return cli.run_cli("evaluate.py", body, argv)


def _default_data() -> Path:
    from synthetic_market import default_dataset

    return Path(default_dataset())


def _main(args: argparse.Namespace, env_map: dict[str, str]) -> int:
    if args.num_episodes < 1:
        raise utils.CliError(f"--num_episodes must be >= 1, got {args.num_episodes}")
    agent, saved = (None, None)
    if args.model_path:
        agent, saved = load_model(args.model_path)
    env_config = resolve_env_config(saved, args, _default_data)
    env_config = utils.dataclass_from_args(type(env_config), args, env_map, base=env_config)
    env_cache: dict[str, Any] = {}
    if agent is not None:
        env = env_cache[utils.get_flat(env_config, "action_mode")] = make_env(env_config)
        check_spaces(agent, env)
    calibration = calibration_data(saved, env_config, args)
    policies = build_policies(agent, env_config, args.baselines, args.seed, env_cache, calibration)
    name = args.name or (_run_name_of(args.model_path) if args.model_path else "baselines")
    out = Path(args.out_dir) / f"{name}_{time.strftime('%Y%m%d-%H%M%S')}"
    data_files = cli.config_data_files(utils.get_flat(env_config, "data_path"))
    summary, _ = run_evaluation(
        policies, env_config, out, n_episodes=args.num_episodes, seed=args.seed,
        visualize_first=args.visualize_first, progress=not args.no_progress, env_cache=env_cache,
        extra_meta={"model_path": args.model_path, "command": sys.argv, "calibration": calibration,
                    "data_files": [{"path": str(p), "sha256": utils.sha256_file(p)} for p in data_files]},
    )
    for env in env_cache.values():
        env.close()
    print(format_table(summary))
    print(table_footnote(summary))
    print(f"wrote {out}")
    return 0


def check_spaces(agent: Any, env: Any) -> None:
    """Refuse an env whose observation/action spaces differ from the agent's (clear message)."""
    for what in ("observation_space", "action_space"):
        a, e = getattr(agent, what), getattr(env, what)
        if a != e:
            raise utils.CliError(f"the evaluation env's {what} {e} differs from the model's {a}: "
                                 "only data, symbol, range and episode/cost settings may change")


def calibration_data(saved: dict[str, Any] | None, env_config: Any, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """Data on which AS/GLFT fit their intensity.

    The run's training part of the same data; with another recording (``--data_path``), the
    evaluation range itself (in-sample for the baselines).
    """
    train = saved_env_config(saved)
    if not args.data_path and train is not None and utils.get_flat(train, "data_path"):
        source = train
    else:
        if args.data_path:
            logger.info("AS/GLFT intensity is fitted on the evaluation range itself (in-sample for "
                        "the baselines)")
        source = env_config
    return {"data_path": utils.get_flat(source, "data_path"), "symbol": utils.get_flat(source, "symbol"),
            "time_range": list(utils.get_flat(source, "time_range"))}


def _run_name_of(model_path: str) -> str:
    p = Path(model_path).resolve()
    # results/<run>/models/<final_model|best_model>
    if p.parent.name == "models":
        return f"{p.parent.parent.name}-{p.name}"
    return p.name


if __name__ == "__main__":
    sys.exit(main())
