"""Hyperparameter and seed sweeps of ``train.py`` on Ray Tune, from one machine to a cluster.

One job: run one ``train.py`` per trial of a search space (and per seed) through Ray Tune, and
summarise the sweep. ``python sweep.py --config sweeps/<name>.yaml`` reads the sweep file
(its keys are documented in docs/sweeps.md and in ``load_spec``), starts a local Ray instance
with the machine's cores (or joins an existing cluster with ``--address``), and runs every
trial as an ordinary ``train.py`` process whose run folder lies under the sweep's folder::

    results/sweeps/<name>_<timestamp>/
        sweep.yaml, sweep.json          the sweep file as given and as resolved
        trials/<trial>/trial.json       the trial's config, flags, status and metrics
        trials/<trial>/train.log        train.py's console output
        trials/<trial>/run_<stamp>/     train.py's run folder (params.json, checkpoints,
                                        models, training_log.csv, evaluation/)
        tune/                           Ray Tune's experiment state (what --resume restores)
        summary.csv, configs.csv        one row per trial / per configuration (seeds pooled)
        sweep_summary.png               objective by hyperparameter, seed spread per configuration
        best.args, best.json            the best configuration as train.py flags (train.py @best.args)

The objective is read from the trial's held-out evaluation (``OBJECTIVES``). Interrupted
(Ctrl-C), the sweep keeps what finished; ``python sweep.py --resume <sweep folder>`` restores
it through Tune (``Tuner.restore``): finished trials are not run again, and a trial that was
running continues from its own ``train.py`` checkpoint (``train.py --resume``). A trial whose
``train.py`` fails is reported (``summary.csv`` status ``error``, its ``train.log``) and the
sweep goes on.

Public names:

- ``OBJECTIVES``: the objectives a sweep can optimise.
- ``SweepSpec`` / ``load_spec``: the sweep file.
- ``trial_flags`` / ``trial_dir_name``: a trial's ``train.py`` flags and folder name.
- ``run_trial``: the Tune trainable (one ``train.py`` process).
- ``run_metrics``: a finished run folder's metrics and objective.
- ``summarise``: ``summary.csv``, ``configs.csv``, the figure and the best-config files.
- ``build_parser`` / ``main``: the CLI (``python sweep.py --help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

import utils

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent

OBJECTIVES: dict[str, str] = {
    "paired_vs_best_baseline": "final evaluation: mean paired PnL difference agent − the baseline with the "
                               "highest mean PnL on the same held-out episodes",
    "agent_pnl_mean": "final evaluation: the agent's mean PnL per held-out episode",
    "eval_pnl_last": "the last periodic held-out evaluation's mean PnL (training_log.csv eval_pnl_mean)",
    "eval_pnl_best": "the best periodic held-out evaluation's mean PnL (the best_model's)",
}
"""Objectives of a sweep (``objective:`` in the sweep file) and where each is read."""

SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
"""Kinds of a search-space entry: ``grid`` (every value, Tune's ``grid_search``); sampled with
``num_samples`` draws: ``choice`` (one of the values), ``uniform`` / ``loguniform`` ([low, high]),
``randint`` ([low, high), integers)."""

CONTROLLED_FLAGS = ("--seed", "--results_dir", "--run_name", "--resume", "--no_progress", "--env")
"""``train.py`` flags the sweep sets itself (or refuses: the sweeps train the book env)."""

SWEEP_DIRS = ("trials", "tune")


class SweepError(utils.CliError):
    """A bad sweep file or flag (one-line error naming the file and key)."""


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep file, validated (``load_spec``)."""

    name: str
    """Sweep name: the folder ``<results_dir>/<name>_<timestamp>``."""
    space: dict[str, dict[str, list[Any]]]
    """``{train.py flag dest: {kind: values}}``; any generated flag of ``EnvConfig``, ``PPOConfig``
    or ``TrainSettings`` (``kind`` one of ``SPACE_KINDS``)."""
    train_args: tuple[str, ...] = ()
    """Flags given to every trial's ``train.py`` (the budget, the data, the fixed settings)."""
    seeds: int = 1
    """Training seeds 0 .. seeds-1 of every configuration (``--seeds`` overrides)."""
    num_samples: int = 1
    """Draws of the sampled entries (each draw is run on every grid point and seed)."""
    objective: str = "paired_vs_best_baseline"
    """What ranks the configurations (``OBJECTIVES``), averaged over the seeds."""
    mode: str = "max"
    """``max`` or ``min`` of the objective."""
    scheduler: dict[str, Any] = dataclasses.field(default_factory=dict)
    """``{}`` (every trial runs its budget) or ``{type: asha, grace_period, reduction_factor,
    max_t}``: ASHA on the periodic held-out evaluation (``eval_pnl_mean``, one Tune iteration per
    evaluation)."""
    resources: dict[str, float] = dataclasses.field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    """Resources of one trial (Ray's ``cpu``/``gpu``); trials run in parallel as far as they fit."""
    max_concurrent_trials: int | None = None
    """Upper bound on trials at the same time (``None``: as many as the resources allow)."""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    """``{synthetic: default|edge, hours, seed}``: the driver generates that market once
    (``synthetic_market.default_dataset``) and gives it to every trial as ``--data_path``;
    ``{}``: ``train_args`` has ``--data_path`` (or train.py's default market)."""
    random_seed: int = 0
    """Seed of the sampled entries (Tune's ``BasicVariantGenerator``)."""


def _fail(source: str, msg: str) -> SweepError:
    return SweepError(f"{source}: {msg}")


def load_spec(path: str | os.PathLike, seeds: int | None = None) -> SweepSpec:
    """Read and validate a sweep file (YAML).

    Keys: ``name``, ``space`` (required); ``train_args`` (a list or one string),
    ``seeds``, ``num_samples``, ``objective``, ``mode``, ``scheduler``, ``resources``,
    ``max_concurrent_trials``, ``data``, ``random_seed`` (``SweepSpec``).

    Args:
        path: the YAML file.
        seeds: ``--seeds`` (replaces the file's ``seeds``).

    Raises:
        SweepError: naming the file and the key that is wrong.
    """
    import yaml

    src = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SweepError(f"sweep file not found: {src}") from exc
    except yaml.YAMLError as exc:
        raise _fail(src, f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise _fail(src, "expected a mapping of keys (name, space, train_args, ...)")
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(src, f"unknown key(s) {unknown}; known: {sorted(known)}")
    for key in ("name", "space"):
        if key not in raw:
            raise _fail(src, f"missing key {key!r}")
    kw = dict(raw)
    kw["name"] = str(raw["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", kw["name"]):
        raise _fail(src, f"name {kw['name']!r}: use letters, digits, _ . - only (it names a folder)")
    kw["space"] = _check_space(raw["space"], src)
    ta = raw.get("train_args", [])
    kw["train_args"] = tuple(shlex.split(ta) if isinstance(ta, str) else (_flag_text(v) for v in ta))
    if seeds is not None:
        kw["seeds"] = seeds
    for key in ("seeds", "num_samples"):
        if key in kw and (not isinstance(kw[key], int) or kw[key] < 1):
            raise _fail(src, f"{key} must be an integer >= 1, got {kw[key]!r}")
    if kw.get("objective", "paired_vs_best_baseline") not in OBJECTIVES:
        raise _fail(src, f"objective {kw['objective']!r} not one of {list(OBJECTIVES)}")
    if kw.get("mode", "max") not in ("max", "min"):
        raise _fail(src, f"mode must be max or min, got {kw['mode']!r}")
    kw["scheduler"] = _check_scheduler(raw.get("scheduler") or {}, src)
    res = raw.get("resources", {"cpu": 1, "gpu": 0})
    if not isinstance(res, dict) or set(res) - {"cpu", "gpu"} or any(
            not isinstance(v, int | float) or v < 0 for v in res.values()):
        raise _fail(src, f"resources must be {{cpu: n, gpu: n}} with n >= 0, got {res!r}")
    kw["resources"] = {"cpu": float(res.get("cpu", 1)), "gpu": float(res.get("gpu", 0))}
    kw["data"] = _check_data(raw.get("data") or {}, src)
    mct = raw.get("max_concurrent_trials")
    if mct is not None and (not isinstance(mct, int) or mct < 1):
        raise _fail(src, f"max_concurrent_trials must be an integer >= 1, got {mct!r}")
    return SweepSpec(**kw)


def _flag_text(v: Any) -> str:
    """A YAML value as a command-line token (``true``/``false``/``none`` as train.py reads them).

    >>> [_flag_text(v) for v in (True, None, 0.001, 3, "x")]
    ['true', 'none', '0.001', '3', 'x']
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return repr(v) if isinstance(v, float) else str(v)


def _check_space(space: Any, src: str) -> dict[str, dict[str, list[Any]]]:
    if not isinstance(space, dict) or not space:
        raise _fail(src, "space must map train.py flag names to {grid|choice|uniform|loguniform|randint: values}")
    out = {}
    for key, entry in space.items():
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in SPACE_KINDS:
            raise _fail(src, f"space.{key}: expected one of {{{'|'.join(SPACE_KINDS)}: [...]}}, got {entry!r}")
        kind, values = next(iter(entry.items()))
        if not isinstance(values, list) or not values:
            raise _fail(src, f"space.{key}.{kind}: expected a non-empty list, got {values!r}")
        if kind in ("uniform", "loguniform", "randint"):
            if len(values) != 2 or not all(isinstance(v, int | float) for v in values) or values[0] >= values[1]:
                raise _fail(src, f"space.{key}.{kind}: expected [low, high] with low < high, got {values!r}")
            if kind == "loguniform" and values[0] <= 0:
                raise _fail(src, f"space.{key}.loguniform: low must be > 0, got {values[0]!r}")
        out[str(key)] = {kind: list(values)}
    return out


def _check_scheduler(sched: Any, src: str) -> dict[str, Any]:
    if not sched:
        return {}
    if not isinstance(sched, dict) or sched.get("type") != "asha":
        raise _fail(src, f"scheduler: only {{type: asha, ...}} is supported, got {sched!r}")
    allowed = {"type", "grace_period", "reduction_factor", "max_t"}
    if set(sched) - allowed:
        raise _fail(src, f"scheduler: unknown key(s) {sorted(set(sched) - allowed)}")
    return dict(sched)


def _check_data(data: Any, src: str) -> dict[str, Any]:
    if not data:
        return {}
    if not isinstance(data, dict) or data.get("synthetic") not in ("default", "edge") or \
            set(data) - {"synthetic", "hours", "seed"}:
        raise _fail(src, f"data: expected {{synthetic: default|edge, hours: h, seed: s}}, got {data!r}")
    return {"synthetic": data["synthetic"], "hours": float(data.get("hours", 2.0)), "seed": int(data.get("seed", 7))}


# --------------------------------------------------------------------------- trials


def trial_flags(config: dict[str, Any], space: dict[str, Any]) -> list[str]:
    """The ``train.py`` flags of one trial's sampled values (``--seed`` last).

    >>> trial_flags({"learning_rate": 0.001, "normalize_reward": False, "seed": 2},
    ...             {"learning_rate": {}, "normalize_reward": {}})
    ['--learning_rate', '0.001', '--normalize_reward', 'false', '--seed', '2']
    """
    out: list[str] = []
    for key in space:
        value = config[key]
        out.append(f"--{key}")
        out.extend(_flag_text(v) for v in (value if isinstance(value, list | tuple) else [value]))
    return [*out, "--seed", str(int(config["seed"]))]


def trial_dir_name(index: int, config: dict[str, Any], space: dict[str, Any]) -> str:
    """A trial's folder name: its index, sampled values and seed (file-name safe, bounded length).

    >>> trial_dir_name(3, {"learning_rate": 0.001, "ent_coef": 0.0, "seed": 1},
    ...                {"learning_rate": {}, "ent_coef": {}})
    't0003_learning_rate=0.001_ent_coef=0_seed=1'
    """
    parts = [f"{k}={_short(config[k])}" for k in space]
    name = "_".join([f"t{index:04d}", *parts, f"seed={int(config['seed'])}"])
    name = re.sub(r"[^A-Za-z0-9_.=+\-]", "-", name)
    return name if len(name) <= 120 else f"{name[:100]}-{index:04d}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "-".join(_short(x) for x in v)
    return _flag_text(v)


def _trial_index(trial_id: str) -> int:
    """The running number Tune gives a trial (``<experiment>_<00007>`` -> 7)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _run_folder(trial_dir: Path) -> Path | None:
    """The ``train.py`` run folder in a trial folder (the one with a ``params.json``), or ``None``."""
    runs = sorted(p for p in trial_dir.glob("run_*") if (p / "params.json").is_file())
    return runs[-1] if runs else None


def _set_parent_death_signal() -> None:
    """In the ``train.py`` child (Linux): get SIGINT when the trial's thread dies (its actor is killed).

    SIGINT is ``train.py``'s Ctrl-C: it stops after the current update and saves a checkpoint,
    so a trial stopped by Tune (scheduler, Ctrl-C of the sweep) can be resumed.
    """
    # Ray's worker thread blocks SIGINT and the mask is inherited: unblock it, or train.py never
    # sees its Ctrl-C (measured: SigBlk 0x2 in the child's /proc status).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: the child outlives a killed actor until its end
        pass


def _wait_for_previous(trial_dir: Path) -> None:
    """Wait (up to 120 s) for a ``train.py`` of an earlier attempt still saving its checkpoint."""
    pid_file = trial_dir / "train.pid"
    if not pid_file.is_file():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.is_file() and b"train.py" not in cmdline.read_bytes():
            return  # the pid was reused by another program
        time.sleep(0.5)


def _new_eval_rows(log_file: Path, seen: int) -> tuple[list[dict[str, float]], int]:
    """Periodic evaluations of ``training_log.csv`` after the first ``seen``."""
    if not log_file.is_file():
        return [], seen
    try:
        log = pd.read_csv(log_file)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError):
        return [], seen
    ev = log[np.isfinite(log["eval_pnl_mean"].astype(float))]
    rows = [{"eval_pnl_mean": float(r.eval_pnl_mean), "timesteps": int(r.timesteps), "update": int(r.update)}
            for r in ev.iloc[seen:].itertuples()]
    return rows, len(ev)


def run_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """The Tune trainable: one ``train.py`` run in ``<sweep>/trials/<trial>/``.

    Reports (``tune.report``) every periodic held-out evaluation as it appears in the run's
    ``training_log.csv`` (what ASHA reads), then the final metrics (``run_metrics``, with
    ``final=True``). A trial folder with a checkpoint from an earlier attempt (an interrupted
    sweep, a retried error) continues with ``train.py --resume``; a finished one is only read.

    Args:
        config: the trial's sampled values and ``seed``.
        setup: ``sweep_dir``, ``space``, ``train_args``, ``data_files``, ``objective``, ``cpus``.

    Raises:
        RuntimeError: ``train.py`` failed (its exit code and the last lines of ``train.log``),
            or a data file is not visible on this node.
    """
    from ray import tune

    ctx = tune.get_context()
    sweep_dir = Path(setup["sweep_dir"])
    trial_dir = sweep_dir / "trials" / trial_dir_name(_trial_index(ctx.get_trial_id()), config, setup["space"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    for f in setup["data_files"]:
        if not Path(f).is_file():
            raise RuntimeError(f"data file {f} not found on node {socket.gethostname()}: every node must "
                               f"see the recording at the same path (a shared filesystem; docs/sweeps.md)")
    flags = trial_flags(config, setup["space"])
    record = {"trial_id": ctx.get_trial_id(), "config": config, "flags": flags, "node": socket.gethostname(),
              "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _wait_for_previous(trial_dir)
    run = _run_folder(trial_dir)
    if run is not None and (run / "evaluation" / "evaluation_summary.csv").is_file() and \
            (run / "models" / "final_model").is_dir():
        metrics = run_metrics(run, setup["objective"])
        _finish_record(trial_dir, record, "finished", metrics)
        tune.report(_final_report(metrics))
        return
    args = [sys.executable, str(REPO / "train.py")]
    if run is not None and (run / "checkpoints" / "latest.json").is_file():
        args += ["--resume", str(run), "--no_progress"]
        record["resumed_from"] = str(run)
    else:
        if run is not None:  # started but never checkpointed: nothing to resume, start again
            shutil.move(str(run), str(trial_dir / f".abandoned_{run.name}"))
        args += [*setup["train_args"], *flags, "--results_dir", str(trial_dir), "--run_name", "run",
                 "--no_progress"]
    utils.atomic_write_json(trial_dir / "trial.json", record)
    rc = _run_train(args, trial_dir, setup, tune)
    run = _run_folder(trial_dir)
    if rc != 0 or run is None:
        tail = (trial_dir / "train.log").read_text(errors="replace").splitlines()[-15:]
        msg = f"train.py exited with code {rc}; {trial_dir / 'train.log'} ends with:\n" + "\n".join(tail)
        _finish_record(trial_dir, record, "error", {"error": msg})
        raise RuntimeError(msg)
    metrics = run_metrics(run, setup["objective"])
    _finish_record(trial_dir, record, "finished", metrics)
    tune.report(_final_report(metrics))


def _final_report(metrics: dict[str, Any]) -> dict[str, Any]:
    """The last ``tune.report``: the metrics, ``final``, and ``eval_pnl_mean`` (what ASHA reads) = the last periodic one."""
    return {**metrics, "final": True, "eval_pnl_mean": metrics["eval_pnl_last"]}


def _run_train(args: list[str], trial_dir: Path, setup: dict[str, Any], tune: Any) -> int:
    """Run ``train.py``; report each new periodic evaluation; SIGINT it if this trial is stopped."""
    threads = str(max(1, int(setup.get("cpus", 1))))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_NUM_INTRAOP_THREADS": threads,
           "TF_NUM_INTEROP_THREADS": threads, "OMP_NUM_THREADS": threads}
    with open(trial_dir / "train.log", "ab") as log:
        log.write(f"$ {shlex.join(args)}\n".encode())
        log.flush()
        # Its own session: Ray kills a stopped actor's process group (Ctrl-C of the sweep), which
        # would SIGKILL train.py before it saves a checkpoint; the parent-death SIGINT (and the
        # ``finally`` below) stop it the way Ctrl-C stops train.py.
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_set_parent_death_signal, start_new_session=True)
    (trial_dir / "train.pid").write_text(f"{proc.pid}\n")
    seen = 0
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            run = _run_folder(trial_dir)
            if run is not None:
                rows, seen = _new_eval_rows(run / "training_log.csv", seen)
                for row in rows:
                    tune.report(row)
    finally:
        # Stopped by Tune (scheduler, Ctrl-C). On Linux train.py gets one SIGINT when this thread
        # ends (PR_SET_PDEATHSIG), saves a checkpoint and exits on its own (a next attempt waits
        # for it, ``_wait_for_previous``); a second SIGINT from here would abort it at once.
        if proc.poll() is None and not sys.platform.startswith("linux"):
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return proc.returncode


def _finish_record(trial_dir: Path, record: dict[str, Any], status: str, metrics: dict[str, Any]) -> None:
    record.update(status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), metrics=metrics)
    utils.atomic_write_json(trial_dir / "trial.json", record)


def run_metrics(run_dir: Path, objective: str) -> dict[str, Any]:
    """A run folder's metrics: the final evaluation's and the periodic ones, and ``objective``.

    Keys: ``agent_pnl_mean`` / ``agent_pnl_ci_lo`` / ``agent_pnl_ci_hi`` and
    ``best_baseline`` / ``paired_vs_best_baseline`` / ``paired_ci_lo`` / ``paired_ci_hi``
    (from ``evaluation/``, NaN when the run has no final evaluation), ``eval_pnl_last`` /
    ``eval_pnl_best`` (``training_log.csv``), ``timesteps``, ``wall_s``, ``run_dir`` and
    ``objective`` (the value of the key named by ``objective``).
    """
    out: dict[str, Any] = {k: math.nan for k in (
        "agent_pnl_mean", "agent_pnl_ci_lo", "agent_pnl_ci_hi", "paired_vs_best_baseline", "paired_ci_lo",
        "paired_ci_hi", "eval_pnl_last", "eval_pnl_best", "timesteps", "wall_s")}
    out["best_baseline"] = ""
    out["run_dir"] = str(run_dir)
    log_file = run_dir / "training_log.csv"
    if log_file.is_file():
        log = pd.read_csv(log_file)
        ev = log["eval_pnl_mean"].astype(float)
        ev = ev[np.isfinite(ev)]
        if len(ev):
            out["eval_pnl_last"], out["eval_pnl_best"] = float(ev.iloc[-1]), float(ev.max())
        if len(log):
            out["timesteps"], out["wall_s"] = float(log["timesteps"].iloc[-1]), float(log["wall_s"].iloc[-1])
    ev_dir = run_dir / "evaluation"
    if (ev_dir / "evaluation_summary.csv").is_file() and (ev_dir / "paired_differences.csv").is_file():
        summary = pd.read_csv(ev_dir / "evaluation_summary.csv").set_index("policy")
        paired = pd.read_csv(ev_dir / "paired_differences.csv").set_index("baseline")
        agent = summary.loc["agent"]
        out.update(agent_pnl_mean=float(agent["pnl_mean"]), agent_pnl_ci_lo=float(agent["pnl_ci95_low"]),
                   agent_pnl_ci_hi=float(agent["pnl_ci95_high"]))
        # initial_agent (the run's untrained agent, issue 16) is a reference row, not a baseline
        baselines = summary.drop(index=[p for p in ("agent", "initial_agent") if p in summary.index])
        if len(baselines):
            best = str(baselines["pnl_mean"].astype(float).idxmax())
            d = paired.loc[best]
            out.update(best_baseline=best, paired_vs_best_baseline=float(d["diff_mean"]),
                       paired_ci_lo=float(d["diff_ci_lo"]), paired_ci_hi=float(d["diff_ci_hi"]))
    out["objective"] = out[objective]
    return out


# --------------------------------------------------------------------------- the driver


def _resolve(spec: SweepSpec, spec_file: str) -> tuple[list[str], list[str]]:
    """``(train_args, data_files)``: the fixed flags with absolute data paths, checked by ``train.py``'s parser.

    The data is resolved here, once, by the driver: a ``data:`` market is generated, and every
    ``--data_path`` / ``--eval_data_path`` becomes an absolute path that the trials (any node,
    any working folder) read as is.
    """
    import cli
    import train

    args = list(spec.train_args)
    for flag in CONTROLLED_FLAGS:
        if any(a == flag or a.startswith(flag + "=") for a in args):
            raise _fail(spec_file, f"train_args: {flag} is set by sweep.py (per trial), remove it")
    parser, maps = train.build_parser()
    dests = {d for m in ("env", "ppo", "train") for d in maps[m]}
    bad = sorted(set(spec.space) - dests)
    if bad:
        raise _fail(spec_file, f"space: {bad} are not train.py flags of EnvConfig/PPOConfig/TrainSettings "
                               f"(python train.py --help lists them)")
    if spec.data:
        if "--data_path" in args:
            raise _fail(spec_file, "give the data either as data: or as --data_path in train_args, not both")
        import synthetic_market as sm

        config = sm.EDGE_MARKET if spec.data["synthetic"] == "edge" else None
        path = sm.default_dataset(REPO / "data", hours=spec.data["hours"], seed=spec.data["seed"], config=config)
        args = ["--data_path", str(Path(path).resolve()), *args]
    try:
        ns = parser.parse_args([*args, *_probe_flags(spec)])
    except SystemExit as exc:
        raise _fail(spec_file, f"train_args/space rejected by train.py's parser (message above): {args}") from exc
    files: list[str] = []
    for flag in ("data_path", "eval_data_path"):
        paths = getattr(ns, flag)
        if paths:
            resolved = [str(p.resolve()) for p in cli.resolve_data_paths(paths)]
            files += resolved
            i = args.index(f"--{flag}")
            args[i + 1:i + 1 + len(paths)] = resolved
    if not spec.data and not ns.data_path:
        from synthetic_market import default_dataset

        path = str(Path(default_dataset(REPO / "data")).resolve())
        args, files = ["--data_path", path, *args], [*files, path]
    return args, files


def _probe_flags(spec: SweepSpec) -> list[str]:
    """Flags of the space's first values (checks each name and value type with ``train.py``'s parser)."""
    config: dict[str, Any] = {"seed": 0}
    for key, entry in spec.space.items():
        kind, values = next(iter(entry.items()))
        config[key] = values[0] if kind in ("grid", "choice") else (
            int(values[0]) if kind == "randint" else float(values[0]))
    return trial_flags(config, spec.space)


def _param_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for key, entry in spec.space.items():
        kind, values = next(iter(entry.items()))
        if kind == "grid":
            out[key] = tune.grid_search(values)
        elif kind == "choice":
            out[key] = tune.choice(values)
        elif kind == "uniform":
            out[key] = tune.uniform(*values)
        elif kind == "loguniform":
            out[key] = tune.loguniform(*values)
        else:
            out[key] = tune.randint(*values)
    out["seed"] = tune.grid_search(list(range(spec.seeds)))
    return out


def _tune_config(spec: SweepSpec) -> Any:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    scheduler = None
    if spec.scheduler:
        from ray.tune.schedulers import ASHAScheduler

        kw = {k: v for k, v in spec.scheduler.items() if k != "type"}
        scheduler = ASHAScheduler(metric="eval_pnl_mean", mode=spec.mode, time_attr="training_iteration", **kw)
    # constant_grid_search: each draw of the sampled entries is the same on every grid point and
    # every seed, so the seeds of one configuration are repeats of that configuration.
    search = BasicVariantGenerator(constant_grid_search=True, random_state=spec.random_seed,
                                   max_concurrent=spec.max_concurrent_trials or 0)
    return tune.TuneConfig(num_samples=spec.num_samples, search_alg=search, scheduler=scheduler,
                           trial_dirname_creator=lambda t: t.trial_id, reuse_actors=False)


def _trainable(setup: dict[str, Any], spec: SweepSpec) -> Any:
    from ray import tune

    import sweep as module  # by reference: workers import this file (a cluster gets it with the job)

    res = {"cpu": spec.resources["cpu"], "gpu": spec.resources["gpu"]}
    return tune.with_resources(tune.with_parameters(module.run_trial, setup=setup), res)


def _start_ray(args: argparse.Namespace) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A local instance must not SIGKILL a stopped trial's train.py with its actor (Ray's default):
    # train.py gets SIGINT instead (``_set_parent_death_signal``) and saves a checkpoint.
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit", "0")
    import ray

    if args.address:
        # The same trial code on every node: Ray ships this checkout with the job (runtime_env
        # working_dir, .gitignore'd files left out); data and sweep folder are on a shared path.
        excludes = ["results/", "data/", "evaluation_results/", ".git/", "build/", "docs/img/"]
        ray.init(address=args.address, runtime_env={"working_dir": str(REPO), "excludes": excludes},
                 log_to_driver=False)
    else:
        # "local": always a new instance (never an existing `ray start` cluster found in /tmp/ray).
        ray.init(address="local", num_cpus=args.num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
    logger.info("Ray: %s", ray.cluster_resources())


def _new_sweep(args: argparse.Namespace) -> tuple[SweepSpec, Path, dict[str, Any]]:
    spec = load_spec(args.config, args.seeds)
    train_args, data_files = _resolve(spec, args.config)
    sweep_dir = Path(args.results_dir).resolve() / f"{spec.name}_{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir.mkdir(parents=True, exist_ok=False)
    shutil.copyfile(args.config, sweep_dir / "sweep.yaml")
    record = {"spec": dataclasses.asdict(spec), "train_args": train_args, "data_files": data_files,
              "sweep_dir": str(sweep_dir), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": [sys.executable, *sys.argv], "address": args.address, "runs": []}
    return spec, sweep_dir, record


def _resumed_sweep(args: argparse.Namespace) -> tuple[SweepSpec, Path, dict[str, Any]]:
    sweep_dir = Path(args.resume).resolve()
    rec_file = sweep_dir / "sweep.json"
    if not rec_file.is_file() or not (sweep_dir / "tune").is_dir():
        raise SweepError(f"--resume {sweep_dir}: no sweep.json and tune/ there (not a sweep folder)")
    if args.config or args.seeds:
        raise SweepError("--resume uses the sweep's saved sweep.yaml; do not give --config or --seeds")
    record = orjson.loads(rec_file.read_bytes())
    spec = SweepSpec(**{**record["spec"], "train_args": tuple(record["spec"]["train_args"])})
    for f in record["data_files"]:
        if not Path(f).is_file():
            raise SweepError(f"--resume: data file of the sweep not found: {f}")
    return spec, sweep_dir, record


def _fit(spec: SweepSpec, sweep_dir: Path, record: dict[str, Any], args: argparse.Namespace) -> Any:
    from ray import tune

    setup = {"sweep_dir": str(sweep_dir), "space": spec.space, "train_args": record["train_args"],
             "data_files": record["data_files"], "objective": spec.objective, "cpus": spec.resources["cpu"]}
    trainable = _trainable(setup, spec)
    if args.resume:
        tuner = tune.Tuner.restore(str(sweep_dir / "tune"), trainable, resume_unfinished=True,
                                   resume_errored=args.retry_errored)
    else:
        run_config = tune.RunConfig(
            name="tune", storage_path=str(sweep_dir), verbose=0 if args.quiet else 1,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        )
        tuner = tune.Tuner(trainable, param_space=_param_space(spec), tune_config=_tune_config(spec),
                           run_config=run_config)
    return tuner.fit()


def _tune_trials(sweep_dir: Path, grid: Any) -> list[dict[str, Any]]:
    """Tune's view of each trial: id, config, error, whether it reported its final metrics."""
    out = []
    for r in grid:
        trial_id = Path(r.path).name
        out.append({"trial_id": trial_id, "config": dict(r.config or {}),
                    "error": None if r.error is None else str(r.error).strip().splitlines()[-1][:300],
                    "final": bool((r.metrics or {}).get("final"))})
    return out


def summarise(sweep_dir: Path, spec: SweepSpec, train_args: Sequence[str],
              tune_trials: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``summary.csv``, ``configs.csv``, ``sweep_summary.png``, ``best.args``, ``best.json``.

    Reads every ``trials/<trial>/trial.json`` and run folder (and Tune's view of each trial,
    when given, for the trials that could not write their record: stopped or killed).

    Returns:
        ``{"trials": n, "finished": n, "errors": [...], "best": {...} or None}``.
    """
    params = list(spec.space)
    rows = []
    tune_by_id = {t["trial_id"]: t for t in tune_trials or []}
    for tdir in sorted(p for p in (sweep_dir / "trials").iterdir() if p.is_dir()) \
            if (sweep_dir / "trials").is_dir() else []:
        rec_file = tdir / "trial.json"
        if not rec_file.is_file():
            continue
        rec = orjson.loads(rec_file.read_bytes())
        status = rec["status"]
        run = _run_folder(tdir)
        metrics = rec.get("metrics") or (run_metrics(run, spec.objective) if run else {})
        tt = tune_by_id.get(rec["trial_id"], {})
        if status == "running":  # the trial did not finish its record: stopped by ASHA or interrupted
            status = "error" if tt.get("error") else ("stopped" if spec.scheduler and tt else "unfinished")
        row = {"trial": tdir.name, "trial_id": rec["trial_id"], "status": status, "seed": rec["config"]["seed"],
               **{p: _cell(rec["config"][p]) for p in params},
               **{k: v for k, v in metrics.items() if k != "error"},
               "error": (metrics.get("error") or tt.get("error") or "").strip().splitlines()[0][:200]
               if (metrics.get("error") or tt.get("error")) else ""}
        rows.append(row)
    cols = ["trial", "trial_id", "status", "seed", *params, "objective", "agent_pnl_mean", "agent_pnl_ci_lo",
            "agent_pnl_ci_hi", "best_baseline", "paired_vs_best_baseline", "paired_ci_lo", "paired_ci_hi",
            "eval_pnl_last", "eval_pnl_best", "timesteps", "wall_s", "run_dir", "error"]
    df = pd.DataFrame(rows, columns=cols)
    utils.atomic_write_text(sweep_dir / "summary.csv", df.to_csv(index=False))
    configs = _configs_table(df, params, spec.mode)
    utils.atomic_write_text(sweep_dir / "configs.csv", configs.to_csv(index=False))
    best = _write_best(sweep_dir, spec, configs, df, params, train_args)
    if len(df):
        import plots

        plots.plot_sweep(df, configs, params, sweep_dir / "sweep_summary.png", objective=spec.objective,
                         best=None if best is None else best["label"])
    errors = [f"{r.trial}: {r.error}" for r in df.itertuples() if r.status == "error"]
    return {"trials": len(df), "finished": int((df["status"] == "finished").sum()), "errors": errors, "best": best,
            "table": df}


def _cell(v: Any) -> Any:
    return " ".join(_flag_text(x) for x in v) if isinstance(v, list | tuple) else v


def _configs_table(df: pd.DataFrame, params: list[str], mode: str) -> pd.DataFrame:
    """One row per configuration (seeds pooled): mean, std, min, max of the objective over finished seeds."""
    cols = [*params, "label", "n_seeds", "n_finished", "objective_mean", "objective_std", "objective_min",
            "objective_max", "seeds", "objective_by_seed"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for key, g in df.groupby(params, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = g[(g["status"] == "finished") & np.isfinite(g["objective"].astype(float))].sort_values("seed")
        obj = ok["objective"].astype(float).to_numpy()
        out.append({**dict(zip(params, key, strict=True)),
                    "label": ", ".join(f"{p}={_short(v)}" for p, v in zip(params, key, strict=True)),
                    "n_seeds": len(g), "n_finished": len(ok),
                    "objective_mean": float(obj.mean()) if obj.size else math.nan,
                    "objective_std": float(obj.std(ddof=1)) if obj.size > 1 else math.nan,
                    "objective_min": float(obj.min()) if obj.size else math.nan,
                    "objective_max": float(obj.max()) if obj.size else math.nan,
                    "seeds": " ".join(str(int(s)) for s in ok["seed"]),
                    "objective_by_seed": " ".join(f"{v:.6g}" for v in obj)})
    table = pd.DataFrame(out, columns=cols)
    return table.sort_values("objective_mean", ascending=(mode == "min"), na_position="last", kind="stable")


def _write_best(sweep_dir: Path, spec: SweepSpec, configs: pd.DataFrame, df: pd.DataFrame,
                params: list[str], train_args: Sequence[str]) -> dict[str, Any] | None:
    """``best.args`` (train.py flags, one per line: ``python train.py @best.args``) and ``best.json``."""
    ranked = configs[np.isfinite(configs["objective_mean"].astype(float))] if len(configs) else configs
    if ranked.empty:
        for f in ("best.args", "best.json"):
            (sweep_dir / f).unlink(missing_ok=True)
        return None
    top = ranked.iloc[0]
    first = df[(df["status"] == "finished")]
    for p in params:
        first = first[first[p].astype(str) == str(top[p])]
    config = orjson.loads((sweep_dir / "trials" / first.iloc[0]["trial"] / "trial.json").read_bytes())["config"]
    flags = trial_flags(config, spec.space)[:-2]  # without --seed: the user picks the seed
    tokens = [*train_args, *flags]
    utils.atomic_write_text(sweep_dir / "best.args", "".join(f"{t}\n" for t in tokens))
    best = {"label": str(top["label"]), "config": {p: config[p] for p in params}, "flags": tokens,
            "objective": spec.objective, "mode": spec.mode, "objective_mean": float(top["objective_mean"]),
            "objective_std": float(top["objective_std"]), "n_finished": int(top["n_finished"]),
            "objective_by_seed": str(top["objective_by_seed"]),
            "command": f"python train.py @{sweep_dir / 'best.args'} --seed 0"}
    utils.atomic_write_json(sweep_dir / "best.json", best)
    return best


def _report(summary: dict[str, Any], sweep_dir: Path, spec: SweepSpec) -> None:
    table = summary["table"]
    if len(table):
        show = ["trial", "status", "objective", "agent_pnl_mean", "best_baseline", "paired_vs_best_baseline"]
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            print(table[show].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"objective: {spec.objective} ({OBJECTIVES[spec.objective]}), {spec.mode}")
    best = summary["best"]
    if best:
        print(f"best configuration: {best['label']}: mean {best['objective_mean']:.4g} over "
              f"{best['n_finished']} seed(s) ({best['objective_by_seed']}); flags in {sweep_dir / 'best.args'}")
    for e in summary["errors"]:
        print(f"sweep.py: trial failed: {e}", file=sys.stderr)
    print(f"sweep: {summary['finished']} of {summary['trials']} trials finished; summary in {sweep_dir}")


def build_parser() -> argparse.ArgumentParser:
    """The ``sweep.py`` flags."""
    p = utils.OneLineErrorParser(
        prog="sweep.py", description="Sweep train.py over a search space and seeds on Ray Tune (docs/sweeps.md).")
    p.add_argument("--config", default=None, help="the sweep file (YAML; e.g. sweeps/edge_lr_ent.yaml)")
    p.add_argument("--seeds", type=int, default=None, help="training seeds 0..N-1 per configuration "
                                                           "(default: the file's seeds, else 1)")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster (e.g. ray://head:10001 or head:6379); default: a local Ray "
                        "instance with this machine's cores")
    p.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--results_dir", default="results/sweeps", help="parent folder of the sweep folders")
    p.add_argument("--resume", default=None, metavar="SWEEP_DIR",
                   help="continue an interrupted sweep (Tune's restore; finished trials are kept)")
    p.add_argument("--retry_errored", action="store_true", help="with --resume: run failed trials again")
    p.add_argument("--summarise", default=None, metavar="SWEEP_DIR",
                   help="only (re)write the summary, figure and best-config files of a sweep folder")
    p.add_argument("--quiet", action="store_true", help="no Tune status table")
    p.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 all trials finished, 1 some failed, 130 interrupted)."""
    import cli

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.summarise:
            spec, sweep_dir, record = _resumed_sweep(argparse.Namespace(resume=args.summarise, config=None, seeds=None))
            _report(summarise(sweep_dir, spec, record["train_args"]), sweep_dir, spec)
            return 0
        if args.seeds is not None and args.seeds < 1:
            raise SweepError(f"--seeds must be >= 1, got {args.seeds}")
        if not args.resume and not args.config:
            raise SweepError("give --config SWEEP_FILE (or --resume SWEEP_DIR)")
        spec, sweep_dir, record = _resumed_sweep(args) if args.resume else _new_sweep(args)
        record["runs"].append({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": [sys.executable, *sys.argv],
                               "load_average": list(os.getloadavg())})
        utils.atomic_write_json(sweep_dir / "sweep.json", record)
        n = spec.seeds * spec.num_samples * math.prod(
            len(v["grid"]) for v in spec.space.values() if "grid" in v)
        logger.info("sweep %s: %d trials (%s), objective %s; folder %s", spec.name, n,
                    " x ".join(f"{k}[{next(iter(v))}]" for k, v in spec.space.items()), spec.objective, sweep_dir)
        t0 = time.perf_counter()
        _start_ray(args)
        grid = _fit(spec, sweep_dir, record, args)
        tune_trials = _tune_trials(sweep_dir, grid)
        summary = summarise(sweep_dir, spec, record["train_args"], tune_trials)
        record["runs"][-1].update(wall_s=time.perf_counter() - t0, load_average_end=list(os.getloadavg()))
        utils.atomic_write_json(sweep_dir / "sweep.json", record)
        _report(summary, sweep_dir, spec)
        # Pending or running at Ctrl-C: not terminated/errored for Tune, never started (fewer trial
        # folders than trials), or started without a final record (a restored trial that Tune
        # counts as terminated after the second Ctrl-C; measured on the edge sweep).
        statuses = set(summary["table"]["status"])
        if grid.num_terminated + grid.num_errors < len(grid) or "unfinished" in statuses or \
                (summary["trials"] < n and not spec.scheduler):
            print(f"sweep.py: interrupted; {summary['finished']} of {n} trials finished. Resume with: "
                  f"python sweep.py --resume {sweep_dir}", file=sys.stderr)
            return 130
        return 1 if summary["errors"] else 0

    return cli.run_cli("sweep.py", body, argv, interrupted="interrupted")


if __name__ == "__main__":
    sys.exit(main())
