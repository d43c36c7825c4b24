"""The reward of ``MarketMakingEnv``: one component, every term in one unit.

One job: turn what happened in a decision step (the mark-to-mid equity change, the
inventory, the volatility estimate, the step length) into the reward the agent sees.

Public names:

- ``RewardConfig``: the reward's settings (frozen dataclass, a docstring per field); a nested
  part of ``event_driven_env.EnvConfig``, its leaf names are the CLI flags.
- ``Reward``: the component the env calls (``step`` every decision step, ``close`` once at
  the episode end, ``to_unit`` on their sum).
- The variants, one class each, registered by name in ``REWARD_VARIANTS`` (add one with
  ``register_reward``): ``PnLReward`` ("pnl") and ``InventoryPenaltyReward``
  ("pnl_inventory_penalty"); and ``TerminalInventoryPenalty``, applied by every variant.
- ``ignored_settings``: the variant parameters a chosen variant does not read (warned about).

Formulas. Every term is computed in quote currency and converted once:

| term | quote currency | in tick-lots |
|---|---|---|
| PnL | ΔE = E_t − E_{t−1}, E = cash + q · mid (fees out of cash) | ΔE / (tick_size · order_size) |
| running inventory penalty ("pnl_inventory_penalty") | γ · σ² · q² · dt · tick_size · order_size | γ · σ² · q² · dt |
| terminal inventory penalty (last step, before liquidation) | κ · q_T² · tick_size · order_size | κ · q_T² |

σ in ticks per √s, q in lots (inventory ÷ order_size), dt in seconds, γ =
``inventory_penalty_gamma``, κ = ``terminal_inventory_penalty``: both penalties are defined
in tick-lots (one tick earned on one order = 1) and enter the sum in quote currency through
the factor ``tick_size · order_size``. The reward is the sum converted by ``reward_unit``:
"tick_lots" divides it by ``tick_size · order_size``, "quote" keeps it, so the two units
differ by that constant factor only (the same ranking of policies and actions).

Version history: before issue 11 the env subtracted both penalties *unconverted* with
``reward_unit="quote"``, i.e. it mixed tick-lot penalties into a quote-currency PnL (wrong by
the factor ``tick_size · order_size``); "tick_lots" rewards are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from utils import check_settings

__all__ = [
    "REWARD_UNITS", "REWARD_VARIANTS", "InventoryPenaltyReward", "PnLReward", "Reward", "RewardConfig",
    "TerminalInventoryPenalty", "ignored_settings", "register_reward",
]

REWARD_VARIANTS: dict[str, type] = {}
"""Reward variant name (``RewardConfig.reward``) -> class."""

REWARD_UNITS: tuple[str, ...] = ("tick_lots", "quote")
"""Units of ``RewardConfig.reward_unit``."""


def register_reward(name: str) -> Callable[[type], type]:
    """Class decorator: register a reward variant under ``name`` (a valid ``RewardConfig.reward``).

    The class needs ``from_config(config)``, a ``uses_sigma`` flag and
    ``running_penalty(q_lots, sigma, dt_s) -> tick-lots``.
    """
    def decorate(cls: type) -> type:
        if name in REWARD_VARIANTS and REWARD_VARIANTS[name] is not cls:
            raise ValueError(f"reward name {name!r} is already registered to {REWARD_VARIANTS[name].__name__}")
        REWARD_VARIANTS[name] = cls
        cls.name = name
        return cls
    return decorate


@dataclass(frozen=True)
class RewardConfig:
    """Settings of ``Reward`` (formulas and units in the module docstring)."""

    reward: str = "pnl"
    """"pnl" (mark-to-mid PnL change) or "pnl_inventory_penalty" (minus gamma*sigma^2*q^2*dt); any name in ``REWARD_VARIANTS``."""
    reward_unit: str = "tick_lots"
    """"tick_lots" (reward / (tick_size*order_size)) or "quote" (quote currency); every term is converted the same way."""
    inventory_penalty_gamma: float = 0.01
    """gamma of the running inventory penalty gamma*sigma^2*q^2*dt in tick-lots (sigma in ticks/sqrt(s), q in lots, dt in s)."""
    terminal_inventory_penalty: float = 0.0
    """kappa of the terminal penalty kappa*q^2 in tick-lots (q in lots) on the position left at the episode end, before liquidation."""

    SANE_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "inventory_penalty_gamma": (0.0, 1e6), "terminal_inventory_penalty": (0.0, 1e6)}
    """Sane range of each number (``utils.check_settings``)."""

    def __post_init__(self) -> None:
        if self.reward not in REWARD_VARIANTS:
            raise ValueError(f"RewardConfig.reward must be one of {tuple(REWARD_VARIANTS)}, got {self.reward!r}")
        if self.reward_unit not in REWARD_UNITS:
            raise ValueError(f"RewardConfig.reward_unit must be one of {REWARD_UNITS}, got {self.reward_unit!r}")
        for name in ("inventory_penalty_gamma", "terminal_inventory_penalty"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RewardConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        check_settings(self, self.SANE_RANGES)


def ignored_settings(reward: str, given: Iterable[str]) -> list[str]:
    """The variant parameters among ``given`` (``RewardConfig`` field names) that ``reward`` does not read.

    A variant lists the fields it reads in ``parameters``; a field listed by some other variant
    only (e.g. ``inventory_penalty_gamma`` with ``reward="pnl"``) is ignored by ``reward``.
    ``train.py`` warns about each one the user set.

    >>> ignored_settings("pnl", ["inventory_penalty_gamma", "reward_unit"])
    ['inventory_penalty_gamma']
    >>> ignored_settings("pnl_inventory_penalty", ["inventory_penalty_gamma"])
    []
    """
    own = set(getattr(REWARD_VARIANTS[reward], "parameters", ()))
    variant_only = {f for cls in REWARD_VARIANTS.values() for f in getattr(cls, "parameters", ())}
    return [g for g in given if g in variant_only and g not in own]


@register_reward("pnl")
@dataclass(frozen=True)
class PnLReward:
    """r = ΔE: the mark-to-mid equity change, nothing else (no running penalty).

    >>> PnLReward().running_penalty(q_lots=3.0, sigma=2.0, dt_s=0.1)
    0.0
    """

    uses_sigma: ClassVar[bool] = False
    """Whether ``running_penalty`` reads ``sigma`` (the env computes it only then)."""
    parameters: ClassVar[tuple[str, ...]] = ()
    """The ``RewardConfig`` fields of a variant that this variant reads (``ignored_settings``)."""

    @classmethod
    def from_config(cls, config: RewardConfig) -> PnLReward:
        """The variant (no parameters)."""
        return cls()

    def running_penalty(self, q_lots: float, sigma: float, dt_s: float) -> float:
        """0 (tick-lots)."""
        return 0.0


@register_reward("pnl_inventory_penalty")
@dataclass(frozen=True)
class InventoryPenaltyReward:
    """r = ΔE − γ·σ²·q²·dt (the penalty in tick-lots, converted by ``Reward``).

    The running quadratic inventory penalty of Avellaneda-Stoikov style market-making
    rewards: holding q lots for dt seconds at volatility σ costs γσ²q²dt.

    >>> InventoryPenaltyReward(gamma=0.5).running_penalty(q_lots=2.0, sigma=3.0, dt_s=0.25)
    4.5
    """

    gamma: float = 0.01
    uses_sigma: ClassVar[bool] = True
    """``running_penalty`` reads ``sigma``."""
    parameters: ClassVar[tuple[str, ...]] = ("inventory_penalty_gamma",)
    """Reads ``RewardConfig.inventory_penalty_gamma``."""

    @classmethod
    def from_config(cls, config: RewardConfig) -> InventoryPenaltyReward:
        """The variant with ``gamma = config.inventory_penalty_gamma``."""
        return cls(config.inventory_penalty_gamma)

    def running_penalty(self, q_lots: float, sigma: float, dt_s: float) -> float:
        """γ·σ²·q²·dt in tick-lots (σ ticks/√s, q lots, dt s)."""
        return self.gamma * sigma * sigma * q_lots * q_lots * dt_s


@dataclass(frozen=True)
class TerminalInventoryPenalty:
    """κ·q_T² in tick-lots on the position left at the episode end (before the liquidation).

    >>> TerminalInventoryPenalty(kappa=0.5).penalty(q_lots=-3.0)
    4.5
    """

    kappa: float = 0.0

    def penalty(self, q_lots: float) -> float:
        """κ·q² (tick-lots)."""
        return self.kappa * q_lots ** 2


class Reward:
    """The env's reward component: variant + terminal penalty + unit, in one place.

    ``step`` and ``close`` return quote currency; the env adds them over a step and calls
    ``to_unit`` once on the sum (module docstring for the formulas).

    Args:
        config: the reward settings.
        tick_size: price of one tick (quote currency).
        order_size: order size in base units (one lot of the inventory penalties).

    Quote currency, tick 0.5 and order size 4 (one tick-lot = 2 quote), q = 8 / 4 = 2 lots:

    >>> r = Reward(RewardConfig("pnl_inventory_penalty", "quote", inventory_penalty_gamma=0.5,
    ...                         terminal_inventory_penalty=0.25), tick_size=0.5, order_size=4.0)
    >>> r.step(equity_change=3.0, inventory=8.0, dt_s=0.5, sigma=1.0)   # 3 - 0.5*1²*2²*0.5 * 2
    1.0
    >>> r.close(equity_change=-1.0, inventory=8.0)                     # -1 - 0.25*2² * 2
    -3.0
    >>> Reward(RewardConfig(), tick_size=0.5, order_size=4.0).to_unit(3.0)   # 3 / 2 tick-lots
    1.5
    """

    def __init__(self, config: RewardConfig, tick_size: float, order_size: float) -> None:
        if not (tick_size > 0 and order_size > 0):
            raise ValueError(f"Reward needs tick_size > 0 and order_size > 0, got {tick_size!r}, {order_size!r}")
        self.config = config
        self.variant = REWARD_VARIANTS[config.reward].from_config(config)
        self.terminal = TerminalInventoryPenalty(config.terminal_inventory_penalty)
        self.order_size = float(order_size)
        # tick-lots per unit of quote currency. Penalties enter quote currency as
        # ``x / tick_lots_per_quote`` and the sum leaves it as ``r * tick_lots_per_quote``:
        # the arithmetic of the env before this module, so "tick_lots" rewards are bit-identical.
        self.tick_lots_per_quote = 1.0 / (float(tick_size) * self.order_size)
        self.scale = self.tick_lots_per_quote if config.reward_unit == "tick_lots" else 1.0
        """Factor from quote currency to the configured unit."""

    @property
    def uses_sigma(self) -> bool:
        """Whether ``step`` needs the volatility estimate."""
        return self.variant.uses_sigma

    def step(self, equity_change: float, inventory: float, dt_s: float, sigma: float = 0.0) -> float:
        """Reward of one decision step in quote currency, before ``to_unit``.

        Args:
            equity_change: ΔE over the step (quote currency).
            inventory: position at the end of the step (base units).
            dt_s: step length in seconds.
            sigma: volatility in ticks per √s (read only when ``uses_sigma``).
        """
        q_lots = inventory / self.order_size
        return equity_change - self.variant.running_penalty(q_lots, sigma, dt_s) / self.tick_lots_per_quote

    def close(self, equity_change: float, inventory: float) -> float:
        """Extra reward of the last step in quote currency: the closing ΔE minus the terminal penalty.

        Args:
            equity_change: ΔE of cancelling everything and liquidating (quote currency).
            inventory: the position before the liquidation (base units).
        """
        return equity_change - self.terminal.penalty(inventory / self.order_size) / self.tick_lots_per_quote

    def to_unit(self, quote: float) -> float:
        """Convert a quote-currency reward to ``reward_unit``."""
        return quote * self.scale
