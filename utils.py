"""Shared helpers: atomic file writes, running statistics, metrics and the config/flag plumbing.

Public names:

- ``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_write_json``: write a file so
  that a crash or Ctrl-C leaves either the old or the new content, never a half file.
- ``RunningMeanStd``: parallel-algorithm running mean/variance with a frozen flag and a
  JSON-serialisable state, used by the agent's observation normaliser.
- Metrics (assumptions in each docstring and in the README section "Research workflow"): ``SECONDS_PER_YEAR``,
  ``periods_per_year``, ``sharpe_ratio``, ``sortino_ratio``, ``max_drawdown``,
  ``bootstrap_ci``, ``markout_summary``, ``horizon_label`` (the one labelling of markout
  horizons: ``markout_bps_<horizon_label(h)>``). Markouts are computed by the env only.
- Config plumbing: ``CliError``, ``OneLineErrorParser``, ``field_docstrings``,
  ``add_dataclass_arguments``, ``dataclass_from_args``, ``dataclass_to_dict``,
  ``dataclass_from_dict``, nested configs (``flat_field_paths``, ``from_flat``,
  ``replace_flat``, ``get_flat``, ``flat_dict``), ``flag_rows`` (the flag tables of the docs),
  ``sha256_file``, ``check_settings`` (every number of a config finite and in its sane range).

Plots are in ``plots.py``; the set-up the two scripts share (data paths, env, saved models,
logging, error handling) is in ``cli.py``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import hashlib
import inspect
import math
import os
import re
import tempfile
import textwrap
import types
import typing
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np
import orjson


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, buffering: int = -1) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing so that it appears whole or not at all.

    Writes go to a temp file in the same folder; on a clean exit it is flushed, fsynced,
    given the permissions a plain ``open`` would give (``0o666 & ~umask``; ``mkstemp`` makes
    0600) and renamed over ``path``. On any exception, KeyboardInterrupt included, the temp
    file is removed and ``path`` keeps its old content; an ``OSError`` that names no file (a
    full disk: ``ENOSPC``) is re-raised naming ``path``.

    Args:
        path: destination file; its folder is created if missing.
        buffering: passed to ``open`` (e.g. ``1 << 20`` for large streamed files).

    Yields:
        The binary file handle to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb", buffering=buffering) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # A failed write (ENOSPC, EIO) names no file: name the destination, for the one-line error.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once: os.umask can only be read by setting it


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; see ``atomic_open``.

    Args:
        path: destination file; its folder is created if missing.
        data: the bytes to write.

    Returns:
        The destination as a ``Path``.
    """
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see ``atomic_write_bytes``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (numpy scalars/arrays allowed)."""
    return atomic_write_bytes(
        path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


class RunningMeanStd:
    """Running mean and variance of a stream of arrays (Chan et al. parallel algorithm).

    The same update as Stable-Baselines3's ``RunningMeanStd`` and Gymnasium's
    ``NormalizeObservation``: a batch of shape ``(n, *shape)`` updates the statistics in one
    step. ``frozen=True`` turns ``update`` into a no-op, which is how evaluation uses the
    statistics learned in training.

    >>> rms = RunningMeanStd(shape=(), epsilon=0.0)
    >>> rms.update(np.array([1.0, 2.0, 3.0]))
    >>> float(rms.mean), round(float(rms.var), 6)
    (2.0, 0.666667)
    >>> rms.frozen = True; rms.update(np.array([100.0])); float(rms.mean)
    2.0
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)
        self.frozen = False

    def update(self, batch: np.ndarray) -> None:
        """Fold a batch (first axis = samples) into the statistics unless frozen."""
        if self.frozen:
            return
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        b_mean = batch.mean(axis=0)
        b_var = batch.var(axis=0)
        delta = b_mean - self.mean
        tot = self.count + n
        new_mean = self.mean + delta * n / tot
        m2 = self.var * self.count + b_var * n + np.square(delta) * self.count * n / tot
        self.mean, self.var, self.count = new_mean, m2 / tot, tot

    def normalize(self, x: np.ndarray, clip: float = 10.0, eps: float = 1e-8) -> np.ndarray:
        """Return ``clip((x - mean) / sqrt(var + eps), -clip, clip)`` as float32."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + eps)
        return np.clip(z, -clip, clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (lists), for saving beside a model."""
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------
#
# Conventions shared by every metric below (also in the README section "Research workflow"):
# - Inputs are PnL amounts in quote currency (USDT), not percentage returns: a market maker
#   starts flat with no fixed capital, so PnL per period is the natural "return". Sharpe and
#   Sortino of PnL are scale-free ratios, so the unit cancels.
# - Crypto trades 24/7: a year is 365 days of 86 400 s (not 252 trading days).
# - Annualisation multiplies a per-period ratio by sqrt(periods_per_year), which assumes the
#   periods are independent and identically distributed (no autocorrelation).

SECONDS_PER_YEAR: float = 365.0 * 86_400.0
"""Seconds in the 365-day crypto year used for annualisation."""


def periods_per_year(period_s: float) -> float:
    """Number of back-to-back periods of ``period_s`` seconds in a 365-day year.

    Args:
        period_s: the sampling interval in seconds (an episode length for per-episode
            metrics, the decision interval for per-step metrics).

    Returns:
        ``365 * 86400 / period_s``.

    Raises:
        ValueError: if ``period_s`` is not positive.

    >>> periods_per_year(86_400.0)
    365.0
    >>> periods_per_year(3_600.0)
    8760.0
    """
    if not period_s > 0:
        raise ValueError(f"period_s must be > 0, got {period_s!r}")
    return SECONDS_PER_YEAR / float(period_s)


def _finite_1d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def sharpe_ratio(pnl: Any, periods_per_year: float | None = None) -> float:
    """Sharpe ratio of a series of per-period PnL, optionally annualised.

    ``sharpe = mean(pnl) / std(pnl, ddof=1)``, times ``sqrt(periods_per_year)`` when given.
    The risk-free rate is taken as 0 (inventory is held for seconds to hours). With fewer
    than two values, or zero dispersion, the ratio is undefined and ``nan`` is returned.

    Args:
        pnl: per-period PnL (e.g. one value per episode, or per decision step).
        periods_per_year: number of such periods in a year (see ``periods_per_year``);
            ``None`` returns the per-period ratio.

    Returns:
        The (annualised) Sharpe ratio, or ``nan`` when undefined.

    >>> round(sharpe_ratio([1.0, 2.0, 3.0]), 6)   # mean 2, sample std 1
    2.0
    >>> round(sharpe_ratio([1.0, 2.0, 3.0], periods_per_year=4.0), 6)
    4.0
    >>> sharpe_ratio([1.0])
    nan
    """
    a = _finite_1d(pnl, "pnl")
    if a.size < 2:
        return float("nan")
    sd = float(a.std(ddof=1))
    if sd == 0.0:
        return float("nan")
    ratio = float(a.mean()) / sd
    if periods_per_year is not None:
        ratio *= float(np.sqrt(periods_per_year))
    return ratio


def sortino_ratio(pnl: Any, periods_per_year: float | None = None, target: float = 0.0) -> float:
    """Sortino ratio: mean excess PnL over the downside deviation, optionally annualised.

    ``downside = sqrt(mean(min(pnl - target, 0)^2))`` over *all* periods (Sortino & Price,
    1994: periods above the target count as zero shortfall), and
    ``sortino = (mean(pnl) - target) / downside``, times ``sqrt(periods_per_year)`` when
    given. ``inf`` when no period falls below the target and the mean is positive, ``nan``
    for an empty series or a series exactly at the target.

    Args:
        pnl: per-period PnL.
        periods_per_year: periods in a year, or ``None`` for the per-period ratio.
        target: the minimum acceptable PnL per period (default 0).

    Returns:
        The (annualised) Sortino ratio.

    >>> round(sortino_ratio([2.0, -1.0, 2.0, -1.0]), 6)   # mean 0.5, downside sqrt(2/4)
    0.707107
    >>> sortino_ratio([1.0, 2.0])
    inf
    """
    a = _finite_1d(pnl, "pnl")
    if a.size == 0:
        return float("nan")
    excess = float(a.mean()) - target
    downside = float(np.sqrt(np.mean(np.minimum(a - target, 0.0) ** 2)))
    if downside == 0.0:
        if excess > 0:
            return float("inf")
        return float("nan") if excess == 0 else float("-inf")
    ratio = excess / downside
    if periods_per_year is not None:
        ratio *= float(np.sqrt(periods_per_year))
    return ratio


def max_drawdown(equity: Any) -> float:
    """Largest peak-to-trough fall of a cumulative PnL (equity) curve, in PnL units.

    ``max_t (max_{s<=t} equity_s - equity_t)``, with the curve taken to start at 0 (a market
    maker starts flat), so a first value below zero already counts as drawdown. Reported as
    a non-negative amount of quote currency, not a percentage: without a capital base a
    relative drawdown is undefined.

    Args:
        equity: cumulative PnL after each period (not per-period PnL).

    Returns:
        The maximum drawdown (>= 0); 0.0 for an empty or never-falling curve.

    >>> max_drawdown([1.0, 3.0, 2.0, 5.0, 1.0, 4.0])
    4.0
    >>> max_drawdown([-2.0, -1.0])
    2.0
    >>> max_drawdown([])
    0.0
    """
    a = _finite_1d(equity, "equity")
    if a.size == 0:
        return 0.0
    curve = np.concatenate([[0.0], a])
    return float(np.max(np.maximum.accumulate(curve) - curve))


def bootstrap_ci(
    x: Any, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Draws ``n_resamples`` samples of ``len(x)`` values with replacement from ``x`` (a
    ``numpy.random.default_rng(seed)`` generator, so the interval is reproducible), and
    returns the ``(1-confidence)/2`` and ``(1+confidence)/2`` quantiles of their means. The
    percentile method assumes the episodes are i.i.d.; with few episodes (< ~20) the
    interval is too narrow, which is why it is reported together with the std.

    Args:
        x: the sample (e.g. PnL per episode).
        confidence: coverage in (0, 1).
        n_resamples: number of bootstrap resamples.
        seed: RNG seed.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for an empty sample, ``(v, v)`` for one value.

    Raises:
        ValueError: for a confidence outside (0, 1) or ``n_resamples < 1``.

    >>> bootstrap_ci([2.0, 2.0, 2.0])
    (2.0, 2.0)
    >>> lo, hi = bootstrap_ci([0.0, 1.0, 2.0, 3.0, 4.0], seed=1)
    >>> 0.0 <= lo < 2.0 < hi <= 4.0
    True
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples!r}")
    a = _finite_1d(x, "x")
    if a.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_resamples, a.size))
    means = a[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def markout_summary(markouts: np.ndarray, horizons_ms: Any) -> dict[str, float]:
    """Mean markout per horizon and the share of adversely-selected fills.

    The markouts themselves are computed once, by the env (``info["episode"]["fills"][i]
    ["markouts_bps"]``, one value per ``info["episode"]["markout_horizons_ms"]``, ``None``
    while unresolved); this only summarises such rows (``None`` given as ``nan``).

    Args:
        markouts: ``(n_fills, n_horizons)`` markouts in bps, ``nan`` where unresolved.
        horizons_ms: the horizons, same order as the columns.

    Returns:
        ``{"markout_bps_<h>": mean over fills (nan ignored), "adverse_share_<h>": share of
        fills with a negative markout}`` with ``<h>`` written as ``100ms``/``1s``/``30s``.

    >>> markout_summary(np.array([[1.0], [-3.0]]), [1000])
    {'markout_bps_1s': -1.0, 'adverse_share_1s': 0.5}
    """
    m = np.asarray(markouts, dtype=np.float64)
    out: dict[str, float] = {}
    for j, h in enumerate(np.asarray(horizons_ms).reshape(-1)):
        label = horizon_label(float(h))
        col = m[:, j] if m.ndim == 2 and m.shape[0] else np.array([])
        col = col[np.isfinite(col)]
        out[f"markout_bps_{label}"] = float(col.mean()) if col.size else float("nan")
        out[f"adverse_share_{label}"] = float(np.mean(col < 0)) if col.size else float("nan")
    return out


def horizon_label(h_ms: float) -> str:
    """Short label of a horizon in ms: ``100ms``, ``1s``, ``1.5s``.

    >>> horizon_label(100), horizon_label(1000), horizon_label(30000), horizon_label(1500)
    ('100ms', '1s', '30s', '1.5s')
    """
    if h_ms < 1000:
        return f"{h_ms:g}ms"
    return f"{h_ms / 1000:g}s"


# ---------------------------------------------------------------------------------------
# CLI plumbing: argparse flags generated from frozen config dataclasses
# ---------------------------------------------------------------------------------------


class CliError(ValueError):
    """A user error on the command line or in a config value; the scripts print it on one line."""


class OneLineErrorParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line on stderr (``prog: error: ...``), exit 2.

    Prefixes of long flags are refused (``allow_abbrev=False``): argparse would otherwise take
    ``--inventory_penalty`` for the only flag it begins, silently.

    >>> OneLineErrorParser(prog="x").allow_abbrev
    False
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_docstrings(cls: type) -> dict[str, str]:
    """Docstrings written under the fields of a dataclass (parsed from its source with ``ast``).

    STYLE.md asks for a string literal right below each field; Python keeps none of them at
    runtime, so they are read from the class source. Fields without one map to ``""``.
    A ``metadata={"help": ...}`` on the field takes precedence.

    Args:
        cls: a dataclass type.

    Returns:
        ``{field_name: docstring with whitespace collapsed}``.
    """
    docs: dict[str, str] = {f.name: "" for f in dataclasses.fields(cls)}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source (e.g. built in a REPL)
        tree = None
    if tree is not None:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
        for node, nxt in zip(body, [*body[1:], None], strict=True):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            docs[f.name] = str(f.metadata["help"])
    return docs


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _optional(conv: Any) -> Any:
    def parse(text: str) -> Any:
        if text.strip().lower() in {"none", "null"}:
            return None
        return conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def _scalar_converter(tp: Any) -> tuple[Any, list[Any] | None]:
    """(converter, choices) for a scalar annotation; raises TypeError when unsupported."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = list(typing.get_args(tp))
        kind = type(choices[0])
        return (_parse_bool if kind is bool else kind), choices
    if tp is bool:
        return _parse_bool, None
    if tp in (int, float, str):
        return tp, None
    raise TypeError(f"unsupported annotation {tp!r}")


def _argument_spec(tp: Any) -> dict[str, Any]:
    """Keyword arguments of argparse (type, nargs, choices) for a field annotation."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    optional = False
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        tp = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # e.g. ``str | tuple[str, ...]`` (one path or several): accept one or more values.
        seq = [a for a in args if typing.get_origin(a) in (tuple, list)]
        if seq:
            return _argument_spec(seq[0] if not optional else seq[0] | None) | {"scalar_ok": True}
        raise TypeError(f"unsupported annotation {tp!r}")
    if origin in (tuple, list):
        elem = args[0] if args else str
        conv, choices = _scalar_converter(elem)
        conv = _optional(conv) if optional else conv
        nargs: Any = "+" if (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else len(args)
        return {"type": conv, "nargs": nargs, "choices": choices, "seq": origin}
    conv, choices = _scalar_converter(tp)
    if optional:
        conv = _optional(conv)
        choices = None if choices is None else [*choices, None]
    spec: dict[str, Any] = {"type": conv, "choices": choices}
    if tp is bool:
        spec["nargs"] = "?"
        spec["const"] = True
    return spec


def add_dataclass_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    title: str | None = None,
    exclude: typing.Iterable[str] = (),
    prefix: str = "",
    defaults: typing.Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Add one ``--<prefix><field>`` flag per field of a frozen config dataclass.

    Help text comes from the field docstrings, the default is shown, ``Literal`` fields get
    ``choices``, ``bool`` fields accept ``--flag`` / ``--flag false``, ``X | None`` fields
    accept ``none``, fixed-length tuples take that many values. Absent flags do not appear
    in the parsed namespace (``argparse.SUPPRESS``), so only what the user typed overrides a
    base config (see ``dataclass_from_args``). Flags that already exist on the parser are
    skipped (the script defines them itself, e.g. ``--seed``).

    Args:
        parser: the parser to add to.
        cls: the config dataclass.
        title: argument-group title (default: the class name).
        exclude: field names to leave out.
        prefix: prepended to flag names and destinations (to avoid clashes between configs).
        defaults: ``{field: value}`` the script uses instead of the dataclass default (it must
            build its base config with the same values); the help shows both.

    Returns:
        ``{dest: field_name}`` of the flags added.
    """
    flat_field_paths(cls)  # refuses leaf-name collisions between nested configs up front
    group = parser.add_argument_group(title or cls.__name__)
    return _add_fields(parser, group, cls, set(exclude), prefix, defaults, cls.__name__)


def _add_fields(parser: argparse.ArgumentParser, group: Any, cls: type, excluded: set[str], prefix: str,
                defaults: typing.Mapping[str, Any] | None, owner: str) -> dict[str, str]:
    """The loop of ``add_dataclass_arguments``; nested config dataclasses add their leaves here."""
    docs = field_docstrings(cls)
    hints = typing.get_type_hints(cls)
    existing = {s for a in parser._actions for s in a.option_strings}
    added: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.name in excluded or not f.init:
            continue
        if _nested_type(hints[f.name]) is not None:
            # A nested config gets its own group, titled by its path and class, so that --help
            # (and docs/gen_flag_tables.py) group the flags by config class.
            sub = hints[f.name]
            sub_group = parser.add_argument_group(f"{group.title}: {f.name} ({sub.__name__})")
            added.update(_add_fields(parser, sub_group, sub, excluded, prefix, defaults,
                                     f"{owner}.{f.name}"))
            continue
        flag = f"--{prefix}{f.name}"
        if flag in existing:
            continue
        try:
            spec = _argument_spec(hints[f.name])
        except TypeError:
            spec = {"type": str, "choices": None}  # parsed by the dataclass itself
        default = _field_default(f)
        shown = f"default: {_fmt_default(default)}"
        if defaults and f.name in defaults:
            shown = (f"default: {_fmt_default(defaults[f.name])}; "
                     f"{owner} default: {_fmt_default(default)}")
        kwargs: dict[str, Any] = {
            "dest": f"{prefix}{f.name}",
            "default": argparse.SUPPRESS,
            "type": spec["type"],
            "help": f"{docs.get(f.name, '')} ({shown})".replace("%", "%%"),
        }
        for key in ("nargs", "const", "choices"):
            if spec.get(key) is not None:
                kwargs[key] = spec[key]
        if isinstance(spec.get("nargs"), int) or spec.get("nargs") == "+":
            kwargs["metavar"] = f.name.upper()
        group.add_argument(flag, **kwargs)
        added[f"{prefix}{f.name}"] = f.name
    return added


def _nested_type(tp: Any) -> type | None:
    """``tp`` when it is a config dataclass type (a nested config), else ``None``."""
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def flat_field_paths(cls: type) -> dict[str, tuple[str, ...]]:
    """Leaf field name -> attribute path, through nested config dataclasses.

    A field whose annotation is itself a dataclass is a nested config: its fields are leaves
    of the outer config, addressed by their own (unique) names on the command line, in
    ``replace_flat`` and in saved flat configs. Leaf names must be unique across the tree.

    Raises:
        TypeError: two leaves share a name.

    (Examples in ``tests/test_utils.py``: doctest classes cannot resolve the postponed
    annotations of this module.)
    """
    out: dict[str, tuple[str, ...]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        sub = _nested_type(hints[f.name])
        items = ([(k, (f.name, *v)) for k, v in flat_field_paths(sub).items()] if sub is not None
                 else [(f.name, (f.name,))])
        for leaf, path in items:
            if leaf in out:
                raise TypeError(f"{cls.__name__}: field name {leaf!r} appears twice "
                                f"({'.'.join(out[leaf])} and {'.'.join(path)}); leaf names must be unique")
            out[leaf] = path
    return out


def _leaf_hint(cls: type, path: tuple[str, ...]) -> Any:
    for name in path[:-1]:
        cls = typing.get_type_hints(cls)[name]
    return typing.get_type_hints(cls)[path[-1]]


def _build_nested(cls: type, base: Any, values: dict[tuple[str, ...], Any]) -> Any:
    """``base`` (or ``cls()``) with the leaves at ``values``' paths replaced, nested configs rebuilt."""
    direct: dict[str, Any] = {}
    deeper: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, v in values.items():
        if len(path) == 1:
            direct[path[0]] = v
        else:
            deeper.setdefault(path[0], {})[path[1:]] = v
    hints = typing.get_type_hints(cls)
    for name, sub_values in deeper.items():
        sub_base = getattr(base, name) if base is not None else None
        direct[name] = _build_nested(hints[name], sub_base, sub_values)
    if base is not None:
        return dataclasses.replace(base, **direct)
    return cls(**direct)


def replace_flat(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` by leaf name, through nested configs.

    Args:
        obj: a config dataclass instance.
        **changes: leaf field names (see ``flat_field_paths``) or top-level nested-config
            names (replaced whole) and their new values.

    Raises:
        TypeError: an unknown name (the message lists none of the valid ones, it names the class).
    """
    paths = flat_field_paths(type(obj))
    top = {f.name for f in dataclasses.fields(obj) if f.init}
    values: dict[tuple[str, ...], Any] = {}
    for name, v in changes.items():
        if name in paths:
            values[paths[name]] = v
        elif name in top:
            values[(name,)] = v
        else:
            raise TypeError(f"{type(obj).__name__} has no field {name!r}")
    return _build_nested(type(obj), obj, values)


def from_flat(cls: type, **leaves: Any) -> Any:
    """Build a config from leaf names, through nested configs (``cls(**leaves)`` for a flat one).

    The unset leaves, and whole nested configs none of whose leaves is given, take their
    defaults. ``from_flat(PPOConfig, network="mlp", n_steps=64)`` is
    ``PPOConfig(n_steps=64, net=NetworkConfig(network="mlp"))``.

    Raises:
        TypeError: an unknown leaf name.
        ValueError: a value the config rejects (its own message).
    """
    paths = flat_field_paths(cls)
    unknown = [k for k in leaves if k not in paths]
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
    return _build_nested(cls, None, {paths[k]: v for k, v in leaves.items()})


def get_flat(obj: Any, leaf: str) -> Any:
    """The value of leaf field ``leaf`` of a config, wherever it is nested.

    Raises:
        AttributeError: no such leaf.
    """
    path = flat_field_paths(type(obj)).get(leaf)
    if path is None:
        raise AttributeError(f"{type(obj).__name__} has no field {leaf!r}")
    for name in path:
        obj = getattr(obj, name)
    return obj


def flat_dict(obj: Any) -> dict[str, Any]:
    """Leaf name -> value of a config with nested configs (the inverse of ``replace_flat``)."""
    return {leaf: get_flat(obj, leaf) for leaf in flat_field_paths(type(obj))}


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _fmt_default(v: Any) -> str:
    if isinstance(v, tuple | list):
        return " ".join(str(x) for x in v) if v else "()"
    return str(v)


_DEFAULT_SUFFIX = re.compile(r"^(?P<doc>.*?) ?\((?P<default>default: .*)\)$", re.DOTALL)


def flag_rows(parser: argparse.ArgumentParser) -> list[tuple[str, str, str, str]]:
    """``(group title, flags, default, help)`` of every option of ``parser``, as ``--help`` shows them.

    The default is the ``(default: ...)`` suffix of the help (the flags of
    ``add_dataclass_arguments`` always end so), else the argparse default (``-`` for none,
    ``off`` for a switch). ``-h`` is left out.
    Used by ``docs/gen_flag_tables.py``.

    >>> p = OneLineErrorParser(prog="x")
    >>> _ = p.add_argument("--n", type=int, default=3, help="count")
    >>> flag_rows(p)
    [('options', '--n', '3', 'count')]
    """
    rows = []
    for group in parser._action_groups:  # argparse's own formatter walks the same list
        for action in group._group_actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            text = " ".join((action.help or "").replace("%%", "%").split())
            m = _DEFAULT_SUFFIX.match(text)
            if m:  # the generated flags' "(default: ...)", or one a script wrote the same way
                text, default = m["doc"], m["default"].removeprefix("default: ")
            elif isinstance(action, argparse._StoreTrueAction):
                default = "off"
            elif action.default is None or action.default is argparse.SUPPRESS:
                default = "-"
            else:
                default = _fmt_default(action.default)
            rows.append((str(group.title), ", ".join(action.option_strings), default, text))
    return rows


def dataclass_from_args(
    cls: type, args: argparse.Namespace, mapping: dict[str, str], base: Any = None
) -> Any:
    """Build a config from parsed flags: ``base`` (or the defaults) with the given flags replaced.

    Args:
        cls: the config dataclass.
        args: the parsed namespace.
        mapping: what ``add_dataclass_arguments`` returned.
        base: a config instance to start from (e.g. loaded from a saved run).

    Returns:
        A new ``cls`` instance.

    Raises:
        CliError: when the dataclass rejects a value (its ``ValueError``/``TypeError`` message
            is kept).
    """
    paths = flat_field_paths(cls)
    values: dict[tuple[str, ...], Any] = {}
    for dest, name in mapping.items():
        if hasattr(args, dest):
            path = paths[name]
            values[path] = _coerce(_leaf_hint(cls, path), getattr(args, dest))
    try:
        return _build_nested(cls, base, values)
    except (ValueError, TypeError) as exc:
        raise CliError(f"invalid {cls.__name__} setting: {exc}") from exc


def _coerce(tp: Any, value: Any) -> Any:
    """Lists to tuples where the annotation is a tuple; single-element lists to scalars where allowed."""
    if isinstance(value, list):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType) and len(value) == 1:
            if any(a in (str, int, float) for a in args):
                return value[0]
        return tuple(value)
    return value


def dataclass_to_dict(obj: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` with tuples as lists and paths as strings (JSON-ready).

    >>> @dataclasses.dataclass(frozen=True)
    ... class C:
    ...     a: tuple[float, float] = (0.0, 0.7)
    ...     b: str = "x"
    >>> dataclass_to_dict(C())
    {'a': [0.0, 0.7], 'b': 'x'}
    """

    def conv(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, np.generic):
            return v.item()
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(obj).items()}


def dataclass_from_dict(cls: type, data: dict[str, Any], *, source: str = "config") -> Any:
    """Rebuild a config saved by ``dataclass_to_dict`` (lists back to tuples).

    Unknown keys (a config saved by another version) are dropped with a warning; missing
    keys take the current defaults.

    Args:
        cls: the config dataclass.
        data: the saved mapping.
        source: where it came from, for messages.

    Returns:
        A ``cls`` instance.

    Raises:
        CliError: if the dataclass rejects a saved value.
    """
    paths = flat_field_paths(cls)
    values: dict[tuple[str, ...], Any] = {}
    unknown: list[str] = []
    _collect_saved(cls, data, (), paths, values, unknown)
    if unknown:
        warnings.warn(f"{source}: ignoring unknown {cls.__name__} keys {sorted(unknown)}", stacklevel=2)
    try:
        return _build_nested(cls, None, values)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{source}: invalid {cls.__name__}: {exc}") from exc


def _collect_saved(cls: type, data: dict[str, Any], at: tuple[str, ...], paths: dict[str, tuple[str, ...]],
                   values: dict[tuple[str, ...], Any], unknown: list[str]) -> None:
    """Leaf values of a saved config, nested (``{"exchange": {...}}``) or flat (older runs)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for k, v in data.items():
        if k in names and _nested_type(hints[k]) is not None and isinstance(v, dict):
            _collect_saved(hints[k], v, (*at, k), paths, values, unknown)
        elif k in names and _nested_type(hints[k]) is None:
            values[(*at, k)] = _coerce(hints[k], v)
        elif not at and k in paths:   # a leaf saved flat by a version before the nesting
            values[paths[k]] = _coerce(_leaf_hint(cls, paths[k]), v)
        else:
            unknown.append(".".join((*at, k)))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_settings(config: Any, ranges: Mapping[str, tuple[float, float]] | None = None) -> None:
    """Refuse a config whose numbers are not finite or lie outside their documented sane range.

    Every field of the dataclass ``config`` holding a number (``int``/``float``, not ``bool``) or
    a tuple/list of numbers must be finite (a NaN fee would give NaN rewards, and a saved
    ``params.json`` would store ``null``); a field named in ``ranges`` must lie in
    ``[lo, hi]``. Nested configs validate themselves. The ranges of every config are listed in
    docs/reliability.md.

    Raises:
        ValueError: naming the class, the field and the value.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     fee: float = 1.0
    >>> check_settings(C(float("nan")))
    Traceback (most recent call last):
    ...
    ValueError: C.fee must be a finite number, got nan
    >>> check_settings(C(1e5), {"fee": (-100.0, 100.0)})
    Traceback (most recent call last):
    ...
    ValueError: C.fee = 100000.0 is outside its sane range [-100.0, 100.0] (docs/reliability.md)
    """
    cls = type(config).__name__
    ranges = ranges or {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        items = value if isinstance(value, tuple | list) else (value,)
        for v in items:
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not math.isfinite(v):
                raise ValueError(f"{cls}.{f.name} must be a finite number, got {v!r}")
            if f.name in ranges:
                lo, hi = ranges[f.name]
                if not lo <= v <= hi:
                    raise ValueError(f"{cls}.{f.name} = {v!r} is outside its sane range [{lo}, {hi}] "
                                     "(docs/reliability.md)")
