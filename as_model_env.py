"""The Avellaneda–Stoikov model market as a Gymnasium environment and a vectorised simulator.

One job: simulate the market of Avellaneda & Stoikov (2008), in the discretisation used by
``mbt_gym`` (Jerome, Sánchez-Betancourt, Savani & Herdegen 2022, arXiv:2209.07823), so that
a policy (RL or closed form) can be scored in the model where the optimum is known; and give
that optimum for the env's own reward (the Cartea–Jaimungal closed form).

Public names:

- ``ASModelConfig``: the model and reward parameters (defaults: the reference experiment,
  S0 = 100, sigma = 2, A = 140, k = 1.5, T = 1, 200 steps).
- ``AvellanedaStoikovEnv``: the Gymnasium env, registered as ``"AvellanedaStoikov-v0"`` on
  import (``gymnasium.make("AvellanedaStoikov-v0", sigma=3.0)``).
- ``simulate(policy, config, n_paths, seed)``: run a ``baselines``-style policy on many
  independent paths at once (numpy-vectorised over paths) and return per-path results.
- ``SimulationResult``: what ``simulate`` returns.
- ``sample_market_orders(config, duration, seed)``: the model's own market-order flow (times,
  sides, depths reached, prices, and the mid path), e.g. to test intensity calibration.
- ``CarteaJaimungalPolicy`` / ``closed_form_cj_policy(config)``: the closed-form optimal
  strategy of the criterion set in ``config`` (its phi and alpha; with both 0, the PnL
  optimum: both quotes at depth ``1/k``); ``cj_h_table(config, max_inventory)``: its function
  ``h(t, q)`` on the env's time grid; ``cj_depths(h_row, q, k, far)``: its depths.

Model, per step of length ``dt = T / n_steps`` (the order of ``mbt_gym``'s
``TradingEnvironment``: fills at the current mid, then the mid moves):

- the agent quotes a bid at ``S - delta_b`` and an ask at ``S + delta_a`` (one unit each);
- a sell market order arrives with probability ``A * dt`` and fills the bid with probability
  ``exp(-k * delta_b)``, i.e. the bid fills with probability ``min(1, A * exp(-k * delta_b) * dt)``
  (the Poisson intensity ``A * exp(-k * delta)`` of AS 2008, eq. 2.11); the ask likewise;
- a fill moves cash by ``-(S - delta_b)`` / ``+(S + delta_a)`` and inventory by ``+1`` / ``-1``;
- the mid moves as a Brownian motion: ``S += sigma * sqrt(dt) * Z``.

Reward (the Cartea–Jaimungal running-penalty criterion, ``mbt_gym``'s ``CjMmCriterion``;
with both aversions 0 it is ``mbt_gym``'s ``PnL``): per step
``r_t = (X_{t+1} + q_{t+1} S_{t+1}) - (X_t + q_t S_t) - phi * q_t^2 * dt`` and at the last step
additionally ``- alpha * q_T^2``. The sum of rewards with ``phi = alpha = 0`` is the terminal
mark-to-market PnL ``X_T + q_T S_T`` (starting from ``X_0 = q_0 = 0``).

The Cartea–Jaimungal closed form (Cartea, Jaimungal & Penalva 2015, *Algorithmic and
High-Frequency Trading*, section 10.2; ``mbt_gym``'s ``CarteaJaimungalMmAgent``): for the
criterion ``E[X_T + q_T S_T - alpha q_T^2 - phi int_0^T q_t^2 dt]`` with fill intensity
``A exp(-k delta)`` per side, the value function is ``x + q S + h(t, q)`` with
``h = log(omega) / k``, ``omega(t) = exp(M (T - t)) z``, ``M[q, q] = -phi k q^2``,
``M[q, q +- 1] = A / e``, ``z[q] = exp(-alpha k q^2)`` on ``q = -Q..Q``; the optimal depths
are ``delta_bid = 1/k - h(t, q + 1) + h(t, q)``, ``delta_ask = 1/k - h(t, q - 1) + h(t, q)``.
It solves the continuous-time problem: in this discretisation it is the optimum up to
``O(dt)`` (its simulated criterion is within 0.3 % of ``h(0, 0)`` at phi = 0.01, 2 % at
phi = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from scipy.linalg import expm

from utils import check_settings

DEFAULT_CJ_MAX_INVENTORY = 50
"""Inventory grid ``-Q..Q`` of the closed form when the config sets no ``max_inventory``."""


@dataclass(frozen=True)
class ASModelConfig:
    """Parameters of the Avellaneda–Stoikov model market (defaults: the AS 2008 experiment)."""

    s0: float = 100.0
    """Initial mid price."""
    sigma: float = 2.0
    """Volatility of the mid (price units per sqrt(time unit)); Brownian, not geometric."""
    A: float = 140.0
    """Arrival intensity of market orders per side, per time unit, at depth 0."""
    k: float = 1.5
    """Decay of the fill intensity with depth: ``lambda(delta) = A * exp(-k * delta)``."""
    terminal_time: float = 1.0
    """Horizon T in time units."""
    n_steps: int = 200
    """Decision steps per episode (dt = T / n_steps; 200 gives the reference dt = 0.005)."""
    max_depth: float = 10.0
    """Action bound: depths are clipped to ``[-max_depth, max_depth]`` price units."""
    max_inventory: int | None = None
    """If set, fills that would take ``|inventory|`` above it are ignored (mbt_gym's bound)."""
    per_step_inventory_aversion: float = 0.0
    """phi of the Cartea–Jaimungal criterion (running penalty ``phi * q^2 * dt``)."""
    terminal_inventory_aversion: float = 0.0
    """alpha of the Cartea–Jaimungal criterion (terminal penalty ``alpha * q_T^2``)."""

    def __post_init__(self) -> None:
        for name in ("sigma", "A", "k", "terminal_time", "max_depth"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"ASModelConfig.{name} must be a positive finite number, got {v!r}")
        if not (isinstance(self.n_steps, int) and self.n_steps >= 1):
            raise ValueError(f"ASModelConfig.n_steps must be an integer >= 1, got {self.n_steps!r}")
        if self.max_inventory is not None and self.max_inventory < 1:
            raise ValueError(f"ASModelConfig.max_inventory must be >= 1 or None, got {self.max_inventory!r}")
        for name in ("per_step_inventory_aversion", "terminal_inventory_aversion"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ASModelConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        check_settings(self)  # every number finite (inf aversion, nan sigma, ...)
        if self.A * self.dt > 1.0:
            raise ValueError(f"ASModelConfig: A * dt = {self.A * self.dt:.3f} > 1 is not a probability; "
                             "use more steps")

    @property
    def dt(self) -> float:
        """Step length ``T / n_steps``."""
        return self.terminal_time / self.n_steps


@dataclass
class SimulationResult:
    """Per-path outcome of ``simulate`` (arrays of shape ``(n_paths,)`` unless stated)."""

    pnl: np.ndarray
    """Terminal mark-to-market PnL ``X_T + q_T * S_T``."""
    reward: np.ndarray
    """Sum of rewards (equals ``pnl`` when both inventory aversions are 0)."""
    final_inventory: np.ndarray
    mean_spread: np.ndarray
    """Time average of the quoted spread ``delta_b + delta_a``."""
    n_fills: np.ndarray
    inventory_path: np.ndarray
    """Shape ``(n_steps + 1, n_paths)``."""


class _Paths:
    """State and one-step dynamics of many independent paths (shared by env and simulator)."""

    def __init__(self, config: ASModelConfig, n: int, rng: np.random.Generator) -> None:
        self.c = config
        self.rng = rng
        self.mid = np.full(n, config.s0, dtype=np.float64)
        self.cash = np.zeros(n)
        self.q = np.zeros(n, dtype=np.int64)
        self.step_i = 0

    @property
    def time_left(self) -> float:
        return 1.0 - self.step_i / self.c.n_steps

    def market(self) -> dict[str, Any]:
        c = self.c
        return {
            "mid": self.mid.copy(), "inventory": self.q.copy(), "time_left": self.time_left,
            "tau": c.terminal_time * self.time_left, "sigma": c.sigma, "A": c.A, "k": c.k,
            "dt": c.dt, "action_units": "depth", "tick_size": None,
            "best_bid": None, "best_ask": None,
        }

    def step(self, depth_bid: np.ndarray, depth_ask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance one step; returns (reward, number of fills) per path."""
        c, rng, n = self.c, self.rng, len(self.mid)
        db = np.clip(np.asarray(depth_bid, dtype=np.float64), -c.max_depth, c.max_depth)
        da = np.clip(np.asarray(depth_ask, dtype=np.float64), -c.max_depth, c.max_depth)
        value0 = self.cash + self.q * self.mid
        q0 = self.q.copy()
        u = rng.random((2, n))
        bid_fill = u[0] < np.minimum(1.0, c.A * np.exp(-c.k * db) * c.dt)
        ask_fill = u[1] < np.minimum(1.0, c.A * np.exp(-c.k * da) * c.dt)
        if c.max_inventory is not None:
            bid_fill &= self.q < c.max_inventory
            ask_fill &= self.q > -c.max_inventory
        self.cash += np.where(bid_fill, -(self.mid - db), 0.0) + np.where(ask_fill, self.mid + da, 0.0)
        self.q += bid_fill.astype(np.int64) - ask_fill.astype(np.int64)
        self.mid = self.mid + c.sigma * math.sqrt(c.dt) * rng.standard_normal(n)
        self.step_i += 1
        reward = self.cash + self.q * self.mid - value0 - c.per_step_inventory_aversion * q0**2 * c.dt
        if self.step_i == c.n_steps:
            reward = reward - c.terminal_inventory_aversion * self.q**2
        return reward, bid_fill.astype(np.int64) + ask_fill.astype(np.int64)


def _action_to_depths(action: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(action, dtype=np.float64)
    if a.shape[-1] != 2:
        raise ValueError(f"action must end in a dimension of 2 (bid depth, ask depth), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {action!r}")
    return a[..., 0], a[..., 1]


def simulate(policy: Any, config: ASModelConfig | None = None, n_paths: int = 1000,
             seed: int = 0) -> SimulationResult:
    """Run ``policy`` on ``n_paths`` independent paths of the model at once.

    The policy is called once per step with ``policy.act(obs, info)`` where ``obs`` has shape
    ``(n_paths, 2)`` (inventory, time left) and ``info["market"]`` holds arrays over paths
    (``mid``, ``inventory``) and scalars (``time_left``, ``tau``, ``sigma``, ``A``, ``k``,
    ``dt``, ``action_units="depth"``). It returns depths of shape ``(n_paths, 2)``.

    Args:
        policy: an object with ``reset()`` and ``act(obs, info)`` (see ``baselines``).
        config: model parameters.
        n_paths: number of independent paths.
        seed: random seed (same seed, same result).

    Returns:
        A ``SimulationResult``.
    """
    c = config or ASModelConfig()
    if n_paths < 1:
        raise ValueError(f"n_paths must be >= 1, got {n_paths}")
    rng = np.random.Generator(np.random.PCG64(seed))
    paths = _Paths(c, n_paths, rng)
    policy.reset()
    total = np.zeros(n_paths)
    spread_sum = np.zeros(n_paths)
    fills = np.zeros(n_paths, dtype=np.int64)
    inv = np.zeros((c.n_steps + 1, n_paths), dtype=np.int64)
    for t in range(c.n_steps):
        info = {"market": paths.market()}
        obs = np.stack([paths.q.astype(np.float64), np.full(n_paths, paths.time_left)], axis=1)
        db, da = _action_to_depths(policy.act(obs, info))
        db = np.broadcast_to(db, (n_paths,))
        da = np.broadcast_to(da, (n_paths,))
        spread_sum += np.clip(db, -c.max_depth, c.max_depth) + np.clip(da, -c.max_depth, c.max_depth)
        r, nf = paths.step(db, da)
        total += r
        fills += nf
        inv[t + 1] = paths.q
    return SimulationResult(pnl=paths.cash + paths.q * paths.mid, reward=total,
                            final_inventory=paths.q.copy(), mean_spread=spread_sum / c.n_steps,
                            n_fills=fills, inventory_path=inv)


def sample_market_orders(config: ASModelConfig | None = None, duration: float = 10.0,
                         seed: int = 0, time_unit_ms: float = 1000.0) -> dict[str, np.ndarray]:
    """Sample the market-order flow that the model's fill probabilities stand for.

    Market orders arrive on each side as a Poisson process of rate ``A`` per time unit; each
    walks the book to a depth ``D ~ Exponential(k)``, so it would fill a quote at depth
    ``delta`` with probability ``P(D >= delta) = exp(-k * delta)``: the intensity of orders
    reaching ``delta`` is ``A * exp(-k * delta)``. The mid is the model's Brownian motion on
    the grid of ``n_steps / terminal_time`` steps per time unit.

    Args:
        config: model parameters (``A``, ``k``, ``sigma``, ``s0``, step length).
        duration: time units to sample.
        seed: random seed.
        time_unit_ms: milliseconds per time unit in the returned timestamps.

    Returns:
        Dict of arrays: ``ts`` (ms), ``side`` (+1 buy / -1 sell), ``depth``, ``price``
        (``mid + side * depth``, the deepest price reached), ``mid_ts`` (ms), ``mid``.

    >>> flow = sample_market_orders(ASModelConfig(A=100.0), duration=10.0, seed=1)
    >>> 1800 < len(flow["ts"]) < 2200   # about 2 sides * A * duration
    True
    """
    c = config or ASModelConfig()
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    rng = np.random.Generator(np.random.PCG64(seed))
    n_grid = int(math.ceil(duration / c.dt))
    mid_t = np.arange(n_grid + 1) * c.dt
    mid = c.s0 + np.concatenate(([0.0], np.cumsum(c.sigma * math.sqrt(c.dt) * rng.standard_normal(n_grid))))
    n = rng.poisson(2.0 * c.A * duration)
    t = np.sort(rng.uniform(0.0, duration, n))
    side = np.where(rng.random(n) < 0.5, 1, -1)
    depth = rng.exponential(1.0 / c.k, n)
    m_at = mid[np.minimum(np.searchsorted(mid_t, t, side="right") - 1, n_grid)]
    return {"ts": t * time_unit_ms, "side": side, "depth": depth, "price": m_at + side * depth,
            "mid_ts": mid_t * time_unit_ms, "mid": mid}


def cj_h_table(config: ASModelConfig, max_inventory: int | None = None) -> np.ndarray:
    """``h(t_j, q)`` of the Cartea–Jaimungal closed form on the env's time grid.

    ``omega`` is carried backwards from ``T`` one step ``dt`` at a time with the non-negative
    matrix ``exp(M dt)`` (its tiny negative round-off entries set to 0) and rescaled to a
    maximum of 1 at every step: every term is non-negative, nothing cancels, and ``omega``
    stays positive and finite where its entries span many orders of magnitude (large ``phi``).

    Args:
        config: the model (``A``, ``k``, ``terminal_time``, ``n_steps``) and the criterion
            (``per_step_inventory_aversion`` = phi, ``terminal_inventory_aversion`` = alpha).
        max_inventory: grid bound ``Q`` (default: ``config.max_inventory``, else 50).

    Returns:
        Array ``(n_steps + 1, 2Q + 1)``: row ``j`` is time ``t_j = j dt``, column ``i`` is
        inventory ``q = i - Q``.

    >>> h = cj_h_table(ASModelConfig(terminal_inventory_aversion=0.5), max_inventory=3)
    >>> (h[-1] + 0.0).round(2).tolist()   # at T: h = -alpha q^2
    [-4.5, -2.0, -0.5, 0.0, -0.5, -2.0, -4.5]
    """
    c = config
    qmax = max_inventory if max_inventory is not None else (c.max_inventory or DEFAULT_CJ_MAX_INVENTORY)
    if not (isinstance(qmax, int) and qmax >= 1):
        raise ValueError(f"max_inventory must be an integer >= 1, got {qmax!r}")
    q = np.arange(-qmax, qmax + 1, dtype=np.float64)
    phi, alpha, k = c.per_step_inventory_aversion, c.terminal_inventory_aversion, c.k
    m = np.diag(-phi * k * q**2) + (np.eye(len(q), k=1) + np.eye(len(q), k=-1)) * c.A * math.exp(-1.0)
    step = np.maximum(expm(m * c.dt), 0.0)
    log_omega = np.empty((c.n_steps + 1, len(q)))
    log_omega[c.n_steps] = -alpha * k * q**2
    omega = np.exp(log_omega[c.n_steps])       # max 1 (at q = 0)
    shift = 0.0
    for j in range(c.n_steps - 1, -1, -1):
        omega = step @ omega
        top = omega.max()
        omega, shift = omega / top, shift + math.log(top)
        if omega.min() <= 0.0:
            raise ValueError(f"cj_h_table: omega underflows on the inventory grid -{qmax}..{qmax} for "
                             f"phi={phi}, alpha={alpha}; use a smaller max_inventory")
        log_omega[j] = np.log(omega) + shift
    return log_omega / k


def cj_depths(h_row: np.ndarray, inventory: Any, k: float, far: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal (bid, ask) depths for inventories ``inventory`` from one row of ``cj_h_table``.

    At the grid's edge ``|q| = Q`` the side that would leave the grid is quoted at ``far``
    (the closed form's inventory is bounded by ``Q``); beyond it the quotes of the edge apply.

    Args:
        h_row: ``h(t, q)`` for ``q = -Q..Q``.
        inventory: integer inventories (any shape).
        k: fill-intensity decay.
        far: depth quoted for a side that must not trade.

    Returns:
        ``(delta_bid, delta_ask)`` of the shape of ``inventory``.

    >>> h = np.array([-2.0, -0.5, 0.0, -0.5, -2.0])   # -0.5 q^2 on q = -2..2
    >>> b, a = cj_depths(h, np.array([-2, 0, 1, 2]), k=1.0, far=9.0)
    >>> b.tolist(), a.tolist()
    ([-0.5, 1.5, 2.5, 9.0], [9.0, 1.5, 0.5, -0.5])
    """
    qmax = (len(h_row) - 1) // 2
    q = np.clip(np.asarray(inventory, dtype=np.int64), -qmax, qmax)
    i = q + qmax
    up = np.minimum(i + 1, 2 * qmax)
    down = np.maximum(i - 1, 0)
    bid = np.where(q >= qmax, far, 1.0 / k - h_row[up] + h_row[i])
    ask = np.where(q <= -qmax, far, 1.0 / k - h_row[down] + h_row[i])
    return bid, ask


class CarteaJaimungalPolicy:
    """The closed-form optimal strategy of the Cartea–Jaimungal criterion (module docstring).

    Acts on ``as_model_env`` (one env, or all paths of ``simulate`` at once) from
    ``info["market"]`` (``inventory``, ``time_left``); returns ``[delta_bid, delta_ask]``.
    With the env's inventory unbounded (``max_inventory`` None) the closed form is solved on
    ``q = -50..50``; at ``|q| <= 10`` its quotes then differ from those of an unbounded grid
    by less than ``1e-4`` price units (with phi = alpha = 0, where both are exactly ``1/k``).

    Args:
        config: model and criterion (phi, alpha) the strategy is optimal for.
        max_inventory: grid bound of the closed form (see ``cj_h_table``).
    """

    action_mode = "continuous"

    def __init__(self, config: ASModelConfig, max_inventory: int | None = None) -> None:
        self.config = config
        self.h = cj_h_table(config, max_inventory)

    def reset(self) -> None:
        """No per-episode state."""

    def act(self, obs: Any, info: dict) -> np.ndarray:
        """Optimal depths for the current inventory and time."""
        m = info["market"]
        j = int(round((1.0 - float(m["time_left"])) * self.config.n_steps))
        bid, ask = cj_depths(self.h[min(max(j, 0), self.config.n_steps)], m["inventory"],
                             self.config.k, self.config.max_depth)
        return np.stack([bid, ask], axis=-1)

    def value(self, inventory: int = 0, time_left: float = 1.0) -> float:
        """Closed-form expected criterion from ``(t, q)`` on: ``h(t, q)`` (continuous time)."""
        j = int(round((1.0 - time_left) * self.config.n_steps))
        qmax = (self.h.shape[1] - 1) // 2
        if abs(int(inventory)) > qmax or not 0.0 <= time_left <= 1.0:
            raise ValueError(f"value: inventory {inventory} outside -{qmax}..{qmax} or time_left {time_left} "
                             "outside [0, 1]")
        return float(self.h[j, int(inventory) + qmax])


def closed_form_cj_policy(config: ASModelConfig, max_inventory: int | None = None) -> CarteaJaimungalPolicy:
    """The Cartea–Jaimungal optimal strategy for the criterion set in ``config``."""
    return CarteaJaimungalPolicy(config, max_inventory)



class AvellanedaStoikovEnv(gym.Env):
    """The Avellaneda–Stoikov model market, one path per episode.

    ## Description

    The Avellaneda–Stoikov (2008) market-making model: the agent quotes one unit on each side
    at chosen depths from a Brownian mid price and is filled with probability
    ``A * exp(-k * depth) * dt`` per step. See the module docstring for the exact dynamics.

    ## Action Space

    | index | meaning                    | min         | max        | units        |
    |-------|----------------------------|-------------|------------|--------------|
    | 0     | bid depth ``S - bid``      | -max_depth  | max_depth  | price units  |
    | 1     | ask depth ``ask - S``      | -max_depth  | max_depth  | price units  |

    ## Observation Space

    ``Box(2,)`` float32: ``[inventory, time_left]`` (time left as a fraction of T, 1 -> 0).

    ## Rewards

    ``r_t = Delta(cash + q * S) - phi * q_t^2 * dt``, minus ``alpha * q_T^2`` at the last step
    (Cartea–Jaimungal criterion; ``phi = alpha = 0``: the mark-to-market PnL increment).

    ## Starting State

    ``S = s0``, cash 0, inventory 0, time 0.

    ## Episode End

    Termination after ``n_steps`` steps (t = T). This is a finite-horizon problem whose state
    includes the time left and whose terminal penalty applies at T, so reaching T is a true
    termination, not a time-limit truncation. Never truncated.

    ## Arguments

    ``AvellanedaStoikovEnv(config=None, **overrides)``, overrides being ``ASModelConfig`` field
    names; ``gymnasium.make("AvellanedaStoikov-v0", sigma=3.0)``.

    ## Info

    ``info["market"]``: ``mid``, ``inventory``, ``time_left``, ``tau`` (time left in time
    units), ``sigma``, ``A``, ``k``, ``dt``, ``action_units="depth"``; ``info["pnl"]``,
    ``info["inventory"]``, ``info["n_fills"]``.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: ASModelConfig | None = None, **overrides: Any) -> None:
        base = config or ASModelConfig()
        names = {f.name for f in fields(ASModelConfig)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown ASModelConfig field(s): {sorted(unknown)}")
        self.config = ASModelConfig(**{**{n: getattr(base, n) for n in names}, **overrides})
        c = self.config
        self.action_space = spaces.Box(-c.max_depth, c.max_depth, (2,), dtype=np.float32)
        self.observation_space = spaces.Box(
            np.array([-np.inf, 0.0], dtype=np.float32), np.array([np.inf, 1.0], dtype=np.float32))
        self._paths: _Paths | None = None
        self._fills = 0

    def _obs(self) -> np.ndarray:
        assert self._paths is not None
        return np.array([self._paths.q[0], self._paths.time_left], dtype=np.float32)

    def _info(self) -> dict[str, Any]:
        p = self._paths
        assert p is not None
        m = p.market()
        m["mid"] = float(m["mid"][0])
        m["inventory"] = int(m["inventory"][0])
        return {"market": m, "pnl": float(p.cash[0] + p.q[0] * p.mid[0]),
                "inventory": int(p.q[0]), "n_fills": self._fills}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start a new episode (``seed`` reseeds the env's generator)."""
        super().reset(seed=seed)
        self._paths = _Paths(self.config, 1, self.np_random)
        self._fills = 0
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Quote the given depths for one step."""
        if self._paths is None:
            raise RuntimeError("call reset() before step()")
        if self._paths.step_i >= self.config.n_steps:
            raise RuntimeError("episode has ended; call reset()")
        db, da = _action_to_depths(action)
        r, nf = self._paths.step(np.reshape(db, (1,)), np.reshape(da, (1,)))
        self._fills += int(nf[0])
        terminated = self._paths.step_i >= self.config.n_steps
        info = self._info()
        if terminated:
            info["episode"] = {"pnl": info["pnl"], "n_fills": self._fills,
                               "final_inventory": info["inventory"]}
        return self._obs(), float(r[0]), terminated, False, info


if "AvellanedaStoikov-v0" not in gym.registry:
    gym.register(id="AvellanedaStoikov-v0", entry_point="as_model_env:AvellanedaStoikovEnv")
