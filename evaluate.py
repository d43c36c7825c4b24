"""Evaluate trained agents against the baseline market makers on the very same episodes.

One job: the evaluation command line. It loads one or several saved agents (e.g. the runs
of several training seeds; ``cli.load_model``), refuses models whose env/action settings
differ, rebuilds the env they were trained with from the ``env_config.json`` saved beside
them (data, symbol, range and episode/cost settings may be overridden; the spaces may not
change), builds the baselines and runs ``evaluation.run_evaluation``: every model and every
baseline (once) on the same episodes, writing the per-episode metrics, the per-policy
summary, the paired agent − baseline differences, comparison plots and (optionally) a
figure of each first episode.

Models trained on the model market (``train.py --env as_model``) are recognised by their
saved ``env_config.json`` (``model_market_cli.is_as_model``): every model, the closed-form
Avellaneda–Stoikov (gamma 0.1), GLFT, risk-neutral ``1/k`` and (with phi or alpha > 0)
Cartea–Jaimungal strategies run on the same ``--num_paths`` held-out simulated paths
(``model_market.compare_with_references``; default 1,000 paths, seed
``model_market.EVAL_SEED``), with the paired agent − reference differences per path.

Public names:

- ``build_parser`` / ``add_env_overrides``: the flags (``python evaluate.py --help``).
- ``resolve_model_paths`` / ``model_names``: model folders, run folders and globs -> model
  folders, and their names in the ``model`` column.
- ``check_same_setup``: refuse models trained with different env/action settings.
- ``saved_env_config`` / ``resolve_env_config``: the evaluation ``EnvConfig``.
- ``calibration_data``: the data on which AS/GLFT fit their intensity.
- ``check_spaces``: refuse an env whose spaces differ from the model's.
- ``main``: the CLI; ``market_only_flags``: the flags a model-market evaluation refuses.
- Re-exported for scripts and tests: ``load_model``, ``make_env`` (``cli``),
  ``run_evaluation`` (``evaluation``).

Example::

    python evaluate.py --model_path results/<run>/models/final_model
        --data_path ../shared/data/bybit/cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl
        --symbol ETHUSDT --visualize_first
    python evaluate.py --model_path 'results/ppo_ETHUSDT_discrete_s*'   # every seed's run
    python evaluate.py --model_path results/ppo_as_model_cj_s0_<timestamp>   # a model-market run
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cli
import model_market_cli as mmc
import utils
from cli import load_model, make_env, parse_range, resolve_data_paths
from evaluation import AgentPolicy, build_baselines, format_report, run_evaluation

__all__ = [
    "add_env_overrides", "build_parser", "calibration_data", "check_same_setup", "check_spaces",
    "load_model", "main", "make_env", "market_only_flags", "model_names", "resolve_env_config",
    "resolve_model_paths", "run_evaluation", "saved_env_config",
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
    g.add_argument("--model_path", nargs="+", default=None,
                   help="saved agent(s): model folders (results/<run>/models/final_model or "
                        "best_model), run folders (results/<run> = its models/final_model) or globs "
                        "of either, e.g. the runs of several training seeds; all must share the "
                        "env/action settings; omit to evaluate the baselines only")
    g.add_argument("--data_path", nargs="+", default=None,
                   help="recording(s): one file, several files or a glob; default: the data the "
                        "model was trained on (or the synthetic market without a model)")
    g.add_argument("--symbol", default=None, help="symbol to use in files holding several")
    g.add_argument("--num_episodes", type=int, default=30,
                   help="market models: episodes per policy and model, the same start times for all")
    g.add_argument("--num_paths", type=int, default=argparse.SUPPRESS,
                   help="model-market models (train.py --env as_model): simulated paths per policy and "
                        "model, the same paths for all (default: model_market.EVAL_PATHS = 1000)")
    g.add_argument("--baselines", nargs="*", default=None,
                   help="baselines to run (default: all of them; give no names for none)")
    g.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                   help="seed of the episode start times and env resets (episode i: seed + i) and of "
                        "the bootstrap CIs; model-market models: of the simulated paths and the CIs "
                        "(default: 0; model-market models: model_market.EVAL_SEED = 1000003, disjoint "
                        "from every training seed)")
    g.add_argument("--eval_range", nargs=2, type=float, default=None, metavar=("START", "END"),
                   help="time range as fractions of the recording; default: the held-out range "
                        "of the model's training run on its own data, else 0 1")
    g.add_argument("--visualize_first", action="store_true",
                   help="draw the multi-panel figure of each policy's first episode")
    g.add_argument("--out_dir", default="evaluation_results",
                   help="parent folder; results go to <out_dir>/<name>_<timestamp>/")
    g.add_argument("--name", default=None,
                   help="run name (default: the model's run name, '<first>_and_<n>_more' for "
                        "several, or 'baselines')")
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
    paths = resolve_model_paths(args.model_path) if args.model_path else []
    loaded = {name: load_model(p) for name, p in zip(model_names(paths), paths, strict=True)}
    if any(mmc.is_as_model(meta) for _, meta in loaded.values()):
        return _main_as_model(args, env_map, loaded, paths)
    if hasattr(args, "num_paths"):
        raise utils.CliError("--num_paths is for model-market models (train.py --env as_model); "
                             "market models take --num_episodes")
    args.seed = getattr(args, "seed", 0)
    check_same_setup(loaded, compare_held_out=not args.data_path)
    saved = next(iter(loaded.values()))[1] if loaded else None
    env_config = resolve_env_config(saved, args, _default_data)
    env_config = utils.dataclass_from_args(type(env_config), args, env_map, base=env_config)
    env_cache: dict[str, Any] = {}
    mode = utils.get_flat(env_config, "action_mode")
    models: dict[str, Any] = {}
    if loaded:
        env = env_cache[mode] = make_env(env_config)
        for name, (agent, _) in loaded.items():
            check_spaces(agent, env)
            models[name] = AgentPolicy(agent, mode)
    calibration = calibration_data(saved, env_config, args)
    policies = initial_reference(paths, mode)
    policies.update(build_baselines(env_config, args.baselines, args.seed, env_cache, calibration))
    if not models and not policies:
        raise utils.CliError("nothing to evaluate: give --model_path or at least one baseline")
    out = Path(args.out_dir) / f"{args.name or _default_name(list(loaded))}_{time.strftime('%Y%m%d-%H%M%S')}"
    data_files = cli.config_data_files(utils.get_flat(env_config, "data_path"))
    selection = selection_statement(loaded, paths, env_config, held_out_data=not args.data_path)
    for line in selection:
        logger.info("%s", line)
    result = run_evaluation(
        policies, env_config, out, n_episodes=args.num_episodes, seed=args.seed,
        visualize_first=args.visualize_first, progress=not args.no_progress, env_cache=env_cache,
        models=models,
        extra_meta={"model_path": str(paths[0]) if paths else None,
                    "model_paths": {n: str(p) for n, p in zip(loaded, paths, strict=True)},
                    "command": sys.argv, "calibration": calibration, "selection": selection,
                    "data_files": [{"path": str(p), "sha256": utils.sha256_file(p)} for p in data_files]},
    )
    for env in env_cache.values():
        env.close()
    print(format_report(result))
    print("\n".join(selection))
    print(f"wrote {out}")
    return 0


def initial_reference(paths: Sequence[Path], mode: str) -> dict[str, Any]:
    """``{"initial_agent": policy}``: the untrained agent of a single model's run (``models/initial_model``), or ``{}``.

    The reference row that shows whether training learned anything; with several models
    (each run has its own) there is none.
    """
    initial = paths[0].parent / "initial_model" if len(paths) == 1 else None
    if initial is None or not initial.is_dir() or initial == paths[0]:
        return {}
    from evaluation import INITIAL_AGENT

    return {INITIAL_AGENT: AgentPolicy(load_model(initial)[0], mode)}


def training_overlap(trained: dict[str, Any], env_config: Any) -> str | None:
    """What the evaluation data shares with a model's training data (``env_config.json``'s config), or None.

    The same files with overlapping time ranges (fractions of the same recording), or some
    shared files (ranges then not comparable).

    >>> training_overlap({"data_path": "a.jsonl", "time_range": [0.0, 0.6]},
    ...                  {"data_path": "a.jsonl", "time_range": [0.5, 1.0]})
    'the evaluation range (0.5, 1.0) overlaps the training range (0.0, 0.6) of the same data'
    >>> training_overlap({"data_path": "a.jsonl", "time_range": [0.0, 0.6]},
    ...                  {"data_path": "a.jsonl", "time_range": [0.7, 1.0]}) is None
    True
    """
    def files(cfg: Any) -> set[str]:
        dp = utils.get_flat(cfg, "data_path") if not isinstance(cfg, dict) else cfg.get("data_path", "")
        items = dp.split(os.pathsep) if isinstance(dp, str) else list(dp or [])
        return {os.path.realpath(p) for p in items if p}

    def time_range(cfg: Any) -> tuple[float, float]:
        tr = utils.get_flat(cfg, "time_range") if not isinstance(cfg, dict) else cfg.get("time_range", (0.0, 1.0))
        return float(tr[0]), float(tr[1])

    train, ev = files(trained), files(env_config)
    if not train or not ev or not (train & ev):
        return None
    (a0, a1), (b0, b1) = time_range(trained), time_range(env_config)
    if train == ev:
        if max(a0, b0) < min(a1, b1):
            return f"the evaluation range {(b0, b1)} overlaps the training range {(a0, a1)} of the same data"
        return None
    return f"the evaluation data shares {len(train & ev)} file(s) with the model's training data"


def selection_statement(loaded: dict[str, tuple[Any, dict[str, Any] | None]], paths: Sequence[Path],
                        env_config: Any, held_out_data: bool) -> list[str]:
    """One line per model: which model is evaluated, on what, and whether that data served for selection."""
    rng = tuple(utils.get_flat(env_config, "time_range"))
    lines = []
    for (name, (_, meta)), path in zip(loaded.items(), paths, strict=True):
        meta = meta or {}
        val = (meta.get("validation") or {}).get("time_range")
        kind = path.name if path.name in ("final_model", "best_model", "initial_model") else "model"
        if not held_out_data:
            where = f"on the data given (time range {rng}), not the run's test range"
            overlap = training_overlap(meta.get("env_config") or {}, env_config)
            if overlap:
                where += f"; WARNING: {overlap}: the result is in-sample"
                warnings.warn(f"{name}: {overlap}: the evaluation is in-sample", stacklevel=2)
        elif val is not None:
            where = (f"on its run's test range {rng}, never used for training or model selection "
                     f"(best_model was selected on the validation range {tuple(val)})")
        elif kind == "best_model":
            where = (f"on its run's held-out range {rng}, WHICH ALSO SELECTED THIS best_model (a run from before "
                     "the validation split): the result is optimistic; evaluate final_model or retrain")
        else:
            where = f"on its run's held-out range {rng} (a run from before the validation split)"
        lines.append(f"evaluated {name} ({path}) {where}")
    return lines


def market_only_flags(args: argparse.Namespace, env_map: dict[str, str]) -> list[str]:
    """The flags typed that only a market evaluation uses (data, range, baselines, figures, EnvConfig)."""
    given = [d for d in env_map if hasattr(args, d)]
    given += [o for o in ("data_path", "symbol", "eval_range", "baselines") if getattr(args, o) is not None]
    return sorted(given + (["visualize_first"] if args.visualize_first else []))


def _main_as_model(args: argparse.Namespace, env_map: dict[str, str],
                   loaded: dict[str, tuple[Any, dict[str, Any] | None]], paths: list[Path]) -> int:
    """Model-market models: every model and the closed forms on the same simulated paths."""
    import model_market as mm

    kinds = {name: mmc.is_as_model(meta) for name, (_, meta) in loaded.items()}
    if not all(kinds.values()):
        market, model = (next(n for n, k in kinds.items() if not k), next(n for n, k in kinds.items() if k))
        raise utils.CliError(f"{market} is a market model and {model} a model-market one: evaluate them apart")
    given = market_only_flags(args, env_map)
    if given:
        raise utils.CliError(f"{given} do not apply to model-market models (they run on simulated paths)")
    config = mmc.same_as_config({name: meta for name, (_, meta) in loaded.items()})
    seed, n_paths = getattr(args, "seed", mm.EVAL_SEED), getattr(args, "num_paths", mm.EVAL_PATHS)
    if n_paths < 2:
        raise utils.CliError(f"--num_paths must be >= 2 (paired statistics), got {n_paths}")
    for name, (agent, meta) in loaded.items():
        check_spaces(agent, mmc.evaluation_env(meta, config))
        mmc.warn_if_seen_in_training(seed, agent, meta, name)
    out = Path(args.out_dir) / f"{args.name or _default_name(list(loaded))}_{time.strftime('%Y%m%d-%H%M%S')}"
    comp = mmc.run_as_evaluation(
        {name: agent for name, (agent, _) in loaded.items()}, config, out, n_paths=n_paths, seed=seed,
        extra_meta={"model_paths": {n: str(p) for n, p in zip(loaded, paths, strict=True)}, "command": sys.argv})
    print(mmc.format_as_report(comp, config, seed))
    print(f"wrote {out}")
    return 0


def _default_name(names: list[str]) -> str:
    if not names:
        return "baselines"
    return names[0] if len(names) == 1 else f"{names[0]}_and_{len(names) - 1}_more"


def resolve_model_paths(specs: Sequence[str | os.PathLike]) -> list[Path]:
    """Model folders from ``--model_path``: model folders, run folders and globs of either.

    A run folder (``results/<run>``, holding ``models/final_model``) stands for its final
    model; any other path is taken as a model folder (``cli.load_model`` says what is wrong
    with it). Globs expand in sorted order; duplicates are dropped.

    Raises:
        utils.CliError: a glob that matches nothing.
    """
    out: list[Path] = []
    for spec in specs:
        s = os.fspath(spec)
        matches = sorted(glob.glob(s)) if glob.has_magic(s) else [s]
        if not matches:
            raise utils.CliError(f"--model_path pattern {s!r} matches nothing")
        for m in matches:
            p = Path(m)
            if not (p / "agent.json").is_file() and (p / "models" / "final_model").is_dir():
                p = p / "models" / "final_model"
            if p not in out:
                out.append(p)
    return out


def model_names(paths: Sequence[Path]) -> list[str]:
    """The ``model`` column value of each model: its run and folder name, made unique.

    >>> model_names([Path("results/s0/models/final_model"), Path("results/s1/models/final_model"),
    ...              Path("x/results/s1/models/final_model")])
    ['s0-final_model', 's1-final_model', 's1-final_model#2']
    """
    names: list[str] = []
    for p in paths:
        base = _run_name_of(str(p))
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}#{k}"
        names.append(name)
    return names


_NOT_SETUP = ("data_path", "symbol", "time_range", "seed", "cache_dir")
"""EnvConfig leaves that may differ between the models compared (the training data and
where its cache lives; the evaluation data is chosen once for all of them)."""


def _setup_of(agent: Any, saved: dict[str, Any] | None, compare_held_out: bool) -> dict[str, Any]:
    from event_driven_env import EnvConfig

    cfg = saved_env_config(saved) or EnvConfig()
    out: dict[str, Any] = {k: v for k, v in utils.flat_dict(cfg).items() if k not in _NOT_SETUP}
    out["observation_space"], out["action_space"] = str(agent.observation_space), str(agent.action_space)
    if compare_held_out:
        held = (saved or {}).get("held_out") or {}
        out["held-out data"] = list(held.get("data_path") or [])
        out["held-out time_range"] = list(held.get("time_range") or [])
    return out


def check_same_setup(loaded: dict[str, tuple[Any, dict[str, Any] | None]], compare_held_out: bool) -> None:
    """Refuse models trained with different env/action settings (one line naming the first difference).

    Args:
        loaded: ``{model name: (agent, env_config.json content)}``.
        compare_held_out: also require the same held-out data and range (when the evaluation
            data is the models' own held-out data, i.e. without ``--data_path``).

    Raises:
        utils.CliError: naming the two models, the setting and both values.
    """
    items = list(loaded.items())
    if len(items) < 2:
        return
    name0, (agent0, saved0) = items[0]
    ref = _setup_of(agent0, saved0, compare_held_out)
    for name, (agent, saved) in items[1:]:
        other = _setup_of(agent, saved, compare_held_out)
        for key in [*ref, *(k for k in other if k not in ref)]:
            if ref.get(key) != other.get(key):
                raise utils.CliError(
                    f"models {name0} and {name} differ in {key} ({ref.get(key)!r} vs {other.get(key)!r}): "
                    "every model must share the env/action configuration")


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
    cli.exit_quietly(main())
