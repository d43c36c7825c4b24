"""The dashboard's Plotly figures, drawn from DataFrames read elsewhere; no I/O, no Dash.

One job: turn a run's ``training_log.csv``, an evaluation's tables and one episode of a
replay file into ``plotly.graph_objects.Figure`` objects. Every function takes DataFrames
and returns a figure, so each can be drawn and checked without a browser.

Public names:

- ``DEFAULT_METRICS`` / ``metric_options``: the training-log columns offered and drawn first.
- ``training_curves``: one panel per metric, one line per run (runs overlaid).
- ``pnl_distribution`` / ``paired_figure`` / ``markout_figure``: the evaluation view.
- ``replay_figure`` / ``cursor_shape``: the book heat map with mid, quotes and fills over
  inventory, PnL and fees on one time axis, and the cursor of the time slider.
- ``ladder_figure``: the depth ladder at one step with the agent's orders and their queue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
BID_COLOR, ASK_COLOR, MID_COLOR = "#1a9850", "#d73027", "#444444"

DEFAULT_METRICS: tuple[str, ...] = (
    "reward", "pnl", "eval_pnl_mean", "fill_ratio", "adverse_selection_ratio", "markout_bps_1s",
    "entropy", "policy_loss", "value_loss", "diag/quoted_bid_share", "diag/fills_per_episode",
    "diag/bid_offset_mean",
)
"""Training-log columns drawn when a run is first selected (those the log has)."""

_NOT_METRICS = {"update", "timesteps"}


def metric_options(logs: Sequence[pd.DataFrame]) -> list[str]:
    """Numeric columns of any of ``logs`` except the x axes, defaults first.

    >>> metric_options([pd.DataFrame({"update": [1], "timesteps": [64], "entropy": [1.0], "zz": [2]})])
    ['entropy', 'zz']
    """
    cols: dict[str, None] = {}
    for log in logs:
        for c in log.columns:
            if c not in _NOT_METRICS and pd.api.types.is_numeric_dtype(log[c]):
                cols[c] = None
    first = [c for c in DEFAULT_METRICS if c in cols]
    return first + [c for c in cols if c not in first]


def _empty(message: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper",
                                    "x": 0.5, "y": 0.5, "font": {"size": 14}}],
                      margin={"l": 20, "r": 20, "t": 20, "b": 20})
    return fig


def training_curves(logs: dict[str, pd.DataFrame], metrics: Sequence[str], uirevision: str = "") -> go.Figure:
    """One panel per metric (two columns), one line per run, against timesteps.

    Args:
        logs: ``{run name: training_log DataFrame}``.
        metrics: the columns to draw (missing ones are left out).
        uirevision: keeps the user's zoom across refreshes with the same value.

    Returns:
        The figure (a message when there is nothing to draw).
    """
    metrics = [m for m in metrics if any(m in log for log in logs.values())]
    if not logs or not metrics:
        return _empty("no training log to draw yet")
    ncols = 2 if len(metrics) > 1 else 1
    nrows = math.ceil(len(metrics) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=metrics, shared_xaxes=True,
                        vertical_spacing=min(0.08, 0.5 / max(nrows, 1)), horizontal_spacing=0.08)
    for i, (name, log) in enumerate(logs.items()):
        color = COLORS[i % len(COLORS)]
        for j, m in enumerate(metrics):
            if m not in log:
                continue
            y = pd.to_numeric(log[m], errors="coerce")
            ok = y.notna()
            sparse = ok.sum() < 0.5 * len(y)  # e.g. eval_pnl_mean, logged every eval_interval updates
            fig.add_trace(go.Scatter(
                x=log["timesteps"][ok], y=y[ok], name=name, legendgroup=name, showlegend=j == 0,
                mode="lines+markers" if sparse or ok.sum() < 30 else "lines",
                line={"color": color, "width": 1.5}, marker={"size": 5},
                hovertemplate=f"{name}<br>{m}=%{{y:.4g}}<br>step %{{x}}<extra></extra>",
            ), row=j // ncols + 1, col=j % ncols + 1)
    fig.update_xaxes(title_text="timesteps", row=nrows)
    fig.update_layout(height=max(320, 230 * nrows), margin={"l": 50, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.06 if nrows > 2 else -0.15},
                      uirevision=uirevision or "curves", hovermode="closest")
    return fig


# --------------------------------------------------------------------------- evaluation


def pnl_distribution(episodes: pd.DataFrame) -> go.Figure:
    """Per-episode PnL of each policy: box, every episode as a point, the mean marked."""
    if episodes is None or episodes.empty:
        return _empty("no episodes")
    fig = go.Figure()
    for i, (policy, g) in enumerate(episodes.groupby("policy", sort=False)):
        text = [f"episode {e}" + (f", model {m}" if isinstance(m, str) and m else "")
                for e, m in zip(g["episode"], g.get("model", [""] * len(g)), strict=False)]
        fig.add_trace(go.Box(y=g["pnl"], name=str(policy), boxpoints="all", jitter=0.4, pointpos=0,
                             boxmean=True, marker={"color": COLORS[i % len(COLORS)], "size": 5},
                             text=text, hovertemplate="%{text}<br>pnl %{y:.4g}<extra>%{x}</extra>"))
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"})
    fig.update_layout(title="PnL per episode (quote currency); dashed line in each box = mean",
                      showlegend=False, height=420, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def paired_figure(paired: pd.DataFrame) -> go.Figure:
    """Agent − baseline mean difference per baseline with its 95 % CI (same episodes)."""
    if paired is None or paired.empty:
        return _empty("no paired differences (needs an agent and at least one baseline)")
    p = paired.iloc[::-1]
    lo = (p["diff_mean"] - p["diff_ci_lo"]).abs()
    hi = (p["diff_ci_hi"] - p["diff_mean"]).abs()
    colors = [BID_COLOR if a > 0 else (ASK_COLOR if b < 0 else "#555")
              for a, b in zip(p["diff_ci_lo"], p["diff_ci_hi"], strict=True)]
    metric = str(p["metric"].iloc[0]) if "metric" in p else "pnl"
    hover = [f"diff {d:.4g} (95 % CI {a:.4g} … {b:.4g})<br>sign p {s:.3g}, Wilcoxon p {w:.3g}<br>agent better on "
             f"{sh:.0%} of episodes" for d, a, b, s, w, sh in
             zip(p["diff_mean"], p["diff_ci_lo"], p["diff_ci_hi"], p["sign_p"], p["wilcoxon_p"],
                 p["share_positive"], strict=True)]
    fig = go.Figure(go.Scatter(
        x=p["diff_mean"], y=p["baseline"], mode="markers",
        error_x={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo, "thickness": 2},
        marker={"size": 10, "color": colors}, text=hover, hovertemplate="%{y}<br>%{text}<extra></extra>",
    ))
    fig.add_vline(x=0, line={"color": "#999", "dash": "dot"})
    n = int(p["n_episodes"].iloc[0]) if "n_episodes" in p else 0
    fig.update_layout(title=f"agent − baseline, {metric} per episode, paired on the same {n} episodes (95 % CI)",
                      height=max(260, 60 * len(p) + 120), margin={"l": 140, "r": 20, "t": 50, "b": 40},
                      xaxis_title=f"{metric} difference")
    return fig


def markout_figure(summary: pd.DataFrame, horizons: Sequence[tuple[float, str]]) -> go.Figure:
    """Mean maker-fill markout (bps, fill-weighted) of each policy against the horizon (log axis)."""
    if summary is None or summary.empty or not horizons:
        return _empty("no markout columns in this evaluation")
    xs = [h for h, _ in horizons]
    fig = go.Figure()
    for i, (_, row) in enumerate(summary.iterrows()):
        ys = [row.get(c) for _, c in horizons]
        fig.add_trace(go.Scatter(x=xs, y=ys, name=str(row["policy"]), mode="lines+markers",
                                 line={"color": COLORS[i % len(COLORS)]},
                                 hovertemplate="%{x} ms: %{y:.3g} bps<extra>" + str(row["policy"]) + "</extra>"))
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"})
    fig.update_layout(title="markout of maker fills by horizon: side × (mid(t+h) − price) / price, bps "
                            "(negative = adverse selection)",
                      xaxis={"type": "log", "title": "horizon (ms)", "tickvals": xs},
                      yaxis_title="bps", height=400, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


# --------------------------------------------------------------------------- replay


def _times(ts: Any) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ts, dtype=np.float64), unit="ms")


def _tick_of(prices: np.ndarray) -> float:
    """The price grid's step: the smallest positive gap between distinct prices (rounded to 1e-9)."""
    u = np.unique(np.round(prices[np.isfinite(prices)], 9))
    d = np.diff(u)
    d = d[d > 1e-12]
    return float(d.min()) if d.size else 1.0


def book_heatmap(steps: pd.DataFrame, levels: int, max_cols: int = 600, max_rows: int = 300) -> go.Heatmap | None:
    """The book's top levels over time as one heat map: bid sizes positive (green), asks negative (red).

    Time is thinned to at most ``max_cols`` columns (every k-th step) and prices are binned to
    at most ``max_rows`` rows of whole ticks, so a long episode stays light in the browser.
    """
    bid_px = steps[[f"bid_px_{i}" for i in range(1, levels + 1)]].to_numpy()
    ask_px = steps[[f"ask_px_{i}" for i in range(1, levels + 1)]].to_numpy()
    bid_sz = steps[[f"bid_sz_{i}" for i in range(1, levels + 1)]].to_numpy()
    ask_sz = steps[[f"ask_sz_{i}" for i in range(1, levels + 1)]].to_numpy()
    allp = np.concatenate([bid_px.ravel(), ask_px.ravel()])
    if not np.isfinite(allp).any():
        return None
    k = max(1, math.ceil(len(steps) / max_cols))
    cols = np.arange(0, len(steps), k)
    tick = _tick_of(allp)
    lo, hi = np.nanmin(allp), np.nanmax(allp)
    n_ticks = int(round((hi - lo) / tick)) + 1
    binw = max(1, math.ceil(n_ticks / max_rows))
    nrows = math.ceil(n_ticks / binw)
    z = np.full((nrows, len(cols)), np.nan)
    for sign, px, sz in ((1.0, bid_px, bid_sz), (-1.0, ask_px, ask_sz)):
        p, s = px[cols], sz[cols]
        ok = np.isfinite(p) & np.isfinite(s)
        r = np.round((p[ok] - lo) / tick).astype(np.int64) // binw
        c = np.broadcast_to(np.arange(len(cols))[:, None], p.shape)[ok]
        acc = np.zeros_like(z)
        np.add.at(acc, (r, c), s[ok])
        z = np.where(acc > 0, sign * acc, z)
    y = lo + (np.arange(nrows) * binw + (binw - 1) / 2) * tick
    zmax = float(np.nanpercentile(np.abs(z), 95)) if np.isfinite(z).any() else 1.0
    return go.Heatmap(
        x=_times(steps["ts"].to_numpy()[cols]), y=y, z=z, zmin=-zmax, zmax=zmax, zmid=0,
        colorscale=[[0.0, "#b2182b"], [0.35, "#f4a582"], [0.5, "#f7f7f7"], [0.65, "#a6dba0"], [1.0, "#1b7837"]],
        showscale=False, hoverongaps=False, name="depth",
        hovertemplate="%{x}<br>price %{y}<br>size %{z:.4g} (+bid / −ask)<extra>book</extra>",
    )


def _fill_traces(fills: pd.DataFrame) -> list[go.Scatter]:
    out = []
    if fills is None or fills.empty:
        return out
    marks = [c for c in fills.columns if c.startswith("markout_bps_")]
    for side, maker, name, symbol, color in ((1, True, "buy, maker", "triangle-up", BID_COLOR),
                                             (1, False, "buy, taker", "triangle-up-open", BID_COLOR),
                                             (-1, True, "sell, maker", "triangle-down", ASK_COLOR),
                                             (-1, False, "sell, taker", "triangle-down-open", ASK_COLOR)):
        g = fills[(fills["side"] == side) & (fills["maker"].astype(bool) == maker)]
        if g.empty:
            continue
        text = [f"size {s:.4g}, fee {f:.4g}<br>" + ", ".join(f"{c[12:]} {v:+.2f}" for c, v in zip(marks, mk, strict=True)
                                                              if np.isfinite(v))
                for s, f, mk in zip(g["size"], g["fee"], g[marks].to_numpy() if marks else [[]] * len(g), strict=True)]
        out.append(go.Scatter(x=_times(g["ts"]), y=g["price"], mode="markers", name=name, text=text,
                              marker={"symbol": symbol, "size": 11, "color": color,
                                      "line": {"width": 1.5, "color": color if not maker else "#111"}},
                              hovertemplate="%{x}<br>" + name + " @ %{y}<br>%{text}<extra>fill</extra>"))
    return out


def replay_figure(steps: pd.DataFrame, fills: pd.DataFrame, levels: int, title: str = "") -> go.Figure:
    """One episode: book heat map, mid, best bid/ask, the agent's quotes and fills; inventory, PnL, fees below.

    Four rows on one shared, zoomable time axis.
    """
    if steps is None or steps.empty:
        return _empty("no steps recorded for this episode")
    t = _times(steps["ts"])
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, row_heights=[0.52, 0.16, 0.16, 0.16],
                        vertical_spacing=0.04,
                        subplot_titles=("book (top levels: green bids, red asks), mid, quotes and fills",
                                        "inventory (base units)", "PnL (quote currency, marked to mid)",
                                        "cumulative fees (quote currency)"))
    heat = book_heatmap(steps, levels)
    if heat is not None:
        fig.add_trace(heat, row=1, col=1)
    line_hv = {"shape": "hv"}
    fig.add_trace(go.Scatter(x=t, y=steps["mid"], name="mid", line={"color": MID_COLOR, "width": 1}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["best_bid"], name="best bid",
                             line={**line_hv, "color": BID_COLOR, "width": 0.8, "dash": "dot"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["best_ask"], name="best ask",
                             line={**line_hv, "color": ASK_COLOR, "width": 0.8, "dash": "dot"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["quote_bid"], name="agent bid", connectgaps=False,
                             line={**line_hv, "color": "#00441b", "width": 2.5}), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["quote_ask"], name="agent ask", connectgaps=False,
                             line={**line_hv, "color": "#67001f", "width": 2.5}), row=1, col=1)
    for tr in _fill_traces(fills):
        fig.add_trace(tr, row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["inventory"], name="inventory", showlegend=False,
                             line={**line_hv, "color": "#5e3c99"}), row=2, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["pnl"], name="PnL", showlegend=False,
                             line={"color": "#1f77b4"}), row=3, col=1)
    fig.add_trace(go.Scatter(x=t, y=steps["fees"], name="fees", showlegend=False,
                             line={**line_hv, "color": "#b35806"}), row=4, col=1)
    fig.update_layout(height=920, title={"text": title, "font": {"size": 14}}, hovermode="closest", uirevision=title,
                      legend={"orientation": "h", "y": 1.035, "yanchor": "bottom", "x": 0, "xanchor": "left",
                              "font": {"size": 11}},
                      margin={"l": 60, "r": 20, "t": 110, "b": 40},
                      shapes=[cursor_shape(t[0])])
    fig.update_xaxes(rangeslider={"visible": False})
    return fig


def cursor_shape(t: Any) -> dict[str, Any]:
    """The vertical line marking the slider's instant across all rows of ``replay_figure``."""
    return {"type": "line", "xref": "x", "yref": "paper", "x0": t, "x1": t, "y0": 0, "y1": 1,
            "line": {"color": "#000", "width": 1, "dash": "dash"}}


def ladder_figure(row: pd.Series, levels: int, order_size: float | None = None) -> go.Figure:
    """The depth ladder at one step: sizes per price (bids left, asks right) and the agent's orders.

    At each of the agent's quotes the bar is split in the size the queue model puts ahead of
    the order (grey) and the order's remaining size (dark), so the queue position reads off
    the bar.
    """
    fig = go.Figure()
    bp = np.array([row.get(f"bid_px_{i}") for i in range(1, levels + 1)], dtype=float)
    bs = np.array([row.get(f"bid_sz_{i}") for i in range(1, levels + 1)], dtype=float)
    ap = np.array([row.get(f"ask_px_{i}") for i in range(1, levels + 1)], dtype=float)
    as_ = np.array([row.get(f"ask_sz_{i}") for i in range(1, levels + 1)], dtype=float)
    ok_b, ok_a = np.isfinite(bp), np.isfinite(ap)
    allp = np.concatenate([bp[ok_b], ap[ok_a]])
    tick = _tick_of(allp) if allp.size > 1 else 1.0
    fig.add_trace(go.Bar(y=bp[ok_b], x=-bs[ok_b], orientation="h", name="bids", marker_color="#a6dba0",
                         width=tick * 0.85, customdata=bs[ok_b],
                         hovertemplate="bid %{y}: %{customdata:.4g}<extra></extra>"))
    fig.add_trace(go.Bar(y=ap[ok_a], x=as_[ok_a], orientation="h", name="asks", marker_color="#f4a582",
                         width=tick * 0.85, customdata=as_[ok_a],
                         hovertemplate="ask %{y}: %{customdata:.4g}<extra></extra>"))
    notes = []
    for side, sign, color in (("bid", -1.0, "#00441b"), ("ask", 1.0, "#67001f")):
        px, size, ahead = row.get(f"quote_{side}"), row.get(f"{side}_quote_size"), row.get(f"{side}_queue_ahead")
        if px is None or not np.isfinite(px):
            notes.append(f"agent {side}: none")
            continue
        size = float(size) if size is not None and np.isfinite(size) else float(order_size or 0.0)
        ahead = float(ahead) if ahead is not None and np.isfinite(ahead) else 0.0
        fig.add_trace(go.Bar(y=[px], x=[sign * ahead], orientation="h", name=f"queue ahead of agent {side}",
                             marker={"color": "#969696", "pattern": {"shape": "/"}}, width=tick * 0.5,
                             hovertemplate=f"ahead of agent {side}: {ahead:.4g}<extra></extra>"))
        fig.add_trace(go.Bar(y=[px], x=[sign * size], base=[sign * ahead], orientation="h", name=f"agent {side}",
                             marker_color=color, width=tick * 0.5,
                             hovertemplate=f"agent {side} {size:.4g} @ {px}<extra></extra>"))
        fig.add_trace(go.Scatter(y=[px], x=[sign * (ahead + size)], mode="markers+text", name=f"agent {side} (end)",
                                 showlegend=False, marker={"symbol": "star", "size": 13, "color": color},
                                 text=[f"agent {side}"], textposition="middle left" if sign < 0 else "middle right",
                                 hovertemplate=f"agent {side} {size:.4g} @ {px}, {ahead:.4g} ahead<extra></extra>"))
        notes.append(f"agent {side}: {size:.4g} @ {px:g}, {ahead:.4g} ahead in the queue")
    mid = row.get("mid")
    if mid is not None and np.isfinite(mid):
        fig.add_hline(y=float(mid), line={"color": MID_COLOR, "dash": "dot", "width": 1})
    shown = np.concatenate([allp, [v for v in (row.get("quote_bid"), row.get("quote_ask"))
                                   if v is not None and np.isfinite(v)]])
    if shown.size:
        fig.update_yaxes(range=[float(shown.min()) - tick, float(shown.max()) + tick], autorange=False)
    t = _times([row["ts"]])[0]
    fig.update_layout(
        barmode="overlay", height=520, bargap=0, margin={"l": 70, "r": 20, "t": 70, "b": 60},
        title={"text": f"depth at {t:%H:%M:%S.%f}"[:-3] + f" (step {int(row['step'])})<br><sub>"
               + "; ".join(notes) + "</sub>"},
        xaxis_title="size (bids ← | → asks)", yaxis_title="price", legend={"orientation": "h", "y": -0.15},
    )
    return fig


def fills_table_rows(fills: pd.DataFrame) -> list[dict[str, Any]]:
    """The fills as table rows: time, side, maker/taker, price, size, fee, markouts."""
    rows = []
    marks = [c for c in fills.columns if c.startswith("markout_bps_")]
    for _, f in fills.iterrows():
        r = {"time": f"{_times([f['ts']])[0]:%H:%M:%S.%f}"[:-3], "step": int(f["step"]),
             "side": "buy" if f["side"] > 0 else "sell", "liquidity": "maker" if bool(f["maker"]) else "taker",
             "price": float(f["price"]), "size": float(f"{float(f['size']):.10g}"),
             "fee": round(float(f["fee"]), 6)}
        for c in marks:
            v = f[c]
            r[c] = None if v is None or not np.isfinite(v) else round(float(v), 3)
        rows.append(r)
    return rows
