"""The per-step replay file of an evaluation: what the dashboard's episode replay reads.

One job: while ``evaluation`` runs episodes, record for each recorded episode every decision
step's market (mid, best bid/ask, the book's top ``levels`` per side), the agent's quotes
with their remaining size and queue position, inventory, PnL and cumulative fees, and every
fill (side, price, size, maker/taker, fee, the mid before it, its markouts); then write it all
to one compact parquet file, ``replay.parquet`` in the evaluation folder, atomically. The
dashboard (``dashboard.py``) reads it back with ``read_index`` and ``read_episode``.

The file is one long table, one row per step (``record == "step"``) or fill
(``record == "fill"``), keyed by ``policy``, ``model`` (empty for the baselines),
``episode`` and ``step``; a fill's ``step`` is the decision step whose interval holds it (the
first step with ``ts >=`` the fill's time). Prices are in quote units, sizes in base units,
``ts`` in exchange milliseconds. Columns that do not apply to a row are null; so are the book
levels of an episode's last step (by then the env has replayed past the end to resolve the
markouts, and its book is no longer that instant's; mid and best bid/ask are). The schema's
metadata (``rlmm_replay``, JSON) holds ``version``, ``levels`` and ``markout_horizons_ms``.

Public names:

- ``REPLAY_FILE``: the file name, ``replay.parquet``.
- ``STEP_COLUMNS`` / ``FILL_COLUMNS`` / ``level_columns``: the columns.
- ``ReplayRecorder``: a context manager writing the file as episodes finish (``episode(...)`` →
  ``EpisodeRecorder``), atomically.
- ``ReplayFileError``: a replay file that cannot be read (names the file and why).
- ``read_meta`` / ``read_index`` / ``read_episode``: the reading side.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

REPLAY_FILE = "replay.parquet"
VERSION = 1
_META_KEY = b"rlmm_replay"

STEP_COLUMNS: tuple[str, ...] = (
    "mid", "best_bid", "best_ask", "quote_bid", "quote_ask", "bid_quote_size", "ask_quote_size",
    "bid_queue_ahead", "ask_queue_ahead", "inventory", "pnl", "fees",
)
"""Per-step columns (besides the keys and the book levels of ``level_columns``)."""

FILL_COLUMNS: tuple[str, ...] = ("side", "price", "size", "maker", "fee", "fill_mid")
"""Per-fill columns (besides the keys and one ``markout_bps_<h>`` per horizon)."""

KEY_COLUMNS: tuple[str, ...] = ("policy", "model", "episode", "record", "step", "ts")

ROW_GROUP_ROWS = 65_536
"""Rows buffered before a parquet row group is written (~30 MB with 10 levels; larger groups compress better)."""


def level_columns(levels: int) -> list[str]:
    """The book-level columns for ``levels`` levels per side, best first.

    >>> level_columns(2)
    ['bid_px_1', 'bid_px_2', 'bid_sz_1', 'bid_sz_2', 'ask_px_1', 'ask_px_2', 'ask_sz_1', 'ask_sz_2']
    """
    return [f"{kind}_{i}" for kind in ("bid_px", "bid_sz", "ask_px", "ask_sz") for i in range(1, levels + 1)]


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


class ReplayFileError(ValueError):
    """A replay file that is missing a part, of another version, or not parquet at all."""


class EpisodeRecorder:
    """The rows of one episode: call ``step(env, info)`` after ``reset`` and every ``step``, then ``finish``."""

    def __init__(self, owner: ReplayRecorder, policy: str, model: str, episode: int) -> None:
        self._owner = owner
        self.policy, self.model, self.episode = policy, model, int(episode)
        self._ts: list[float] = []
        self._scalars: list[tuple[float, ...]] = []
        self._books: list[tuple[Sequence[int], Sequence[float], Sequence[int], Sequence[float]] | None] = []
        self._tick = 1.0

    def step(self, env: Any, info: dict[str, Any]) -> None:
        """Record the state after ``reset`` or a ``step`` (``info`` is what it returned)."""
        frame = env.book_frame(self._owner.levels)
        m = info["market"]
        self._ts.append(float(m["ts"]))
        self._scalars.append((
            _f(m.get("mid")), _f(m.get("best_bid")), _f(m.get("best_ask")),
            _f(frame["bid_quote_px"]), _f(frame["ask_quote_px"]),
            _f(frame["bid_quote_size"]), _f(frame["ask_quote_size"]),
            _f(frame["bid_queue_ahead"]), _f(frame["ask_queue_ahead"]),
            float(info.get("inventory", 0.0)), float(info.get("pnl", 0.0)), float(frame["fees"]),
        ))
        self._tick = float(frame["tick_size"])
        # The last step (info carries "episode"): the env has already replayed past the episode's
        # end to resolve the markouts, so its book is no longer this instant's; leave it empty.
        self._books.append(None if "episode" in info else
                           (frame["bid_ticks"], frame["bid_sz"], frame["ask_ticks"], frame["ask_sz"]))

    def _levels(self, n: int) -> np.ndarray:
        """The recorded books as an ``(n, 4 * levels)`` array: bid prices, bid sizes, ask prices, ask sizes."""
        k = self._owner.levels
        out = np.full((n, 4 * k), np.nan)
        for i, book in enumerate(self._books):
            if book is None:
                continue
            for j, vals in enumerate(book):
                if len(vals):
                    out[i, j * k:j * k + len(vals)] = vals
        for j in (0, 2):  # ticks -> quote units, once per episode
            out[:, j * k:(j + 1) * k] = np.round(out[:, j * k:(j + 1) * k] * self._tick, 12)
        return out

    def finish(self, episode: dict[str, Any]) -> None:
        """Close the episode with the env's ``info["episode"]`` (its fills and their markouts) and hand it over."""
        owner = self._owner
        ts = np.asarray(self._ts, dtype=np.float64)
        n = len(ts)
        cols: dict[str, np.ndarray] = {"ts": ts, "step": np.arange(n, dtype=np.int32)}
        scal = np.asarray(self._scalars, dtype=np.float64).reshape(n, len(STEP_COLUMNS))
        cols.update({c: scal[:, j] for j, c in enumerate(STEP_COLUMNS)})
        lv = self._levels(n)
        cols.update({c: lv[:, j] for j, c in enumerate(level_columns(owner.levels))})
        owner._write(self, "step", n, cols)
        fills = episode.get("fills") or []
        if not fills:
            return
        horizons = [float(h) for h in episode.get("markout_horizons_ms", owner.horizons)]
        if horizons != owner.horizons:
            raise ValueError(f"episode markout horizons {horizons} differ from the file's {owner.horizons}")
        fts = np.array([float(f["ts"]) for f in fills])
        marks = np.array([[_f(v) for v in (f.get("markouts_bps") or [None] * len(horizons))] for f in fills],
                         dtype=np.float64).reshape(len(fills), len(horizons))
        fcols: dict[str, np.ndarray] = {
            "ts": fts,
            "step": np.minimum(np.searchsorted(ts, fts, side="left"), max(n - 1, 0)).astype(np.int32),
            "side": np.array([int(f["side"]) for f in fills], dtype=np.int8),
            "price": np.array([float(f["price"]) for f in fills]),
            "size": np.array([float(f["size"]) for f in fills]),
            "maker": np.array([bool(f["maker"]) for f in fills]),
            "fee": np.array([float(f["fee"]) for f in fills]),
            "fill_mid": np.array([_f(f.get("mid")) for f in fills]),
        }
        fcols.update({_markout_col(h): marks[:, j] for j, h in enumerate(horizons)})
        owner._write(self, "fill", len(fills), fcols)


def _markout_col(h_ms: float) -> str:
    import utils

    return f"markout_bps_{utils.horizon_label(float(h_ms))}"


class ReplayRecorder:
    """Collects the recorded episodes of an evaluation into ``path``, written atomically.

    A context manager: finished episodes are appended to a temporary file in ``path``'s
    folder in parquet row groups of about ``ROW_GROUP_ROWS`` rows (memory stays bounded by
    one row group), and on a clean exit the
    file is renamed to ``path`` (``utils.atomic_open``); on an exception it is removed and
    ``path`` keeps its old content. With no episode recorded nothing is written.

    Args:
        path: the file to write (``<evaluation folder>/replay.parquet``).
        levels: book levels kept per side.
        episodes: record the first ``episodes`` episodes of every policy and model (``None``:
            all of them).
        horizons_ms: the markout horizons of the evaluation (one column each).
    """

    def __init__(self, path: str | os.PathLike, levels: int = 10, episodes: int | None = None,
                 horizons_ms: Sequence[float] = ()) -> None:
        if levels < 1:
            raise ValueError(f"replay levels must be >= 1, got {levels}")
        self.path = Path(path)
        self.levels = int(levels)
        self.episodes = episodes
        self.horizons = [float(h) for h in horizons_ms]
        self.n_episodes = 0
        self._stack = contextlib.ExitStack()
        self._writer: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0
        self.schema = _schema(self.levels, self.horizons)

    def __enter__(self) -> ReplayRecorder:
        return self

    def __exit__(self, *exc: Any) -> bool:
        try:
            if self._writer is not None:
                if exc[0] is None:
                    self._flush()
                self._writer.close()  # the footer; the temp file is dropped below on an exception
        finally:
            self._writer = None
            return self._stack.__exit__(*exc)  # noqa: B012 - the rename (or removal) must run

    def wants(self, episode: int) -> bool:
        """Whether episode number ``episode`` (0-based) of a policy is recorded."""
        return self.episodes is None or episode < self.episodes

    def episode(self, policy: str, model: str, episode: int) -> EpisodeRecorder:
        """A recorder for one episode of ``policy`` (``model``: its model name, empty for a baseline)."""
        return EpisodeRecorder(self, policy, model, episode)

    def _write(self, ep: EpisodeRecorder, record: str, n: int, cols: dict[str, np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        import utils

        if self._writer is None:
            fh = self._stack.enter_context(utils.atomic_open(self.path))
            self._writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        keys = {"policy": [ep.policy] * n, "model": [ep.model] * n,
                "episode": np.full(n, ep.episode, dtype=np.int32), "record": [record] * n}
        arrays = []
        for field in self.schema:
            v = keys.get(field.name, cols.get(field.name))
            arrays.append(pa.nulls(n, field.type) if v is None else pa.array(v, type=field.type))
        self._pending.append(pa.Table.from_arrays(arrays, schema=self.schema))
        self._pending_rows += n
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()
        if record == "step":
            self.n_episodes += 1

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending))
        self._pending, self._pending_rows = [], 0


def _schema(levels: int, horizons: Sequence[float]) -> Any:
    import pyarrow as pa

    f64 = pa.float64()
    fields = [pa.field("policy", pa.string()), pa.field("model", pa.string()),
              pa.field("episode", pa.int32()), pa.field("record", pa.string()),
              pa.field("step", pa.int32()), pa.field("ts", f64)]
    fields += [pa.field(c, f64) for c in (*STEP_COLUMNS, *level_columns(levels))]
    fields += [pa.field("side", pa.int8()), pa.field("price", f64), pa.field("size", f64),
               pa.field("maker", pa.bool_()), pa.field("fee", f64), pa.field("fill_mid", f64)]
    fields += [pa.field(_markout_col(h), f64) for h in horizons]
    meta = {"version": VERSION, "levels": int(levels), "markout_horizons_ms": [float(h) for h in horizons]}
    return pa.schema(fields, metadata={_META_KEY: json.dumps(meta).encode()})


# --------------------------------------------------------------------------- reading


class ReplayMeta(NamedTuple):
    """What ``read_meta`` returns."""

    levels: int
    markout_horizons_ms: list[float]
    n_rows: int


def _parquet_file(path: str | os.PathLike) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise ReplayFileError(f"{path}: no replay file (evaluations made before it existed have none)") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReplayFileError(f"{path}: not a readable parquet file ({exc})") from None


def read_meta(path: str | os.PathLike) -> ReplayMeta:
    """The file's levels, markout horizons and row count.

    Raises:
        ReplayFileError: the file is missing, not parquet, or not a replay file.
    """
    pf = _parquet_file(path)
    raw = (pf.schema_arrow.metadata or {}).get(_META_KEY)
    if raw is None:
        raise ReplayFileError(f"{path}: a parquet file without the {_META_KEY.decode()} metadata (not a replay file)")
    meta = json.loads(raw)
    if int(meta.get("version", 0)) != VERSION:
        raise ReplayFileError(f"{path}: replay file version {meta.get('version')}, this dashboard reads {VERSION}")
    return ReplayMeta(int(meta["levels"]), [float(h) for h in meta["markout_horizons_ms"]], pf.metadata.num_rows)


def _read(path: str | os.PathLike, columns: Sequence[str] | None, filters: Any) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        df = pq.read_table(path, columns=list(columns) if columns else None, filters=filters).to_pandas()
    except (pa.ArrowInvalid, OSError, KeyError) as exc:
        raise ReplayFileError(f"{path}: cannot be read ({exc})") from None
    for c in ("policy", "model", "record"):
        if c in df and isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df


def read_index(path: str | os.PathLike) -> pd.DataFrame:
    """One row per recorded episode: ``policy``, ``model``, ``episode``, ``start_ts``, ``n_steps``, ``n_fills``.

    Raises:
        ReplayFileError: the file cannot be read.
    """
    read_meta(path)
    df = _read(path, ["policy", "model", "episode", "record", "ts"], None)
    g = df.groupby(["policy", "model", "episode"], sort=False)
    out = g.agg(start_ts=("ts", "min")).reset_index()
    counts = df.groupby(["policy", "model", "episode", "record"], sort=False).size().unstack(fill_value=0)
    out = out.join(counts, on=["policy", "model", "episode"])
    out = out.rename(columns={"step": "n_steps", "fill": "n_fills"})
    for c in ("n_steps", "n_fills"):
        out[c] = out[c].astype(int) if c in out else 0
    return out


def read_episode(path: str | os.PathLike, policy: str, model: str, episode: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame, ReplayMeta]:
    """``(steps, fills, meta)`` of one recorded episode, each sorted by time.

    Raises:
        ReplayFileError: the file cannot be read.
    """
    meta = read_meta(path)
    df = _read(path, None, [("policy", "=", policy), ("model", "=", model), ("episode", "=", int(episode))])
    steps = df[df["record"] == "step"].sort_values("step").reset_index(drop=True)
    fills = df[df["record"] == "fill"].sort_values("ts").reset_index(drop=True)
    fill_cols = [*KEY_COLUMNS, *FILL_COLUMNS, *[_markout_col(h) for h in meta.markout_horizons_ms]]
    step_cols = [*KEY_COLUMNS, *STEP_COLUMNS, *level_columns(meta.levels)]
    return steps[step_cols], fills[[c for c in fill_cols if c in fills]], meta
