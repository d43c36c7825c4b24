"""The plan of a training run: the train / validation / test split, the budget in real units, run records.

One job: decide, before any training starts, *what* a run will train and select on and *how
much* — in units a researcher can check: episodes of the length the data actually allows,
steps, passes over the training data and an estimated time — and refuse budgets that only
replay the same few seconds thousands of times (unless ``--force``). ``train.py`` wires it.

The split (``data_split``). Three disjoint time ranges, as fractions of the recording's
book-stream time span (``EnvConfig.time_range``):

- **train**: what the agent learns on;
- **validation**: what the periodic evaluation runs on, which selects ``models/best_model``;
- **test**: what the final evaluation (and ``evaluate.py`` by default) reports on; never
  used for training or for selection.

Defaults: train ``0 0.6``, validation ``0.6 0.7``, test ``0.7 1``. The validation range
defaults to the last seventh of the training range (``VAL_SHARE``), so ``--train_range A B``
alone trains on ``A .. B - (B - A)/7`` and validates on the rest; ``--val_range`` sets it
explicitly (alone, training is everything before it). With ``--eval_data_path`` the test range is that recording (``0 1`` by default)
and train/validation split the training recording the same way (``0 .. 6/7`` and
``6/7 .. 1``).

The budget (``plan_budget``). An episode lasts ``episode_length_s`` when the training range
holds that much data, else the whole range (``MarketMakingEnv``): ``steps_per_episode`` =
``ceil(min(episode_length_s, training span) / decision_interval)``. ``--num_episodes N``
means ``N x`` *that*; passes over the data = steps x decision interval / training span.
More than ``WARN_PASSES`` passes, or a training range shorter than one episode, is a
warning; more than ``MAX_PASSES`` passes is refused unless ``--force``.

Public names: ``VAL_SHARE``, ``WARN_PASSES``, ``MAX_PASSES``, ``PLANNING_STEPS_PER_S``,
``DataSplit``, ``carve_validation``, ``data_split``, ``Budget``, ``plan_budget``,
``budget_messages``, ``range_span_ms``, ``log_plan``, ``inventory_penalty_flag``,
``warn_ignored_reward_settings``, ``steps_per_episode``, ``make_vector_env``,
``data_entry``, ``package_versions``, ``device_info``, ``git_commit``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cli
import utils

logger = logging.getLogger(__name__)

VAL_SHARE = 1.0 / 7.0
"""Share of the training range kept for validation when ``--val_range`` is not given
(the default ``0 0.7`` becomes train ``0 0.6`` + validation ``0.6 0.7``)."""
WARN_PASSES = 10.0
"""More passes over the training data than this is a warning."""
MAX_PASSES = 100.0
"""More passes over the training data than this is refused unless ``--force``."""
PLANNING_STEPS_PER_S = 500.0
"""Steps per second used for the up-front time estimate: the default run's rate measured
on 2 loaded CPU cores (issue 16: 493 steps/s). The run prints its own rate at the end."""


# --------------------------------------------------------------------------- split


class DataSplit(NamedTuple):
    """The files and time ranges (fractions) of the three parts of a run."""

    train_files: list[Path]
    val_files: list[Path]
    test_files: list[Path]
    train_range: tuple[float, float]
    val_range: tuple[float, float]
    test_range: tuple[float, float]


def carve_validation(train_range: Sequence[float], share: float = VAL_SHARE
                     ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Split a training range into ``(train, validation)``: validation is its last ``share``.

    >>> carve_validation((0.0, 0.7))
    ((0.0, 0.6), (0.6, 0.7))
    >>> carve_validation((0.0, 1.0))
    ((0.0, 0.857142857143), (0.857142857143, 1.0))
    """
    lo, hi = float(train_range[0]), float(train_range[1])
    cut = round(hi - (hi - lo) * share, 12)
    return (lo, cut), (cut, hi)


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[1] > b[0] and b[1] > a[0]


def data_split(args: argparse.Namespace) -> DataSplit:
    """The split of a new run from ``--data_path``, ``--eval_data_path``, ``--train_range``, ``--val_range``, ``--eval_range``.

    Raises:
        utils.CliError: overlapping ranges on the same files, or a bad range.
    """
    if args.data_path:
        train_files = cli.resolve_data_paths(args.data_path)
    else:
        from synthetic_market import default_dataset

        logger.info("no --data_path: using the synthetic market (generated once into data/)")
        train_files = [Path(default_dataset())]
    val_range = cli.parse_range(args.val_range, "--val_range")
    if args.eval_data_path:
        test_files = cli.resolve_data_paths(args.eval_data_path)
        test_range = cli.parse_range(args.eval_range, "--eval_range") or (0.0, 1.0)
        outer = cli.parse_range(args.train_range, "--train_range") or (0.0, 1.0)
    else:
        test_files = train_files
        test_range = cli.parse_range(args.eval_range, "--eval_range") or (0.7, 1.0)
        outer = cli.parse_range(args.train_range, "--train_range") or (0.0, test_range[0] if test_range[0] > 0 else 0.7)
    if val_range is not None and args.train_range is None and val_range[0] > 0:
        outer = (0.0, val_range[0])  # --val_range alone: train on everything before it
    train_range, carved = carve_validation(outer) if val_range is None else (outer, val_range)
    val_range = val_range or carved
    parts = [("--train_range", train_range, train_files), ("--val_range", val_range, train_files),
             ("--eval_range", test_range, test_files)]
    for i, (na, ra, fa) in enumerate(parts):
        for nb, rb, fb in parts[i + 1:]:
            if fa == fb and _overlap(ra, rb):
                raise utils.CliError(f"{na} {ra} and {nb} {rb} overlap: training, validation (model "
                                     "selection) and test (final evaluation) must be disjoint")
    return DataSplit(train_files, list(train_files), test_files, train_range, val_range, test_range)


# --------------------------------------------------------------------------- budget


def steps_per_episode(env_config: Any, span_ms: float | None = None) -> int:
    """Decision steps in one episode: ``ceil(min(episode_length_s, span) * 1000 / decision_interval_ms)``.

    ``span_ms``: the time range's length (an episode never outlasts it); ``None`` = the
    nominal episode.

    >>> from types import SimpleNamespace as NS
    >>> steps_per_episode(NS(episode_length_s=300.0, decision_interval_ms=1000))
    300
    >>> steps_per_episode(NS(episode_length_s=300.0, decision_interval_ms=100), span_ms=30_450)
    305
    """
    length_ms = env_config.episode_length_s * 1000.0
    if span_ms is not None:
        length_ms = min(length_ms, float(span_ms))
    return max(1, int(math.ceil(length_ms / env_config.decision_interval_ms - 1e-9)))


class Budget(NamedTuple):
    """A run's budget in real units (``plan_budget``)."""

    total_steps: int
    """Environment steps, all envs together."""
    steps_per_episode: int
    """Steps of one episode as the training data allows it."""
    episode_s: float
    """Seconds of data one episode covers."""
    span_s: float
    """Seconds of data in the training range."""
    passes: float
    """Simulated seconds / ``span_s``: how often the run replays the training data."""
    eta_s: float
    """Estimated training time at ``PLANNING_STEPS_PER_S``."""


def plan_budget(num_episodes: int, total_timesteps: int, env_config: Any, span_ms: float) -> Budget:
    """The budget of ``--num_episodes`` (or ``--total_timesteps`` when > 0) on a training range of ``span_ms``.

    >>> from types import SimpleNamespace as NS
    >>> b = plan_budget(500, 0, NS(episode_length_s=300.0, decision_interval_ms=100), 30_450)
    >>> b.steps_per_episode, b.total_steps, round(b.passes), round(b.eta_s)
    (305, 152500, 501, 305)
    """
    steps = steps_per_episode(env_config, span_ms)
    total = int(total_timesteps) or int(num_episodes) * steps
    dt_s = env_config.decision_interval_ms / 1000.0
    span_s = float(span_ms) / 1000.0
    passes = total * dt_s / span_s if span_s > 0 else math.inf
    return Budget(total, steps, steps * dt_s, span_s, passes, total / PLANNING_STEPS_PER_S)


def budget_messages(b: Budget, env_config: Any, force: bool) -> tuple[str, list[str]]:
    """``(plan line, warnings)`` of a budget; refuses more than ``MAX_PASSES`` passes unless ``force``.

    Raises:
        utils.CliError: the budget replays the training data more than ``MAX_PASSES`` times.
    """
    line = (f"plan: {b.total_steps:,} steps = {b.total_steps / b.steps_per_episode:,.1f} episodes of "
            f"{b.steps_per_episode} steps ({b.episode_s:g} s of data each) on {b.span_s:,.1f} s of training "
            f"data = {b.passes:,.1f} passes over it; estimated ~{_duration(b.eta_s)} of training at "
            f"~{PLANNING_STEPS_PER_S:g} steps/s (2 loaded cores; the run prints its own rate at the end)")
    warnings = []
    if b.span_s < env_config.episode_length_s:
        warnings.append(f"the training range holds {b.span_s:.1f} s of data, less than one episode of "
                        f"--episode_length_s {env_config.episode_length_s:g}: every episode is that whole "
                        f"range ({b.steps_per_episode} steps), starting at the same time")
    if b.passes > MAX_PASSES and not force:
        raise utils.CliError(
            f"this budget replays the {b.span_s:.1f} s of training data {b.passes:,.0f} times "
            f"({b.total_steps:,} steps of {b.episode_s:g} s episodes; more than {MAX_PASSES:g} passes): "
            "give more data or a smaller --num_episodes/--total_timesteps, or --force to run it anyway")
    if b.passes > WARN_PASSES:
        warnings.append(f"{b.passes:,.0f} passes over the same {b.span_s:.1f} s of training data: the agent "
                        "will mostly memorise it")
    return line, warnings


def _duration(s: float) -> str:
    """``"42 s"``, ``"3.5 min"``, ``"2.1 h"``.

    >>> _duration(42), _duration(210), _duration(7560)
    ('42 s', '3.5 min', '2.1 h')
    """
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def range_span_ms(envs: Any) -> float:
    """Length (ms) of the time range of the (first) env of a gymnasium vector env."""
    start, end = envs.get_attr("range_start_ts")[0], envs.get_attr("range_end_ts")[0]
    return float(end - start)


def log_plan(settings: Any, env_cfg: Any, envs: Any, run: dict[str, Any], force: bool) -> Budget:
    """The budget in real units (``train_plan``): logs the plan line and its warnings; refuses absurd ones."""
    budget = plan_budget(settings.num_episodes, settings.total_timesteps, env_cfg, range_span_ms(envs))
    line, warns = budget_messages(budget, env_cfg, force)
    logger.info("split: train %s, validation %s (selects best_model) of %s; test %s of %s (final evaluation only)",
                run["train_range"], run["val_range"], _names(run["train_files"]), run["eval_range"],
                _names(run["eval_files"]))
    logger.info("%s", line)
    for w in warns:
        logger.warning("%s", w)
    return budget


def _names(files: Sequence[Path]) -> str:
    return ", ".join(Path(f).name for f in files)


# --------------------------------------------------------------------------- reward flags


def inventory_penalty_flag(args: argparse.Namespace, env_map: dict[str, str]) -> None:
    """``--inventory_penalty G`` = ``--reward pnl_inventory_penalty --inventory_penalty_gamma G`` (set on ``args``)."""
    if args.inventory_penalty is None:
        return
    dest = {v: k for k, v in env_map.items()}
    reward_dest, gamma_dest = dest["reward"], dest["inventory_penalty_gamma"]
    if hasattr(args, gamma_dest):
        raise utils.CliError("give either --inventory_penalty or --inventory_penalty_gamma, not both")
    if getattr(args, reward_dest, "pnl_inventory_penalty") != "pnl_inventory_penalty":
        raise utils.CliError(f"--inventory_penalty selects --reward pnl_inventory_penalty; it contradicts "
                             f"--reward {getattr(args, reward_dest)}")
    setattr(args, reward_dest, "pnl_inventory_penalty")
    setattr(args, gamma_dest, float(args.inventory_penalty))


def warn_ignored_reward_settings(args: argparse.Namespace, env_map: dict[str, str], env_cfg: Any) -> None:
    """A warning for every reward setting typed that the chosen reward does not read."""
    from reward import ignored_settings

    reward = utils.get_flat(env_cfg, "reward")
    given = [env_map[d] for d in env_map if hasattr(args, d)]
    for name in ignored_settings(reward, given):
        logger.warning("--%s %s is ignored: --reward %s does not use it (--inventory_penalty GAMMA trains "
                       "with the running inventory penalty)", name, utils.get_flat(env_cfg, name), reward)


# --------------------------------------------------------------------------- run records


def make_vector_env(env_config: Any, n_envs: int, kind: str) -> Any:
    """``n_envs`` copies of the market env in a gymnasium vector env."""
    import gymnasium as gym

    fns = [functools.partial(cli.make_env, env_config) for _ in range(n_envs)]
    if kind == "async":
        # "spawn", not "fork": forking a process that has initialised TensorFlow can deadlock.
        return gym.vector.AsyncVectorEnv(fns, context="spawn")
    with warnings.catch_warnings():
        # A range shorter than an episode: ``budget_messages`` says so once, in the run's words.
        warnings.filterwarnings("ignore", message=r"time_range .* less than episode_length_s", category=UserWarning)
        return gym.vector.SyncVectorEnv(fns)


def data_entry(paths: Sequence[Path], time_range: Sequence[float]) -> dict[str, Any]:
    """The ``params.json`` record of a data split: files with sizes and SHA-256, time range."""
    return {"files": [{"path": str(p), "bytes": p.stat().st_size, "sha256": utils.sha256_file(p)}
                      for p in paths],
            "time_range": list(time_range)}


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "pandas", "tensorflow", "keras", "gymnasium", "matplotlib", "orjson",
                 "sortedcontainers", "scipy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info(agent: Any) -> dict[str, Any]:
    """The compute device the agent runs on and what TensorFlow sees."""
    import tensorflow as tf

    return {"agent_device": getattr(agent, "device", "?"),
            "gpus": [g.name for g in tf.config.list_physical_devices("GPU")],
            "cpu_count": os.cpu_count()}


def git_commit() -> str | None:
    """The commit of the code (``None`` outside a git checkout)."""
    head = Path(__file__).resolve().parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None
