"""What ``train.py`` and ``evaluate.py`` share: inputs, the env, saved models, logging, errors.

One job: the set-up common to the two command-line scripts, so that neither imports the
other. Importing this module keeps TensorFlow's C++ INFO/WARNING logs out of the CLI output
(``TF_CPP_MIN_LOG_LEVEL=2``, set before anything imports TensorFlow; a few start-up lines
TensorFlow prints before its logging is initialised still show).

Public names:

- ``ENV_CONFIG_FILE``: the file beside every saved model holding its env config.
- ``resolve_data_paths``: expand files/globs into existing files (one-line error otherwise).
- ``env_data_path`` / ``config_data_files``: file list -> ``EnvConfig.data_path`` and back.
- ``parse_range``: validate a ``(start, end)`` fraction pair from the command line.
- ``make_env``: a ``MarketMakingEnv`` from an ``EnvConfig``.
- ``model_metadata`` / ``save_model`` / ``load_model``: a saved agent with the env config it
  was trained with and its held-out data.
- ``setup_logging`` / ``run_cli``: logging set-up and the one-line error handling of both scripts;
  ``Terminated`` / ``interrupt_exit_code``: SIGTERM handled like Ctrl-C (exit 143 vs 130);
  ``exit_quietly``: the scripts' exit, deaf to late signals.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import orjson  # noqa: E402

import manifest  # noqa: E402
import utils  # noqa: E402

logger = logging.getLogger(__name__)

ENV_CONFIG_FILE = "env_config.json"
"""Written by train.py inside every saved model folder: ``{"env_config": <EnvConfig as a
nested dict>, "held_out": {"data_path": [...], "time_range": [a, b]}, "validation": {...}}``
(``held_out``: the test data; ``validation``: where ``best_model`` was selected), so that evaluation
rebuilds the same observation and action spaces and finds the held-out data. A model trained
on the model market (``train.py --env as_model``) has ``{"env": "as_model", "as_model_config":
..., ...}`` instead (``model_market_cli.as_model_metadata``)."""


# --------------------------------------------------------------------------- inputs


def resolve_data_paths(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Expand a file, several files or glob patterns into existing files, in sorted order per glob.

    Args:
        spec: one path/pattern or a sequence of them.

    Returns:
        The files, de-duplicated, in the order given.

    Raises:
        utils.CliError: for a path that does not exist or a glob that matches nothing.
    """
    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    out: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if glob.has_magic(s):
            matches = sorted(glob.glob(s))
            if not matches:
                raise utils.CliError(f"--data_path pattern {s!r} matches no file")
            paths = [Path(m) for m in matches]
        else:
            paths = [Path(s)]
        for p in paths:
            if p.is_dir():
                raise utils.CliError(f"--data_path {p} is a directory, not a data file (name the file(s) inside it, "
                                     "or a glob such as 'dir/*.gz')")
            if not p.is_file():
                raise utils.CliError(f"data file not found: {p}")
            if p not in out:
                out.append(p)
    if not out:
        raise utils.CliError("no data file given")
    return out


def env_data_path(paths: Sequence[Path]) -> str | tuple[str, ...]:
    """The ``EnvConfig.data_path`` value for a list of files (a str for one file).

    >>> env_data_path([Path("a.jsonl")])
    'a.jsonl'
    """
    return str(paths[0]) if len(paths) == 1 else tuple(str(p) for p in paths)


def config_data_files(data_path: str | Sequence[str]) -> list[Path]:
    """The existing files of an ``EnvConfig.data_path`` (several files are joined by ``os.pathsep``).

    Raises:
        utils.CliError: a file that does not exist.
    """
    if isinstance(data_path, str | os.PathLike):
        data_path = [p for p in os.fspath(data_path).split(os.pathsep) if p]
    return resolve_data_paths(data_path)


def parse_range(text: Sequence[float] | None, flag: str) -> tuple[float, float] | None:
    """Validate a ``(start, end)`` fraction pair from the command line.

    >>> parse_range([0.7, 1.0], "--eval_range")
    (0.7, 1.0)
    """
    if text is None:
        return None
    lo, hi = (float(v) for v in text)
    if not (0.0 <= lo < hi <= 1.0):
        raise utils.CliError(f"{flag} must satisfy 0 <= start < end <= 1, got {lo} {hi}")
    return (lo, hi)


def make_env(env_config: Any) -> Any:
    """Build a ``MarketMakingEnv`` from an ``EnvConfig``."""
    from event_driven_env import MarketMakingEnv

    return MarketMakingEnv(env_config)


# --------------------------------------------------------------------------- saved models


def model_metadata(env_config: Any, held_out_files: Sequence[Path], held_out_range: Sequence[float],
                   validation: tuple[Sequence[Path], Sequence[float]] | None = None) -> dict[str, Any]:
    """The ``ENV_CONFIG_FILE`` content of a model trained with ``env_config``.

    ``held_out`` is the run's *test* data (never used for training or selection); ``validation``
    the data on which ``best_model`` was selected.
    """
    meta = {"env_config": utils.dataclass_to_dict(env_config),
            "held_out": {"data_path": [str(p) for p in held_out_files],
                         "time_range": list(held_out_range)}}
    if validation is not None:
        meta["validation"] = {"data_path": [str(p) for p in validation[0]], "time_range": list(validation[1])}
    return meta


def save_model(agent: Any, path: Path, model_meta: dict[str, Any]) -> None:
    """``agent.save`` plus ``ENV_CONFIG_FILE`` into a temp folder renamed over ``path`` (never a half-written model)."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    agent.save(tmp)
    utils.atomic_write_json(tmp / ENV_CONFIG_FILE, model_meta)
    manifest.write(tmp)  # again, now covering ENV_CONFIG_FILE: sizes and hashes, written last
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)


def load_model(model_path: str | os.PathLike) -> tuple[Any, dict[str, Any] | None]:
    """Load a saved agent and the env config saved beside it.

    Args:
        model_path: a folder written by ``save_model`` (e.g. ``results/<run>/models/final_model``).

    Returns:
        ``(agent, metadata)``; the metadata (see ``ENV_CONFIG_FILE``) is ``None`` when the
        folder has none (then the current EnvConfig defaults are used, with a warning).

    Raises:
        utils.CliError: when the folder does not exist or cannot be loaded.
    """
    path = Path(model_path)
    if not path.is_dir():
        raise utils.CliError(f"model folder not found: {path}")
    from ppo_agent import PPOAgent

    try:
        agent = PPOAgent.load(path, optimizer=False)  # evaluation never reads optimizer.npz
        cfg_file = path / ENV_CONFIG_FILE
        meta = None
        if cfg_file.is_file():
            manifest.verify(path, [ENV_CONFIG_FILE])
            meta = orjson.loads(cfg_file.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise utils.CliError(f"cannot load the model in {path}: {cfg_file}: not valid JSON ({exc})") from None
    except (OSError, ValueError, KeyError) as exc:
        raise utils.CliError(f"cannot load the model in {path}: {exc}") from None
    if meta is None:
        logger.warning("%s has no %s: using the default EnvConfig", path, ENV_CONFIG_FILE)
    return agent, meta


# --------------------------------------------------------------------------- logging, errors


def setup_logging() -> None:
    """INFO-level ``logging`` to stderr as ``LEVEL module: message`` (the scripts' format)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, schedulers, container stops) raised as an interrupt: handled like Ctrl-C."""


def interrupt_exit_code(exc: BaseException | int) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM (a ``Terminated`` or the signal number): 128 + signal.

    >>> interrupt_exit_code(KeyboardInterrupt()), interrupt_exit_code(Terminated()), interrupt_exit_code(15)
    (130, 143, 143)
    """
    if isinstance(exc, int):
        return 128 + exc
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def run_cli(prog: str, body: Callable[[], int], argv: Sequence[str] | None,
            interrupted: str | Callable[[], str] = "interrupted",
            error_hint: Callable[[], str | None] | None = None) -> int:
    """Run a script's ``body`` with the shared logging, SIGTERM and one-line error handling.

    A user error (``utils.CliError``, ``ValueError``, ``OSError``) prints
    ``<prog>: error: <message>`` on one line and returns 2 (with ``--debug`` in ``argv``
    it is raised instead, with its traceback); an ``OSError`` (e.g. a full disk, naming the
    file: ``utils.atomic_open``) gets ``error_hint()`` appended (train.py: how to resume).
    Ctrl-C prints ``<prog>: <interrupted>`` and returns 130; SIGTERM is turned into the same
    interrupt (``Terminated``) and returns 143. Errors of the flags themselves are argparse's
    (``utils.OneLineErrorParser``).

    Args:
        prog: the script name, e.g. ``"train.py"``.
        body: parses the flags and runs; returns the exit code.
        argv: the arguments (``None``: ``sys.argv[1:]``), only to look for ``--debug``.
        interrupted: what to say after an interrupt (a callable: asked at that moment).
        error_hint: appended to the message of an ``OSError`` when it returns text.

    Returns:
        The exit code.
    """
    setup_logging()
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        return body()
    except KeyboardInterrupt as exc:
        if main_thread:  # a third Ctrl-C while saying where things stand must not cut the message
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"{prog}: {interrupted() if callable(interrupted) else interrupted}", file=sys.stderr)
        return interrupt_exit_code(exc)
    except (utils.CliError, ValueError, OSError) as exc:
        if debug:
            raise
        hint = error_hint() if error_hint is not None and isinstance(exc, OSError) else None
        print(f"{prog}: error: {exc}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 2
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            signal.signal(signal.SIGINT, previous_int if previous_int is not None else signal.default_int_handler)


def exit_quietly(code: int) -> None:
    """``sys.exit(code)`` with Ctrl-C and SIGTERM ignored.

    A late signal while the interpreter shuts down (TensorFlow's exit handlers take a moment)
    must not replace the exit code the script chose.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
