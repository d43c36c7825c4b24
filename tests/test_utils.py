"""Metrics against hand-computed values, the dataclass → argparse plumbing, and the plots."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Literal

import numpy as np
import pandas as pd
import pytest

import utils


def test_sharpe_by_hand():
    # pnl 1, -1, 3, 5: mean 2, sample var ((1+9+1+9)/3) = 20/3
    pnl = [1.0, -1.0, 3.0, 5.0]
    expected = 2.0 / math.sqrt(20.0 / 3.0)
    assert utils.sharpe_ratio(pnl) == pytest.approx(expected)
    # 1-hour episodes: 8760 per year
    assert utils.sharpe_ratio(pnl, utils.periods_per_year(3600)) == pytest.approx(expected * math.sqrt(8760))
    assert math.isnan(utils.sharpe_ratio([3.0, 3.0]))


def test_sortino_by_hand():
    # pnl 1, -1, 3, -3: mean 0; downside sqrt((1+9)/4)
    assert utils.sortino_ratio([1.0, -1.0, 3.0, -3.0]) == 0.0
    pnl = [4.0, -2.0, 1.0]  # mean 1, downside sqrt(4/3)
    assert utils.sortino_ratio(pnl) == pytest.approx(1.0 / math.sqrt(4.0 / 3.0))
    assert utils.sortino_ratio(pnl, 365.0) == pytest.approx(math.sqrt(365.0) / math.sqrt(4.0 / 3.0))
    assert utils.sortino_ratio([-1.0, -1.0]) == pytest.approx(-1.0)
    assert utils.sortino_ratio([0.0, 0.0]) != utils.sortino_ratio([0.0, 0.0])  # nan


def test_max_drawdown_by_hand():
    assert utils.max_drawdown([0.0, 2.0, -1.0, 1.0, -2.5, 3.0]) == pytest.approx(4.5)
    assert utils.max_drawdown([1.0, 2.0, 3.0]) == 0.0
    assert utils.max_drawdown(np.cumsum([-1.0, -1.0, 0.5])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="NaN"):
        utils.max_drawdown([1.0, float("nan")])


def test_bootstrap_ci_seeded_and_covering():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 1.0, size=200)
    a = utils.bootstrap_ci(x, seed=3)
    assert a == utils.bootstrap_ci(x, seed=3)
    assert a != utils.bootstrap_ci(x, seed=4)
    # normal-theory half-width 1.96 * s / sqrt(n) ~ 0.139
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert a[0] == pytest.approx(x.mean() - half, abs=0.03)
    assert a[1] == pytest.approx(x.mean() + half, abs=0.03)
    assert utils.bootstrap_ci([7.0]) == (7.0, 7.0)
    with pytest.raises(ValueError, match="confidence"):
        utils.bootstrap_ci(x, confidence=1.5)


def test_markout_summary_by_hand():
    # the env's markouts of three fills at 100 ms / 1 s / 5 s (nan = unresolved)
    mk = np.array([[10.0, -10.0, 100.0], [2.0, 3.0, np.nan], [-4.0, 1.0, np.nan]])
    s = utils.markout_summary(mk, [100, 1000, 5000])
    assert s["markout_bps_100ms"] == pytest.approx(8.0 / 3)
    assert s["markout_bps_1s"] == pytest.approx(-2.0)
    assert s["adverse_share_1s"] == pytest.approx(1 / 3)
    assert s["markout_bps_5s"] == pytest.approx(100.0) and s["adverse_share_5s"] == 0.0
    assert utils.horizon_label(1500) == "1.5s" and utils.horizon_label(250) == "250ms"
    assert not hasattr(utils, "fill_markouts_bps")  # markouts are computed once, by the env


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 3e-4
    """Learning rate (50% of it is still a lot)."""
    mode: Literal["discrete", "continuous"] = "discrete"
    """Action mode."""
    window: tuple[float, float] = (0.0, 0.7)
    """Fractions of the time span."""
    flag: bool = False
    """A switch."""
    path: str | None = None
    """A path or none."""
    n: int = 2

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


def test_field_docstrings_parsed():
    docs = utils.field_docstrings(_Cfg)
    assert docs["lr"] == "Learning rate (50% of it is still a lot)."
    assert docs["n"] == ""


def test_dataclass_flags_roundtrip():
    p = utils.OneLineErrorParser(prog="x")
    m = utils.add_dataclass_arguments(p, _Cfg)
    args = p.parse_args(["--lr", "0.1", "--mode", "continuous", "--window", "0.2", "0.9", "--flag",
                         "--path", "none"])
    cfg = utils.dataclass_from_args(_Cfg, args, m)
    assert cfg == _Cfg(lr=0.1, mode="continuous", window=(0.2, 0.9), flag=True, path=None)
    base = _Cfg(n=5)
    assert utils.dataclass_from_args(_Cfg, p.parse_args(["--flag", "false"]), m, base) == base
    with pytest.raises(utils.CliError, match="n must be >= 1"):
        utils.dataclass_from_args(_Cfg, p.parse_args(["--n", "0"]), m)
    d = utils.dataclass_to_dict(cfg)
    assert d["window"] == [0.2, 0.9]
    assert utils.dataclass_from_dict(_Cfg, d) == cfg
    with pytest.warns(UserWarning, match="unknown"):
        utils.dataclass_from_dict(_Cfg, {**d, "gone": 1})
    help_text = " ".join(p.format_help().split())
    assert "Learning rate (50% of it is still a lot). (default: 0.0003)" in help_text


def test_bad_flag_is_one_line(capsys):
    p = utils.OneLineErrorParser(prog="x")
    utils.add_dataclass_arguments(p, _Cfg)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--mode", "sideways"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err
    with pytest.raises(SystemExit):
        p.parse_args(["--lr", "fast"])
    assert "invalid float value" in capsys.readouterr().err


def test_plots_write_png(tmp_path):
    import plots

    log = pd.DataFrame({
        "timesteps": [100, 200, 300], "reward": [0.1, 0.2, 0.3], "pnl": [1.0, 2.0, 1.5],
        "fill_ratio": [0.1, 0.2, 0.3], "adverse_selection_ratio": [0.5, 0.4, 0.45],
        "maker_volume_ratio": [1.0, 0.9, 1.0], "inventory_abs_mean": [1, 2, 1],
        "inventory_max_abs": [2, 3, 2], "policy_loss": [0.1, -0.1, 0.0], "value_loss": [1, 0.5, 0.3],
        "entropy": [1.0, 0.9, 0.8],
    })
    ev = pd.DataFrame({"timesteps": [200], "eval_pnl_mean": [1.2]})
    p = plots.plot_training_curves(log, tmp_path / "a.png", ev)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.DataFrame({"policy": ["agent", "random"], "pnl_mean": [1.0, -1.0],
                            "pnl_ci95_low": [0.5, -2.0], "pnl_ci95_high": [1.5, 0.0],
                            "fill_ratio": [0.1, 0.2], "adverse_selection_ratio": [0.3, 0.6],
                            "inventory_abs_mean": [1, 2], "markout_bps_1s": [0.5, -1.0],
                            "markout_bps_5s": [0.2, -2.0]})
    eps = pd.DataFrame({"policy": ["agent", "agent", "random", "random"], "pnl": [0.5, 1.5, -2, 0]})
    plots.plot_evaluation_comparison(summary, eps, tmp_path / "b.png", ["markout_bps_1s", "markout_bps_5s"])
    # fills as the env reports them in info["episode"]["fills"], markouts included
    trace = {"ts": [0, 1000, 2000, 3000], "mid": [100, 100.5, 100.2, 100.8], "best_bid": [99.9] * 4,
             "best_ask": [100.1] * 4, "quote_bid": [99.8, np.nan, 99.9, 99.9],
             "quote_ask": [100.2] * 4, "inventory": [0, 1, 1, 0], "pnl": [0, 0.6, 0.3, 0.9],
             "markout_horizons_ms": [100.0, 1500.0],
             "fills": [{"ts": 900, "side": 1, "price": 99.8, "size": 1.0, "maker": True, "fee": -0.01,
                        "mid": 100.0, "markouts_bps": [20.0, 70.1]},
                       {"ts": 2500, "side": -1, "price": 100.2, "size": 1.0, "maker": False, "fee": 0.02,
                        "mid": 100.5, "markouts_bps": [-59.9, None]}]}
    plots.plot_episode(trace, tmp_path / "c.png", title="t")
    plots.plot_episode({**trace, "fills": []}, tmp_path / "d.png")
    assert {f.name for f in tmp_path.iterdir()} == {"a.png", "b.png", "c.png", "d.png"}
    mk = plots.fill_markout_rows(trace["fills"], 2)
    assert mk[0].tolist() == [20.0, 70.1] and mk[1, 0] == -59.9 and np.isnan(mk[1, 1])


def test_parser_is_argparse():
    assert issubclass(utils.OneLineErrorParser, argparse.ArgumentParser)


def test_atomic_open_keeps_old_content_on_interrupt_and_sets_normal_permissions(tmp_path):
    import os

    from utils import atomic_open, atomic_write_text

    path = atomic_write_text(tmp_path / "out.csv", "old\n")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as fh:
            fh.write(b"half a fi")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temp file left


# ----------------------------------------------------------------- nested configs
@dataclasses.dataclass(frozen=True)
class _Inner:
    b: int = 1
    """a leaf of the nested config"""
    c: tuple[float, float] = (0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class _Outer:
    a: int = 0
    inner: _Inner = dataclasses.field(default_factory=_Inner)


@dataclasses.dataclass(frozen=True)
class _Clash:
    b: int = 0
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_nested_config_paths_replace_and_flat_dict():
    assert utils.flat_field_paths(_Outer) == {"a": ("a",), "b": ("inner", "b"), "c": ("inner", "c")}
    cfg = utils.replace_flat(_Outer(), b=5, a=2)
    assert cfg == _Outer(a=2, inner=_Inner(b=5))
    assert utils.flat_dict(cfg) == {"a": 2, "b": 5, "c": (0.0, 1.0)}
    with pytest.raises(TypeError, match="no field 'zz'"):
        utils.replace_flat(cfg, zz=1)
    with pytest.raises(TypeError, match="appears twice"):
        utils.flat_field_paths(_Clash)


def test_nested_config_flags_round_trip_and_legacy_flat_dict():
    p = argparse.ArgumentParser()
    m = utils.add_dataclass_arguments(p, _Outer)
    assert m == {"a": "a", "b": "b", "c": "c"}
    assert "a leaf of the nested config" in p.format_help()
    cfg = utils.dataclass_from_args(_Outer, p.parse_args(["--b", "7", "--c", "2", "3"]), m)
    assert cfg == _Outer(inner=_Inner(b=7, c=(2.0, 3.0)))
    base = _Outer(a=4, inner=_Inner(b=9))
    assert utils.dataclass_from_args(_Outer, p.parse_args(["--c", "1", "2"]), m, base) == _Outer(
        a=4, inner=_Inner(b=9, c=(1.0, 2.0)))
    d = utils.dataclass_to_dict(cfg)
    assert d == {"a": 0, "inner": {"b": 7, "c": [2.0, 3.0]}}
    assert utils.dataclass_from_dict(_Outer, d) == cfg
    # a config saved flat (before the nesting) still loads
    assert utils.dataclass_from_dict(_Outer, {"a": 0, "b": 7, "c": [2.0, 3.0]}) == cfg
    with pytest.warns(UserWarning, match=r"inner\.gone"):
        assert utils.dataclass_from_dict(_Outer, {"inner": {"b": 7, "c": [2, 3], "gone": 1}}) == cfg


def test_from_flat_get_flat_and_nested_help_groups():
    cfg = utils.from_flat(_Outer, b=3, a=1)
    assert cfg == _Outer(a=1, inner=_Inner(b=3))
    assert utils.get_flat(cfg, "b") == 3 and utils.get_flat(cfg, "a") == 1
    with pytest.raises(TypeError, match="no field 'zz'"):
        utils.from_flat(_Outer, zz=1)
    with pytest.raises(AttributeError, match="no field 'zz'"):
        utils.get_flat(cfg, "zz")
    with pytest.raises(ValueError, match="n must be >= 1"):
        utils.from_flat(_Cfg, n=0)
    p = utils.OneLineErrorParser(prog="x")
    utils.add_dataclass_arguments(p, _Outer, title="outer", defaults={"b": 4})
    p.add_argument("--seed", type=int, default=0, help="a seed")
    p.add_argument("--quiet", action="store_true", help="say less")
    rows = utils.flag_rows(p)
    assert rows == [
        ("options", "--seed", "0", "a seed"),
        ("options", "--quiet", "off", "say less"),
        ("outer", "--a", "0", ""),
        ("outer: inner (_Inner)", "--b", "4; _Outer.inner default: 1", "a leaf of the nested config"),
        ("outer: inner (_Inner)", "--c", "0.0 1.0", ""),
    ]
    assert "outer: inner (_Inner):" in p.format_help()
