"""Market-making Gymnasium environment on replayed Level-2 data with a simulated exchange.

One job: let a policy quote into a replayed order book, step it through time, and report
what happened (observation, reward, episode statistics). The parts it wires together each
have their own home:

- ``sim_exchange``: the agent's orders (queue, fill and latency models, fees, position);
  configured by ``sim_exchange.ExchangeConfig``.
- ``reward``: the reward, every term in one unit; configured by ``reward.RewardConfig``.
- ``market_features``: the causal feature vector; configured by ``market_features.FeatureConfig``.
- ``order_book`` / ``data_processor``: the replayed book and the recording.

Public names:

- ``EnvConfig``: every setting of the environment (frozen dataclass, a docstring per field),
  with the three configs above nested (``exchange``, ``reward_config``, ``features``); every
  leaf keeps a unique name, so ``MarketMakingEnv(maker_fee_bps=...)`` and the CLI flag
  ``--maker_fee_bps`` address it directly (``utils.replace_flat``).
- ``MarketMakingEnv``: the ``gymnasium.Env`` (registered as ``MarketMaking-v0``).
- ``DISCRETE_ACTIONS``, ``BOOK_CHANNELS``, ``OBS_FEATURE_NAMES``, ``AGENT_FEATURE_NAMES``:
  the meaning of every action index and observation column.
- ``config_fields()``: the leaf names of ``EnvConfig``.

The fill rules and their limits are written out as numbered conditions in
``sim_exchange.SimExchange``; the latency, markout and reward definitions in the
``MarketMakingEnv`` docstring and in the README section "The market simulator".
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from data_processor import Replay
from market_features import FEATURE_NAMES, N_FEATURES, FeatureConfig, MarketFeatures
from messages import ASK, BID, KIND_OF_CLASS, ORDER, TRADE, message_kind
from reward import Reward, RewardConfig
from sim_exchange import FILL_MODELS, ExchangeConfig, Fill, MarkoutTracker, SimExchange, markout_bps
from utils import check_settings, flat_field_paths, horizon_label, replace_flat

logger = logging.getLogger(__name__)

_EPS = 1e-12

DISCRETE_OFFSETS: tuple[int, ...] = (0, 1, 2, -1, -2)
"""Tick offsets of the discrete quote actions: join, 1 and 2 behind, 1 and 2 inside."""


def _build_discrete_actions() -> tuple[str, ...]:
    names = ["hold"]
    names += [f"bid_offset_{o:+d}" for o in DISCRETE_OFFSETS]
    names += [f"ask_offset_{o:+d}" for o in DISCRETE_OFFSETS]
    names += ["cancel_bid", "cancel_ask", "cancel_all", "market_buy", "market_sell"]
    names += [f"both_offset_{o:+d}" for o in DISCRETE_OFFSETS]
    return tuple(names)


DISCRETE_ACTIONS: tuple[str, ...] = _build_discrete_actions()
"""Name of every discrete action index (see the table in ``MarketMakingEnv``)."""
_N_DISCRETE = len(DISCRETE_ACTIONS)

BOOK_CHANNELS: tuple[str, ...] = ("bid_distance_ticks", "bid_size_lots", "ask_distance_ticks", "ask_size_lots")
"""Channels of the ``book`` observation (last axis)."""

OBS_FEATURE_NAMES: tuple[str, ...] = ("mid_change_ticks", "microprice_minus_mid_ticks") + FEATURE_NAMES[2:]
"""Columns of the ``features`` observation: ``market_features.FEATURE_NAMES`` with the two
price levels replaced by distances (row mid minus the current mid; microprice minus mid)."""

AGENT_FEATURE_NAMES: tuple[str, ...] = (
    "inventory_frac", "cash_lots", "pnl_tick_lots", "time_left",
    "bid_active", "bid_offset_ticks", "bid_queue_ahead_lots",
    "ask_active", "ask_offset_ticks", "ask_queue_ahead_lots",
)
"""Columns of the ``agent`` observation."""


# ============================================================================ configuration
@dataclass(frozen=True)
class EnvConfig:
    """Every setting of ``MarketMakingEnv``. Field types are kept CLI-friendly.

    The exchange, reward and feature settings are nested configs (``exchange``,
    ``reward_config``, ``features``), each validated by its own class; address their leaves
    by name through ``utils.replace_flat`` or ``MarketMakingEnv(**overrides)``.
    """

    data_path: str = ""
    """Recording to replay: a file, or several files joined with ``os.pathsep`` (read by ``data_processor.Replay``); a list/tuple of paths is accepted and joined into that form."""
    symbol: str | None = None
    """Symbol to trade; None = the only symbol of the recording."""
    tick_size: float | None = None
    """Price tick; None = decided by the data layer from the data."""
    action_mode: str = "discrete"
    """"discrete" (``DISCRETE_ACTIONS``) or "continuous" (``[bid_offset, ask_offset]`` ticks)."""
    time_range: tuple[float, float] = (0.0, 1.0)
    """Fractions of the recording's time span in which episodes start and end (train/test split)."""
    episode_length_s: float = 300.0
    """Episode length in seconds of exchange time (truncation)."""
    episode_length_messages: int | None = None
    """Optional episode length in book messages (whichever limit comes first)."""
    decision_interval_ms: float = 100.0
    """Agent acts every this many ms of exchange time; 0 = after every book message."""
    warmup_s: float = 30.0
    """Data replayed before the episode start to warm the features (never after the start)."""
    order_size: float | None = None
    """Order size in base units; None = the median trade size of the data's first messages (``Replay.profile``), rounded to the lot."""
    lot_size: float | None = None
    """Quantity step; None = inferred from the decimals of the sizes in the data (``Replay.profile``)."""
    max_inventory: float = 10.0
    """Hard position limit in multiples of ``order_size``; orders that could breach it are refused."""
    max_loss: float | None = None
    """Terminate when PnL (quote currency) falls to -max_loss; None = never."""
    obs_window: int = 8
    """Decision steps of history in the ``book`` and ``features`` observations."""
    obs_levels: int = 10
    """Book levels per side in the ``book`` observation."""
    continuous_max_offset: float = 10.0
    """Bound of the continuous offsets in ticks: the action box is [-max, max]."""
    continuous_size: bool = False
    """Continuous mode: add bid and ask sizes in [0, 1] x order_size to the action (size < half a lot = no quote)."""
    markout_horizons_ms: tuple[float, ...] = (100.0, 1000.0, 5000.0, 30000.0)
    """Horizons of the fill markouts, ms; the episode keys are ``markout_bps_<utils.horizon_label(h)>``."""
    adverse_selection_horizon_ms: float = 1000.0
    """Horizon at which a maker fill counts as adversely selected (markout < 0); must be one of the markout horizons."""
    realised_spread_horizon_ms: float = 5000.0
    """Horizon of the realised spread; must be one of the markout horizons."""
    cache_dir: str | None = None
    """Replay checkpoint cache folder; None = the data layer's default."""
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    """Fill rule, queue and latency models, fees (``sim_exchange.ExchangeConfig``)."""
    reward_config: RewardConfig = field(default_factory=RewardConfig)
    """Reward variant, unit and penalties (``reward.RewardConfig``)."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Feature windows and buckets (``market_features.FeatureConfig``)."""

    SANE_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "tick_size": (1e-12, 1e9), "episode_length_s": (1e-3, 30 * 86_400.0),
        "decision_interval_ms": (0.0, 86_400_000.0), "warmup_s": (0.0, 86_400.0),
        "order_size": (1e-12, 1e12), "lot_size": (1e-12, 1e12), "max_inventory": (1e-9, 1e9),
        "max_loss": (1e-12, 1e15), "continuous_max_offset": (1e-9, 1e6),
        "markout_horizons_ms": (1e-3, 86_400_000.0), "adverse_selection_horizon_ms": (1e-3, 86_400_000.0),
        "realised_spread_horizon_ms": (1e-3, 86_400_000.0),
    }
    """Sane range of each number (``utils.check_settings``): episodes up to 30 days, horizons and
    decision intervals up to a day, sizes and prices within 1e-12..1e12."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_path", _normalise_data_path(self.data_path))
        object.__setattr__(self, "time_range", tuple(float(x) for x in self.time_range))
        object.__setattr__(self, "markout_horizons_ms", tuple(float(x) for x in self.markout_horizons_ms))
        for name, cls in (("exchange", ExchangeConfig), ("reward_config", RewardConfig), ("features", FeatureConfig)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"EnvConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        if self.action_mode not in ("discrete", "continuous"):
            raise ValueError(f"EnvConfig.action_mode must be one of ('discrete', 'continuous'), got {self.action_mode!r}")
        self._check_ranges()
        self._check_horizons()
        check_settings(self, self.SANE_RANGES)

    def _check_ranges(self) -> None:
        lo, hi = self.time_range if len(self.time_range) == 2 else (math.nan, math.nan)
        if not (0.0 <= lo < hi <= 1.0):
            raise ValueError(f"EnvConfig.time_range must be (lo, hi) with 0 <= lo < hi <= 1, got {self.time_range!r}")
        for name in ("episode_length_s", "max_inventory", "continuous_max_offset"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EnvConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("decision_interval_ms", "warmup_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"EnvConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("order_size", "lot_size", "tick_size", "max_loss"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"EnvConfig.{name} must be > 0 or None, got {value!r}")
        for name in ("obs_window", "obs_levels"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"EnvConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.episode_length_messages is not None and self.episode_length_messages < 1:
            raise ValueError(f"EnvConfig.episode_length_messages must be >= 1 or None, got {self.episode_length_messages!r}")

    def _check_horizons(self) -> None:
        if not self.markout_horizons_ms or min(self.markout_horizons_ms) <= 0:
            raise ValueError(f"EnvConfig.markout_horizons_ms must be positive, got {self.markout_horizons_ms!r}")
        labels = [horizon_label(h) for h in self.markout_horizons_ms]
        if len(set(labels)) != len(labels):
            raise ValueError(f"EnvConfig.markout_horizons_ms has repeated horizons (labels {labels})")
        for name in ("adverse_selection_horizon_ms", "realised_spread_horizon_ms"):
            if getattr(self, name) not in self.markout_horizons_ms:
                raise ValueError(f"EnvConfig.{name}={getattr(self, name)!r} is not one of markout_horizons_ms {self.markout_horizons_ms}")


def config_fields() -> tuple[str, ...]:
    """Leaf names of ``EnvConfig`` (nested configs included): the CLI flags and override names.

    >>> "fill_model" in config_fields() and "reward_unit" in config_fields() and "exchange" not in config_fields()
    True
    """
    return tuple(flat_field_paths(EnvConfig))


def _normalise_data_path(value: Any) -> str:
    """``EnvConfig.data_path`` in its documented form: one string, several files joined by ``os.pathsep``.

    Accepts a string, a path-like object, or a list/tuple of them (a multi-file recording, in order).

    >>> from pathlib import Path
    >>> _normalise_data_path(["a.jsonl", Path("b.jsonl")]) == "a.jsonl" + os.pathsep + "b.jsonl"
    True
    """
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("EnvConfig.data_path: the list of files is empty")
        parts = []
        for item in value:
            if not isinstance(item, str | os.PathLike):
                raise ValueError(f"EnvConfig.data_path: every file must be a str or path, got {item!r}")
            part = os.fspath(item)
            if not part or os.pathsep in part:
                raise ValueError(f"EnvConfig.data_path: bad file name {part!r} in the list "
                                 f"(empty, or containing the path separator {os.pathsep!r})")
            parts.append(part)
        return os.pathsep.join(parts)
    raise ValueError(f"EnvConfig.data_path must be a path or a list/tuple of paths, got {value!r}")


# ============================================================================ environment
class MarketMakingEnv(gym.Env):
    """Market making on a replayed Level-2 book, with a simulated exchange for the agent's orders.

    ## Description

    A market maker quotes into a replayed Level-2 order book of a real (or synthetic)
    recording. The agent's orders live in a simulated exchange beside the replayed book
    (``sim_exchange.SimExchange``): limit orders rest with an estimated queue position,
    market orders walk the visible levels, every action pays order-entry/cancel latency,
    fills pay maker/taker fees, and every fill is marked out against the later mid. The
    replayed book does not react to the agent (see "What replay cannot model" in
    ``SimExchange``).

    ## Action Space

    ``action_mode="discrete"``: ``Discrete(21)``. Offsets o are in ticks from the same-side
    best price (o > 0 behind, o < 0 inside the spread, clamped so a quote never crosses).
    A new quote on a side replaces (cancel + new order) the side's current quote unless it is
    already at that price; size = ``order_size``.

    | index | action | effect |
    |-------|--------|--------|
    | 0 | hold | nothing |
    | 1–5 | bid at o = 0, +1, +2, −1, −2 | bid at best bid − o |
    | 6–10 | ask at o = 0, +1, +2, −1, −2 | ask at best ask + o |
    | 11 / 12 / 13 | cancel bid / ask / both | |
    | 14 / 15 | market buy / sell | walks the asks / bids (VWAP), taker fee |
    | 16–20 | bid and ask at o = 0, +1, +2, −1, −2 | both sides |

    ``action_mode="continuous"``: ``Box(-M, M, (2,))`` with M = ``continuous_max_offset``:

    | index | meaning | min | max | unit |
    |-------|---------|-----|-----|------|
    | 0 | bid offset (rounded to an int) | −M | M | ticks behind the best bid |
    | 1 | ask offset | −M | M | ticks behind the best ask |
    | 2, 3 | bid / ask size (only with ``continuous_size``) | 0 | 1 | × order_size; < half a lot = no quote |

    ## Observation Space

    ``Dict`` of float32 arrays, bounds ±inf and not normalised here: the agent normalises
    them with its own running statistics (``ppo_agent.PPOAgent.obs_rms``), saved with the
    model and frozen in evaluation.

    | key | shape | content |
    |-----|-------|---------|
    | ``book`` | (obs_window, obs_levels, 4) | per decision step and level: bid distance below the mid (ticks), bid size (÷ order_size), ask distance above the mid (ticks), ask size (÷ order_size); empty levels 0 |
    | ``features`` | (obs_window, 16) | ``OBS_FEATURE_NAMES``: the ``market_features`` vector, with mid as the change to the current mid (ticks) and microprice as microprice − mid (ticks) |
    | ``agent`` | (10,) | ``AGENT_FEATURE_NAMES``: inventory / max_inventory, cash ÷ (mid·order_size), PnL (tick·lots), time left (1 → 0), and per side: quote active (0/1), offset from the same-side best (ticks), queue ahead (÷ order_size) |

    Rows are oldest first; the last row is now.

    ## Rewards

    Computed by ``reward.Reward`` (formulas and units in the ``reward`` module). With equity
    E = cash + inventory · mid (quote currency, fees deducted from cash), per step, in quote
    currency:

    | ``reward`` | r_t |
    |---|---|
    | "pnl" | E_t − E_{t−1} |
    | "pnl_inventory_penalty" | E_t − E_{t−1} − γ · σ² · q² · dt · tick_size · order_size |

    σ: ticks per √s from the long realised volatility; q: inventory in lots (÷ order_size);
    dt: seconds since the last decision; γ = ``inventory_penalty_gamma``. In the last step E
    includes the liquidation (taker fee and book walk) and κ · q_T² · tick_size · order_size
    is subtracted (κ = ``terminal_inventory_penalty``, q_T the position before the
    liquidation). The spread captured and the fees enter through E (no fill bonus, no
    separate markout term). ``reward_unit``: "tick_lots" divides the whole sum by
    tick_size · order_size (one tick earned on one order = 1), "quote" keeps it. Unbounded.

    ## Starting State

    Episodes start at a time drawn uniformly (``self.np_random``) from
    ``[lo, hi − episode_length]`` of the recording's span, where (lo, hi) = ``time_range``;
    ``reset(options={"start_ts": t_ms})`` starts at a given time. The book is rebuilt at the
    start from ``data_processor.Replay``; features are warmed on the ``warmup_s`` before it.
    Flat position, zero cash, no orders. Recorded gaps (``Replay.gaps``: a recorder's
    reconnect) are never spanned: a start inside one moves to its resumption snapshot, and the
    warm-up never reaches back across one.

    ## Episode End

    - Termination: PnL ≤ −``max_loss`` (if set).
    - Truncation: ``episode_length_s`` (or ``episode_length_messages``) reached, the end of
      ``time_range`` reached, the last message before a recorded gap reached, or the data ends. Both close the episode by cancelling all
      orders and liquidating the position through the visible book with a taker fee.

    ## Fill and markout rules

    See ``sim_exchange.SimExchange`` for the numbered fill conditions. Latency
    (``sim_exchange`` latency models): an order reaches the book ``entry latency`` after the
    action, a cancel takes effect ``cancel latency`` after it (never before its order
    arrived); events due at the same millisecond as a market message are processed after it.
    Markout at horizon h of a fill = side · (mid(t+h) − price) / price · 1e4 bps, keyed
    ``markout_bps_<utils.horizon_label(h)>``; the episode keeps replaying after its end
    (agent flat) until every horizon resolves or the data ends. Adverse-selection ratio =
    share of maker fills with a negative markout at ``adverse_selection_horizon_ms``.
    Realised spread = mean over maker fills of 2 · side · (mid(t+h) − price) / mid(t) · 1e4
    at ``realised_spread_horizon_ms``. ``info["episode"]["fills"]`` lists every fill with its
    markouts (one per ``info["episode"]["markout_horizons_ms"]``, None if unresolved).

    ## Arguments

    ``MarketMakingEnv(config=None, **overrides)``: ``config`` an ``EnvConfig`` (default
    ``EnvConfig()``) and ``overrides`` any of its leaf names, nested ones included
    (``gymnasium.make("MarketMaking-v0", data_path=..., fill_model="bbo_cross")``).

    | settings | class | leaves (defaults in each class) |
    |---|---|---|
    | data, episode, actions, observation, markouts | ``EnvConfig`` | ``data_path``, ``symbol``, ``time_range``, ``episode_length_s``, ``decision_interval_ms``, ``order_size``, ``max_inventory``, ``obs_window``, ``markout_horizons_ms``, ... |
    | fills, queue, latency, fees | ``sim_exchange.ExchangeConfig`` (``exchange``) | ``fill_model``, ``queue_model``, ``queue_power``, ``entry_latency_ms``, ``cancel_latency_ms``, ``latency_distribution``, ``latency_sigma``, ``maker_fee_bps``, ``taker_fee_bps`` |
    | reward | ``reward.RewardConfig`` (``reward_config``) | ``reward``, ``reward_unit``, ``inventory_penalty_gamma``, ``terminal_inventory_penalty`` |
    | features | ``market_features.FeatureConfig`` (``features``) | ``ofi_window_ms``, ``trade_window_ms``, ``vol_short_ms``, ``vol_long_ms``, ``vpin_bucket_volume``, ``vpin_buckets``, ``kyle_interval_ms``, ``kyle_window``, ``spread_window_ms``, ``slope_levels`` |

    ## Version History

    - v0: initial version. Issue 11 (same name, same numbers for ``reward_unit="tick_lots"``):
      nested configs, the inventory penalties converted to quote currency with
      ``reward_unit="quote"`` (they were subtracted in tick-lots), per-fill markouts in
      ``info["episode"]["fills"]``.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: EnvConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config if config is not None else EnvConfig()
        if overrides:
            config = replace_flat(config, **overrides)
        if not config.data_path:
            raise ValueError("EnvConfig.data_path is required (a recording readable by data_processor)")
        self.config = config
        paths = config.data_path.split(os.pathsep) if os.pathsep in config.data_path else config.data_path
        fifo = getattr(FILL_MODELS[config.exchange.fill_model], "uses_orders", False)
        self._replay = Replay(paths, config.symbol, tick_size=config.tick_size, cache_dir=config.cache_dir,
                              order_level=fifo)
        if fifo and not self._replay.feed_order_level:
            raise ValueError(f"fill_model={config.exchange.fill_model!r} needs order-level data (LOBSTER, Bitstamp "
                             f"order logs); {config.data_path} is an L2 recording: use 'queue' or 'bbo_cross'")
        self.symbol = self._replay.symbol
        self.tick_size = float(self._replay.tick_size)
        self._size_from_profile(config)
        self._feature_config = config.features.resolve_vpin_bucket(self._replay.profile.median_trade_size,
                                                                   self.lot_size)
        self._reward = Reward(config.reward_config, self.tick_size, self.order_size)
        self._horizons = config.markout_horizons_ms
        self._markout_keys = tuple(f"markout_bps_{horizon_label(h)}" for h in self._horizons)
        self._as_idx = self._horizons.index(config.adverse_selection_horizon_ms)
        self._rs_idx = self._horizons.index(config.realised_spread_horizon_ms)
        self._build_spaces(config)
        span = self._replay.end_ts - self._replay.start_ts
        lo, hi = config.time_range
        self.range_start_ts = self._replay.start_ts + int(lo * span)
        self.range_end_ts = self._replay.start_ts + int(hi * span)
        self._ep_ms = config.episode_length_s * 1000.0
        if self.range_end_ts - self.range_start_ts < self._ep_ms:
            warnings.warn(f"time_range {config.time_range} covers {(self.range_end_ts - self.range_start_ts) / 1000:.1f} s "
                          f"of data, less than episode_length_s={config.episode_length_s}: episodes span the whole range",
                          stacklevel=2)
        self._book = None
        self._started = False

    def _size_from_profile(self, config: EnvConfig) -> None:
        """Trade presence, lot and order size from the recording's ``Replay.profile`` (read once)."""
        prof = self._replay.profile
        self.has_trades = prof.has_trades
        self.lot_size = float(config.lot_size) if config.lot_size else float(prof.lot_size)
        order_size = float(config.order_size) if config.order_size else max(prof.median_trade_size, prof.lot_size)
        self.order_size = round(max(self.lot_size, round(order_size / self.lot_size) * self.lot_size), 10)
        self.max_inventory_units = config.max_inventory * self.order_size
        if not self.has_trades and FILL_MODELS[config.exchange.fill_model].uses_queue:
            warnings.warn(f"{config.data_path}: no trades in the first {prof.n_messages_scanned} messages; the "
                          f"{config.exchange.fill_model!r} fill model falls back to treating level decreases at "
                          "our price as executions (optimistic)", stacklevel=3)

    def _build_spaces(self, config: EnvConfig) -> None:
        w, lv = config.obs_window, config.obs_levels
        self.observation_space = spaces.Dict({
            "book": spaces.Box(-np.inf, np.inf, (w, lv, 4), np.float32),
            "features": spaces.Box(-np.inf, np.inf, (w, N_FEATURES), np.float32),
            "agent": spaces.Box(-np.inf, np.inf, (len(AGENT_FEATURE_NAMES),), np.float32),
        })
        self._discrete = config.action_mode == "discrete"
        if self._discrete:
            self.action_space = spaces.Discrete(len(DISCRETE_ACTIONS))
        else:
            m = config.continuous_max_offset
            low = [-m, -m] + ([0.0, 0.0] if config.continuous_size else [])
            high = [m, m] + ([1.0, 1.0] if config.continuous_size else [])
            self.action_space = spaces.Box(np.array(low, np.float32), np.array(high, np.float32), dtype=np.float32)

    # ----------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start an episode at a seeded random time (or ``options["start_ts"]``, ms)."""
        super().reset(seed=seed)
        cfg = self.config
        start, hi = self._episode_start(options or {})
        start, hi, warm_floor = self._around_gaps(start, hi)
        self.start_ts = start
        self.end_ts = min(start + self._ep_ms, hi)
        warm_from = max(self._replay.start_ts, warm_floor, int(start - cfg.warmup_s * 1000))
        self._book, self._it = self._replay.start_at(warm_from)
        self._pending = None
        self._last_ts = None
        self._exhausted = False
        self._feats = MarketFeatures(self._feature_config)
        if self._book.best_bid() is not None and self._book.best_ask() is not None:
            self._feats.on_book(self._book, warm_from)
        else:   # keep the features' best bid/ask equal to the book's (the env reads them there)
            self._feats.best_bid, self._feats.best_ask = self._book.best_bid(), self._book.best_ask()
        self._ex = SimExchange(self.tick_size, cfg.exchange, has_trades=self.has_trades, lot_size=self.lot_size,
                               rng=self.np_random)
        self._mk = MarkoutTracker(self._horizons)
        self._episode_fills: list[Fill] = []
        self._step_fills: list[Fill] = []
        self._n_book = 0
        self._steps = 0
        self._refused = 0
        self._inv_samples: list[float] = []
        self._quoted_steps = [0, 0]  # decision steps ending with a resting bid / ask quote
        self._reset_rings()
        grid = cfg.decision_interval_ms or 100.0
        for k in range(cfg.obs_window - 1, -1, -1):
            self._advance(start - k * grid)
            self._record_row(start - k * grid)
        self._ex.drain_fills()
        self._now = float(start)
        self._n_book = 0
        self._equity = 0.0
        self._started = True
        return self._observation(), self._info(done=False)

    def _episode_start(self, options: dict[str, Any]) -> tuple[int, int]:
        """``(start_ts, latest end)`` of the next episode: ``options["start_ts"]`` or a seeded draw."""
        if "start_ts" in options and options["start_ts"] is not None:
            start = int(options["start_ts"])
            if not (self._replay.start_ts <= start < self._replay.end_ts):
                raise ValueError(f"start_ts={start} is outside the recording [{self._replay.start_ts}, {self._replay.end_ts})")
            if not (self.range_start_ts <= start < self.range_end_ts):
                warnings.warn(f"start_ts={start} lies outside time_range {self.config.time_range}", stacklevel=3)
            return start, (self.range_end_ts if start < self.range_end_ts else self._replay.end_ts)
        latest = self.range_end_ts - self._ep_ms
        if latest <= self.range_start_ts:
            return self.range_start_ts, self.range_end_ts
        return self.range_start_ts + int(self.np_random.integers(0, int(latest - self.range_start_ts) + 1)), self.range_end_ts

    def _around_gaps(self, start: int, hi: int) -> tuple[int, int, int]:
        """Keep an episode off the recording's recorded gaps (``Replay.gaps``).

        A start inside a gap moves to the resumption snapshot; the episode ends at the last
        message before the next gap (truncation); features warm up from the last resumption
        at or before the start, never across a gap. Returns ``(start, latest end, warm-up floor)``.
        """
        floor = 0
        for before, after in self._replay.gaps:
            if before < start < after:
                start = after
            if after <= start:
                floor = after
            elif before < hi:
                hi = max(before, start)
        return start, hi, floor

    def _reset_rings(self) -> None:
        w, lv = self.config.obs_window, self.config.obs_levels
        # Double-length rings: row r is written at r and r + w, so the window oldest-first is
        # the contiguous slice [i + 1, i + 1 + w) after writing at i (one copy per observation).
        self._book_buf = np.zeros((2 * w, lv, 4), np.float32)
        self._book_flat = self._book_buf.reshape(2 * w, lv * 4)
        self._feat_buf = np.zeros((2 * w, N_FEATURES), np.float32)
        self._mid_buf = np.zeros(2 * w, np.float64)      # feature 0 (mid) kept exact for the change vs now
        self._ring_idx = -1
        self._book_zeros = [0.0] * (lv * 4)
        self._depth_n = max(lv, 10, self._feature_config.slope_levels)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        """Apply ``action`` now, replay the market to the next decision time, return the usual 5-tuple."""
        assert self._started, "call reset() before step()"
        if self._discrete and not (type(action) is int and 0 <= action < _N_DISCRETE):
            assert self.action_space.contains(action), f"invalid action {action!r}"
        cfg = self.config
        self._step_fills = []
        self._apply_action(action)
        t0 = self._now
        if cfg.decision_interval_ms > 0:
            target = min(t0 + cfg.decision_interval_ms, self.end_ts)
            self._advance(target)
        else:
            n_book = self._advance(self.end_ts, max_book=1)
            target = max(t0, self._last_ts) if n_book else self.end_ts
        self._ex.process_events(target, self._book, self._feats.mid, inclusive=True)
        self._collect()
        self._now = float(target)
        self._steps += 1
        self._record_row(self._now)
        inv = self._ex.position
        self._inv_samples.append(inv)
        self._quoted_steps[0] += self._ex.quote(BID) is not None
        self._quoted_steps[1] += self._ex.quote(ASK) is not None
        equity = self._mark(self._feats.mid)
        rw = self._reward
        sigma = self._feats.sigma_per_sqrt_s(int(self._now)) if rw.uses_sigma else 0.0
        reward = rw.step(equity - self._equity, inv, (self._now - t0) / 1000.0, sigma)
        self._equity = equity
        terminated = cfg.max_loss is not None and equity <= -cfg.max_loss
        truncated = (not terminated) and (
            self._now >= self.end_ts or self._exhausted
            or (cfg.episode_length_messages is not None and self._n_book >= cfg.episode_length_messages))
        done = terminated or truncated
        obs = self._observation()
        if done:
            reward += self._close_episode()
        info = self._info(done=False)
        if done:
            self._finish_markouts()
            info["episode"] = self._episode_stats()
        return obs, float(rw.to_unit(reward)), bool(terminated), bool(truncated), info

    # ----------------------------------------------------------------- actions
    def _apply_action(self, action: Any) -> None:
        if self._discrete:
            self._apply_discrete(action)
            return
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape[0] != self.action_space.shape[0] or not np.all(np.isfinite(act)):
            raise ValueError(f"continuous action must be {self.action_space.shape} finite floats, got {action!r}")
        act = np.clip(act, self.action_space.low, self.action_space.high)
        sizes = (self.order_size, self.order_size)
        if self.config.continuous_size:
            sizes = tuple(round(float(s) * self.order_size / self.lot_size) * self.lot_size for s in act[2:4])
        for side, off, size in ((BID, act[0], sizes[0]), (ASK, act[1], sizes[1])):
            if size < self.lot_size * 0.5:
                self._ex.cancel_side(self._now, side)
            else:
                self._quote(side, int(np.rint(off)), size)

    def _apply_discrete(self, action: Any) -> None:
        a = int(action)
        if not 0 <= a < _N_DISCRETE:
            raise ValueError(f"discrete action must be in [0, {_N_DISCRETE}), got {action!r}")
        n = len(DISCRETE_OFFSETS)
        ex, now = self._ex, self._now
        if 1 <= a <= n:
            self._quote(BID, DISCRETE_OFFSETS[a - 1], self.order_size)
        elif n < a <= 2 * n:
            self._quote(ASK, DISCRETE_OFFSETS[a - 1 - n], self.order_size)
        elif a in (2 * n + 1, 2 * n + 3):
            ex.cancel_side(now, BID)
            if a == 2 * n + 3:
                ex.cancel_side(now, ASK)
        elif a == 2 * n + 2:
            ex.cancel_side(now, ASK)
        elif a in (2 * n + 4, 2 * n + 5):
            self._market(BID if a == 2 * n + 4 else ASK)
        elif a > 2 * n + 5:
            off = DISCRETE_OFFSETS[a - 2 * n - 6]
            self._quote(BID, off, self.order_size)
            self._quote(ASK, off, self.order_size)

    def _quote(self, side: int, offset: int, size: float) -> None:
        bb, ba = self._feats.best_bid, self._feats.best_ask
        if bb is None or ba is None:
            return
        if side == BID:
            price = min(bb[0] - offset, ba[0] - 1)
        else:
            price = max(ba[0] + offset, bb[0] + 1)
        ex = self._ex
        current = ex.quote(side)
        if current is not None and current.price == price:
            return
        if current is not None:
            ex.cancel(self._now, current)
        worst = ex.position + side * (ex.exposure(side) + size)
        if abs(worst) > self.max_inventory_units * (1 + 1e-9):
            self._refused += 1
            return
        ex.submit_limit(self._now, side, price, size)

    def _market(self, side: int) -> None:
        if abs(self._ex.position + side * self.order_size) > self.max_inventory_units * (1 + 1e-9):
            self._refused += 1
            return
        self._ex.submit_market(self._now, side, self.order_size)

    # ----------------------------------------------------------------- market replay
    def _advance(self, target: float, max_book: int | None = None) -> int:
        """Replay every message with ``ts <= target`` (or up to ``max_book`` book messages).

        Every message goes to the exchange (``on_book`` applies book messages to the book,
        whether or not orders are live), then to the features.
        """
        it, ex, feats, mk, book = self._it, self._ex, self._feats, self._mk, self._book
        cache = KIND_OF_CLASS
        msg = self._pending
        n_book = 0
        last_ts = self._last_ts
        while True:
            if msg is None:
                msg = next(it, None)
                if msg is None:
                    self._exhausted = True
                    break
            ts = msg.ts
            if ts > target:
                break
            if ts > ex.next_event_ts:
                ex.process_events(ts, book, feats.mid)
            if ts > mk.next_due:
                mk.resolve(ts, feats.mid)
            kind = cache.get(type(msg)) or message_kind(msg)
            if kind == ORDER:
                ex.on_order(msg, feats.mid)
            elif kind == TRADE:
                ex.on_trade(ts, msg.side, msg.price, msg.size, feats.mid)
                feats.on_trade(ts, msg.side, msg.size)
            else:
                ex.on_book(book, msg, feats.mid)
                feats.on_book(book, ts)
                n_book += 1
            if ex.fills:
                self._collect()
            last_ts = ts
            msg = None
            if max_book is not None and n_book >= max_book:
                break
        self._pending = msg
        self._last_ts = last_ts
        self._n_book += n_book
        if ex.fills:
            self._collect()
        return n_book

    def _collect(self) -> None:
        for f in self._ex.drain_fills():
            self._mk.add(f)
            self._episode_fills.append(f)
            self._step_fills.append(f)

    def _mark(self, mid: float | None) -> float:
        """Equity E = cash + position · mid (quote currency); the last value while a side is empty."""
        if mid is None:
            return self._equity
        return self._ex.cash + self._ex.position * mid * self.tick_size

    def _close_episode(self) -> float:
        """Cancel everything and liquidate; returns the closing reward (quote currency, ``Reward.close``)."""
        ex = self._ex
        mid = self._feats.mid
        pos_before = ex.position
        self._unrealised_at_end = self._unrealised(mid)
        self._pnl_before_liq = self._mark(mid)
        ex.cancel_all_now()
        self._liq_cost, self._liq_fee = ex.liquidate(self._book, self._now, mid)
        self._collect()
        equity = self._mark(mid)
        delta = self._reward.close(equity - self._equity, pos_before)
        self._equity = equity
        return delta

    def _finish_markouts(self) -> None:
        """Keep replaying (agent flat, no orders) until every markout horizon resolved or the data ended.

        Horizons beyond the data stay unresolved and are left out of the averages.
        """
        self._step_fills = []
        if self._mk.pending and not self._exhausted:
            self._advance(self._mk.last_due() + 1)

    def _unrealised(self, mid: float | None) -> float:
        """Mark-to-mid value of the open position against its average entry price (quote currency)."""
        q = self._ex.position
        if abs(q) <= _EPS or mid is None:
            return 0.0
        # average entry over the fills that built the current position (FIFO-free average cost)
        pos = 0.0
        avg = 0.0
        for f in self._episode_fills:
            signed = f.side * f.size
            if pos == 0 or (pos > 0) == (signed > 0):
                avg = (avg * abs(pos) + f.price * f.size) / (abs(pos) + f.size)
                pos += signed
            else:
                closing = min(abs(signed), abs(pos))
                pos += signed
                if abs(signed) > closing:
                    avg = f.price
                elif abs(pos) <= _EPS:
                    pos, avg = 0.0, 0.0
        return q * (mid - avg) * self.tick_size

    # ----------------------------------------------------------------- observation / info
    def _record_row(self, now: float) -> None:
        """Append the book and feature rows of decision time ``now`` to the observation rings.

        Pure Python on the top levels (``OrderBook.top``), one numpy store per ring; the
        values equal ``OrderBook.depth`` + ``MarketFeatures.values``.
        """
        w = self.config.obs_window
        i = self._ring_idx = (self._ring_idx + 1) % w
        bid_px, bid_sz, ask_px, ask_sz = self._book.top(self._depth_n)
        bb = (bid_px[0], bid_sz[0]) if bid_px else None
        ba = (ask_px[0], ask_sz[0]) if ask_px else None
        flat = self._book_flat
        flat[i] = self._book_row(self._feats.mid, bid_px, bid_sz, ask_px, ask_sz)
        flat[i + w] = flat[i]
        f = self._feats.values_from_levels(int(now), bb, ba, bid_px, bid_sz, ask_px, ask_sz)
        f0 = f[0]
        if f0 != 0:
            f[1] -= f0
        fb = self._feat_buf
        fb[i] = f
        fb[i + w] = fb[i]
        self._mid_buf[i] = self._mid_buf[i + w] = f0

    def _book_row(self, mid: float | None, bid_px: list, bid_sz: list, ask_px: list, ask_sz: list) -> list[float]:
        """The flat ``book`` row: per level (mid − bid, bid size, ask − mid, ask size), zeros padded."""
        if mid is None:
            return self._book_zeros
        lv = self.config.obs_levels
        inv = self.order_size
        if len(bid_px) >= lv and len(ask_px) >= lv:
            return [v for pb, sb, pa, sa in zip(bid_px[:lv], bid_sz[:lv], ask_px[:lv], ask_sz[:lv], strict=True)
                    for v in (mid - pb, sb / inv, pa - mid, sa / inv)]
        row: list[float] = []
        append = row.append
        nb, na = len(bid_px), len(ask_px)
        for k in range(lv):
            if k < nb:
                append(mid - bid_px[k])
                append(bid_sz[k] / inv)
            else:
                append(0.0)
                append(0.0)
            if k < na:
                append(ask_px[k] - mid)
                append(ask_sz[k] / inv)
            else:
                append(0.0)
                append(0.0)
        return row

    def _observation(self) -> dict[str, np.ndarray]:
        w = self.config.obs_window
        j = self._ring_idx + 1
        feats = self._feat_buf[j:j + w].copy()
        mids = self._mid_buf[j:j + w].tolist()
        cur = mids[-1]
        feats[:, 0] = [m - cur if m != 0 else 0.0 for m in mids]
        return {"book": self._book_buf[j:j + w].copy(), "features": feats, "agent": self._agent_vector()}

    def _agent_vector(self) -> np.ndarray:
        ex = self._ex
        mid = self._feats.mid or 0.0
        tick_lots = self.tick_size * self.order_size
        notional = mid * tick_lots
        span = max(self.end_ts - self.start_ts, 1.0)
        out = [ex.position / self.max_inventory_units,
               ex.cash / notional if notional > 0 else 0.0,
               self._mark(self._feats.mid) / tick_lots,
               max(0.0, (self.end_ts - self._now) / span),
               0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        bb, ba = self._feats.best_bid, self._feats.best_ask
        for base, side, best in ((4, BID, bb), (7, ASK, ba)):
            o = ex.quote(side)
            if o is not None:
                out[base] = 1.0
                if best is not None:
                    out[base + 1] = side * (best[0] - o.price)
                out[base + 2] = ex.queue_ahead(o, self._book) / self.order_size
        return np.array(out, np.float32)

    def _info(self, done: bool) -> dict[str, Any]:
        ex = self._ex
        tick = self.tick_size
        bb, ba = self._feats.best_bid, self._feats.best_ask
        mid = self._feats.mid
        q_bid, q_ask = ex.quote(BID), ex.quote(ASK)
        span = max(self.end_ts - self.start_ts, 1.0)
        now = self._now
        info: dict[str, Any] = {
            "market": {
                "ts": now,
                "mid": None if mid is None else round(mid * tick, 12),
                "best_bid": round(bb[0] * tick, 12) if bb else None,
                "best_ask": round(ba[0] * tick, 12) if ba else None,
                "tick_size": tick,
                "inventory": ex.position,
                "time_left": max(0.0, (self.end_ts - now) / span),
                "sigma": self._feats.sigma_per_sqrt_s(int(now)) * tick,
            },
            "quotes": {"bid": round(q_bid.price * tick, 12) if q_bid else None,
                       "ask": round(q_ask.price * tick, 12) if q_ask else None},
            "fills": [{"ts": f.ts, "side": f.side, "price": round(f.price * tick, 12), "size": f.size,
                       "maker": f.maker, "fee": f.fee} for f in self._step_fills] if self._step_fills else [],
            "pnl": self._equity,
            "inventory": ex.position,
            "order_size": self.order_size,
        }
        if done:
            info["episode"] = self._episode_stats()
        return info

    def book_frame(self, levels: int) -> dict[str, Any]:
        """The book's top ``levels`` per side and the agent's resting quotes now, for replay files.

        ``bid_ticks``/``bid_sz``/``ask_ticks``/``ask_sz``: prices in integer ticks (× ``tick_size``
        for quote units), sizes in base units, best first, not padded; per side
        ``<side>_quote_px`` (quote units), ``<side>_quote_size`` (remaining) and
        ``<side>_queue_ahead`` (the queue model's estimate of the size ahead, the displayed size
        at the price while the order is still in flight), ``None`` without a quote; ``fees``:
        fees paid so far in the episode (quote currency). Reads only; call after ``reset``.
        """
        ex = self._ex
        tick = self.tick_size
        bp, bs, ap, as_ = self._book.top(levels)
        out: dict[str, Any] = {"bid_ticks": bp, "bid_sz": bs, "ask_ticks": ap, "ask_sz": as_,
                               "tick_size": tick, "fees": ex.fees}
        for name, side in (("bid", BID), ("ask", ASK)):
            o = ex.quote(side)
            out[f"{name}_quote_px"] = None if o is None else round(o.price * tick, 12)
            out[f"{name}_quote_size"] = None if o is None else o.remaining
            out[f"{name}_queue_ahead"] = None if o is None else ex.queue_ahead(o, self._book)
        return out

    def _episode_stats(self) -> dict[str, Any]:
        ex = self._ex
        fills = self._episode_fills
        tick = self.tick_size
        spread_capture = sum(f.side * (f.mid - f.price) * tick * f.size for f in fills)
        pnl = self._equity
        stats: dict[str, Any] = {
            "pnl": pnl,
            "unrealised_pnl": self._unrealised_at_end,
            "realised_pnl": self._pnl_before_liq - self._unrealised_at_end,
            "fees": ex.fees,
            "spread_capture": spread_capture,
            "inventory_pnl": pnl + ex.fees - spread_capture,
            "liquidation_cost": self._liq_cost,
            "maker_volume": ex.maker_volume,
            "taker_volume": ex.taker_volume,
            "maker_volume_ratio": ex.maker_volume / (ex.maker_volume + ex.taker_volume) if fills else 0.0,
            "fill_ratio": ex.maker_volume / ex.limit_volume_placed if ex.limit_volume_placed > 0 else 0.0,
            "n_fills": len(fills),
            "n_maker_fills": sum(1 for f in fills if f.maker),
        }
        stats.update(self._markout_stats())
        inv = np.asarray(self._inv_samples or [0.0])
        stats["inventory_mean"] = float(inv.mean())
        stats["inventory_abs_mean"] = float(np.abs(inv).mean())
        stats["inventory_max_abs"] = float(np.abs(inv).max())
        stats["orders_placed"] = ex.orders_placed
        stats["orders_cancelled"] = ex.orders_cancelled
        stats["orders_refused"] = self._refused
        # share of decision steps at whose end (before the episode's closing cancel) a quote rested
        stats["quoted_bid_share"] = self._quoted_steps[0] / max(self._steps, 1)
        stats["quoted_ask_share"] = self._quoted_steps[1] / max(self._steps, 1)
        stats["length_steps"] = self._steps
        stats["start_ts"] = self.start_ts
        stats["end_ts"] = self._now
        stats["markout_horizons_ms"] = list(self._horizons)
        stats["fills"] = self._fill_records()
        return stats

    def _markout_stats(self) -> dict[str, float]:
        """Maker-fill markouts per horizon (keys ``markout_bps_<label>``), adverse selection, realised spread."""
        maker = [f for f in self._episode_fills if f.maker]
        stats: dict[str, float] = {}
        for i, key in enumerate(self._markout_keys):
            vals = [m for m in (markout_bps(f, i) for f in maker) if m is not None]
            stats[key] = float(np.mean(vals)) if vals else 0.0
        as_vals = [m for m in (markout_bps(f, self._as_idx) for f in maker) if m is not None]
        stats["adverse_selection_ratio"] = float(np.mean([m < 0 for m in as_vals])) if as_vals else 0.0
        rs = [2 * f.side * (f.markout_mids[self._rs_idx] - f.price) / f.mid * 1e4
              for f in maker if f.markout_mids[self._rs_idx] is not None and f.mid]
        stats["realised_spread_bps"] = float(np.mean(rs)) if rs else 0.0
        stats["n_markouts_unresolved"] = sum(1 for f in maker for m in f.markout_mids if m is None)
        return stats

    def _fill_records(self) -> list[dict[str, Any]]:
        """Every fill of the episode (liquidation included) with its markouts, prices in quote units."""
        tick = self.tick_size
        n = len(self._horizons)
        return [{"ts": f.ts, "side": f.side, "price": round(f.price * tick, 12), "size": f.size, "maker": f.maker,
                 "fee": f.fee, "mid": round(f.mid * tick, 12), "markouts_bps": [markout_bps(f, i) for i in range(n)]}
                for f in self._episode_fills]


gym.register(id="MarketMaking-v0", entry_point="event_driven_env:MarketMakingEnv")
