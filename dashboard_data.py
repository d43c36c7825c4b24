"""Read the run and evaluation folders for the dashboard, as they are, and never write to them.

One job: find the training runs under a results folder (``results/<run>/``: ``params.json``,
``training_log.csv``, ``models/``, ``evaluation/``) and the evaluations (each run's
``evaluation/`` and every folder of ``evaluation_results/``), tell what state each is in
(training, finished, stopped, being written, corrupt) and load their files into pandas,
with one clear message for anything that cannot be read. Files are re-read only when their
size or modification time changed, so a page refreshing every few seconds while a run
trains reads only what moved. Nothing here opens a file for writing.

Public names:

- ``RunInfo`` / ``scan_runs`` / ``load_run``: the runs and their state, log and config.
- ``EvalInfo`` / ``scan_evaluations`` / ``load_evaluation``: the evaluations and their tables.
- ``replay_index`` / ``replay_episode``: an evaluation's ``replay.parquet`` (``replay_record``), cached.
- ``markout_horizons``: an evaluation's markout horizons and their summary columns.
- ``flatten_config``: a run's ``params.json`` as ``(section, key, value)`` rows.
- ``FolderError``: a file that exists but cannot be read (names the file and why).
- ``ACTIVE_S``: how recent a log write must be for a run without a final model to count as training.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ACTIVE_S = 600.0
"""A run without ``models/final_model`` whose files changed less than this many seconds ago is "training"."""

STATUS_TRAINING = "training"
STATUS_FINISHED = "finished"
STATUS_STOPPED = "stopped"
STATUS_WRITING = "being written"
STATUS_CORRUPT = "corrupt"


class FolderError(ValueError):
    """A file of a run or evaluation folder that exists but cannot be read."""


# --------------------------------------------------------------------------- cached reads

_CACHE: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _cached(kind: str, path: Path, reader: Any) -> Any:
    """``reader(path)``, re-run only when ``path``'s mtime or size changed; errors become ``FolderError``."""
    stamp = _stamp(path)
    if stamp is None:
        raise FileNotFoundError(path)
    key = (kind, str(path))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        if isinstance(hit[1], FolderError):
            raise hit[1]
        return hit[1]
    try:
        value = reader(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        text = str(exc) if str(exc).startswith(str(path)) else f"{path.name}: {type(exc).__name__}: {exc}"
        value = FolderError(" ".join(text.split())[:400])
    if len(_CACHE) > 512:
        _CACHE.clear()
    _CACHE[key] = (stamp, value)
    if isinstance(value, FolderError):
        raise value
    return value


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object file (cached by mtime).

    Raises:
        FileNotFoundError: no such file.
        FolderError: not JSON, or not an object.
    """
    return _cached("json", Path(path), _read_json)


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV file as a DataFrame (cached by mtime; the caller must not modify it).

    Raises:
        FileNotFoundError: no such file.
        FolderError: not a readable CSV.
    """
    return _cached("csv", Path(path), _read_csv)


# --------------------------------------------------------------------------- runs


@dataclass
class RunInfo:
    """One run folder and what state it is in."""

    name: str
    path: Path
    status: str
    message: str = ""
    """What is wrong or going on, in a sentence (empty when finished and readable)."""
    params: dict[str, Any] | None = None
    log: pd.DataFrame | None = None
    updated: float = 0.0
    """Newest modification time (epoch s) of the run's top-level files."""
    evaluation: Path | None = None
    """The run's ``evaluation/`` folder when it has a summary."""

    @property
    def timesteps(self) -> int | None:
        """The last logged timestep, ``None`` without a log."""
        if self.log is None or self.log.empty or "timesteps" not in self.log:
            return None
        return int(self.log["timesteps"].iloc[-1])

    @property
    def budget(self) -> int | None:
        """The planned total timesteps from ``params.json``."""
        if not self.params:
            return None
        v = self.params.get("total_timesteps") or (self.params.get("train_settings") or {}).get("total_timesteps")
        return int(v) if isinstance(v, int | float) else None


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and not p.name.startswith(".") and any(
        (p / f).exists() for f in ("params.json", "training_log.csv", "models", "checkpoints", "tensorboard"))


def _newest(path: Path) -> float:
    stamps = [path.stat().st_mtime]
    for child in path.iterdir():
        try:
            stamps.append(child.stat().st_mtime)
        except OSError:
            continue
    return max(stamps)


def load_run(path: str | os.PathLike, now: float | None = None) -> RunInfo:
    """A run folder's state, ``params.json`` and ``training_log.csv`` (what can be read of them).

    State: ``corrupt`` when ``params.json`` or ``training_log.csv`` exists but cannot be read;
    ``being written`` before ``params.json`` exists; ``finished`` with ``models/final_model``;
    else ``training`` when a file changed in the last ``ACTIVE_S`` seconds, ``stopped``
    otherwise (interrupted or crashed: ``train.py --resume`` continues it).
    """
    path = Path(path)
    now = time.time() if now is None else now
    info = RunInfo(path.name, path, STATUS_FINISHED)
    try:
        info.updated = _newest(path)
    except OSError as exc:
        info.status, info.message = STATUS_CORRUPT, f"cannot list the folder ({exc})"
        return info
    problems = []
    try:
        info.params = read_json(path / "params.json")
    except FileNotFoundError:
        problems.append((STATUS_WRITING, "no params.json yet: the run is starting or was stopped before it wrote one"))
    except FolderError as exc:
        problems.append((STATUS_CORRUPT, f"{exc}"))
    try:
        info.log = read_csv(path / "training_log.csv")
        if "timesteps" not in info.log:
            problems.append((STATUS_CORRUPT, "training_log.csv: no 'timesteps' column"))
            info.log = None
    except FileNotFoundError:
        pass
    except FolderError as exc:
        problems.append((STATUS_CORRUPT, f"{exc}"))
    eval_dir = path / "evaluation"
    if (eval_dir / "evaluation_summary.csv").is_file():
        info.evaluation = eval_dir
    if problems:
        corrupt = [m for s, m in problems if s == STATUS_CORRUPT]
        info.status = STATUS_CORRUPT if corrupt else STATUS_WRITING
        info.message = "; ".join(m for _, m in problems)
        return info
    if (path / "models" / "final_model").is_dir():
        info.status = STATUS_FINISHED
        if info.log is None:
            info.message = "no training_log.csv"
        elif eval_dir.is_dir() and not (eval_dir / "evaluation_meta.json").is_file():
            info.message = "trained; the final evaluation is running (or was interrupted)"
    elif now - info.updated < ACTIVE_S:
        info.status = STATUS_TRAINING
        info.message = "training: no final model yet; the curves refresh while it runs"
    else:
        info.status = STATUS_STOPPED
        info.message = (f"no final model and nothing written for {(now - info.updated) / 60:.0f} min: "
                        f"interrupted or crashed (python train.py --resume {path} continues it)")
    return info


def scan_runs(results_dir: str | os.PathLike) -> list[RunInfo]:
    """Every run folder directly under ``results_dir``, newest first (``[]`` if the folder is missing)."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    now = time.time()
    runs = [load_run(p, now) for p in root.iterdir() if _is_run_dir(p)]
    return sorted(runs, key=lambda r: (-r.updated, r.name))


def flatten_config(params: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` rows of a ``params.json``: nested configs with dotted keys.

    >>> flatten_config({"seed": 3, "env_config": {"exchange": {"maker_fee_bps": 2.0}}})
    [('run', 'seed', '3'), ('env_config', 'exchange.maker_fee_bps', '2.0')]
    """
    rows: list[tuple[str, str, str]] = []

    def walk(section: str, prefix: str, obj: Any) -> None:
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(section, f"{prefix}.{k}" if prefix else str(k), v)
        else:
            rows.append((section, prefix, _fmt(obj)))

    for key, value in params.items():
        if isinstance(value, dict):
            walk(key, "", value)
        else:
            rows.append(("run", key, _fmt(value)))
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        if v and all(isinstance(x, dict) for x in v):
            return "; ".join(json.dumps(x, sort_keys=True) for x in v)
        return " ".join(str(x) for x in v)
    return "" if v is None else str(v)


# --------------------------------------------------------------------------- evaluations


@dataclass
class EvalInfo:
    """One evaluation folder and what could be read of it."""

    key: str
    """Stable identifier used in the page's URLs: ``run:<run name>`` or ``eval:<folder name>``."""
    label: str
    path: Path
    status: str
    message: str = ""
    summary: pd.DataFrame | None = None
    episodes: pd.DataFrame | None = None
    paired: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0

    @property
    def replay_path(self) -> Path:
        """Where its replay file is (``replay_record.REPLAY_FILE``; it may not exist)."""
        import replay_record

        return self.path / replay_record.REPLAY_FILE

    @property
    def has_replay(self) -> bool:
        """Whether the replay file exists."""
        return self.replay_path.is_file()


def _eval_candidates(results_dir: Path, eval_dir: Path) -> Iterable[tuple[str, str, Path]]:
    if results_dir.is_dir():
        for run in results_dir.iterdir():
            ev = run / "evaluation"
            if ev.is_dir():
                yield f"run:{run.name}", f"{run.name} (final evaluation of the run)", ev
    if eval_dir.is_dir():
        for ev in eval_dir.iterdir():
            if ev.is_dir() and not ev.name.startswith("."):
                yield f"eval:{ev.name}", ev.name, ev


def load_evaluation(key: str, label: str, path: str | os.PathLike) -> EvalInfo:
    """An evaluation folder's tables and its state.

    The tables: ``evaluation_summary.csv``, ``episodes.csv``, ``paired_differences.csv``
    and ``evaluation_meta.json``.
    ``evaluate.py`` writes the summary, episodes and paired tables first and the meta file
    last: a folder without ``evaluation_meta.json`` is ``being written``. A file that exists
    but cannot be read makes the folder ``corrupt`` with the file named in the message.
    """
    path = Path(path)
    info = EvalInfo(key, label, path, STATUS_FINISHED)
    try:
        info.updated = _newest(path)
    except OSError as exc:
        info.status, info.message = STATUS_CORRUPT, f"cannot list the folder ({exc})"
        return info
    missing, broken = [], []
    for attr, name in (("summary", "evaluation_summary.csv"), ("episodes", "episodes.csv"),
                       ("paired", "paired_differences.csv")):
        try:
            setattr(info, attr, read_csv(path / name))
        except FileNotFoundError:
            missing.append(name)
        except FolderError as exc:
            broken.append(str(exc))
    try:
        info.meta = read_json(path / "evaluation_meta.json")
    except FileNotFoundError:
        missing.append("evaluation_meta.json")
    except FolderError as exc:
        broken.append(str(exc))
    if info.summary is not None and "policy" not in info.summary:
        broken.append("evaluation_summary.csv: no 'policy' column")
        info.summary = None
    if info.episodes is not None and not {"policy", "pnl"} <= set(info.episodes):
        broken.append("episodes.csv: no 'policy'/'pnl' columns")
        info.episodes = None
    if broken:
        info.status, info.message = STATUS_CORRUPT, "; ".join(broken)
    elif missing:
        info.status = STATUS_WRITING
        info.message = f"{', '.join(missing)} not there yet: the evaluation is running or was interrupted"
    return info


def scan_evaluations(results_dir: str | os.PathLike, eval_dir: str | os.PathLike) -> list[EvalInfo]:
    """Every evaluation: each run's ``evaluation/`` and each folder of ``eval_dir``, newest first."""
    out = [load_evaluation(k, label, p) for k, label, p in _eval_candidates(Path(results_dir), Path(eval_dir))]
    return sorted(out, key=lambda e: (-e.updated, e.key))


def markout_horizons(info: EvalInfo) -> list[tuple[float, str]]:
    """``(horizon_ms, summary column)`` of the evaluation's markouts, shortest first.

    The horizons come from ``evaluation_meta.json``'s env config; columns of the summary
    that no configured horizon names are left out.
    """
    import utils

    if info.summary is None:
        return []
    env = info.meta.get("env_config") or {}
    hs = _find_key(env, "markout_horizons_ms") or []
    out = []
    for h in hs:
        col = f"markout_bps_{utils.horizon_label(float(h))}"
        if col in info.summary:
            out.append((float(h), col))
    return sorted(out)


def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- replay files


def replay_index(path: str | os.PathLike) -> pd.DataFrame:
    """The recorded episodes of a replay file (``replay_record.read_index``; cached by mtime).

    Raises:
        FileNotFoundError: no such file.
        FolderError: the file cannot be read (named, with the reason).
    """
    import replay_record

    return _cached("replay_index", Path(path), replay_record.read_index)


def replay_episode(path: str | os.PathLike, policy: str, model: str, episode: int
                   ) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """``(steps, fills, meta)`` of one recorded episode (``replay_record.read_episode``; cached by mtime).

    Raises:
        FileNotFoundError: no such file.
        FolderError: the file cannot be read.
    """
    import replay_record

    kind = f"replay_episode:{policy}|{model}|{int(episode)}"
    return _cached(kind, Path(path), lambda p: replay_record.read_episode(p, policy, model, int(episode)))
