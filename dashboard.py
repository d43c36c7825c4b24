"""The dashboard: a local web app over the ``results/`` and ``evaluation_results/`` folders.

One job: serve three views (Plotly Dash, on 127.0.0.1 by default) of the folders that
``train.py`` and ``evaluate.py`` write, as they are, with no export step:

- **Runs** (``/runs``): every run with its state and resolved config; the training curves
  (reward, PnL, fill ratio, adverse selection, entropy, losses, action diagnostics, any log
  column) of one or several runs overlaid; refreshed every ``--refresh_s`` seconds while a
  run trains.
- **Evaluation** (``/evaluation``): the summary table (sortable), the paired agent −
  baseline differences with their CIs, the per-episode PnL distribution per policy and the
  markout curves by horizon.
- **Episode replay** (``/replay``): one recorded episode (``replay.parquet``, written by the
  evaluation): the book's depth as a heat map with the mid, the agent's quotes and its fills
  (by side, maker/taker), and inventory, PnL and cumulative fees on the same zoomable time
  axis; a time slider and a play button step a depth ladder showing the agent's orders and
  the size queued ahead of them.

It works offline (Dash serves its own JavaScript and CSS from the installed package; no
external script, stylesheet or font is referenced), reads only (a folder still being written
or a file that cannot be read shows a message in the page) and never writes to the folders.

Usage: ``python dashboard.py`` then open http://127.0.0.1:8050 (flags: ``--help``).

Public names: ``create_app``, ``build_parser``, ``main``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import dashboard_data as dd
import dashboard_figures as figs
import utils

logger = logging.getLogger(__name__)

PAGES = (("/runs", "Runs"), ("/evaluation", "Evaluation"), ("/replay", "Episode replay"))

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { background: #1f2937; color: #fff; padding: 10px 24px; display: flex; gap: 24px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0 16px 0 0; }
header a { color: #cbd5e1; text-decoration: none; font-size: 15px; }
header a.active { color: #fff; border-bottom: 2px solid #60a5fa; }
header .where { margin-left: auto; font-size: 12px; color: #94a3b8; }
main { padding: 12px 24px 40px; }
h2 { font-size: 17px; margin: 18px 0 8px; }
.notice { padding: 8px 12px; border-radius: 4px; margin: 6px 0; font-size: 14px; }
.notice.warn { background: #fff7e6; border: 1px solid #f0b84d; }
.notice.error { background: #fdecea; border: 1px solid #e57373; }
.notice.info { background: #eef5ff; border: 1px solid #90b4e8; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-end; }
.row > div { min-width: 220px; }
label { font-size: 13px; color: #555; display: block; margin-bottom: 2px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 1100px) { .two { grid-template-columns: 1fr; } }
.replay { display: grid; grid-template-columns: minmax(0, 2.2fr) minmax(0, 1fr); gap: 12px; }
.status-training { color: #1565c0; font-weight: 600; }
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>""" + _CSS + """</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""

_TABLE_STYLE = {"style_table": {"overflowX": "auto"},
                "style_cell_conditional": [{"if": {"column_type": "text"}, "textAlign": "left"}],
                "style_cell": {"fontFamily": "inherit", "fontSize": 13, "padding": "3px 8px", "textAlign": "right",
                               "maxWidth": 420, "overflow": "hidden", "textOverflow": "ellipsis"},
                "style_header": {"fontWeight": "600", "backgroundColor": "#f3f4f6"}}


# --------------------------------------------------------------------------- small helpers


def _notice(text: str, kind: str = "warn") -> Any:
    from dash import html

    return html.Div(text, className=f"notice {kind}", role="alert" if kind != "info" else "status")


def _query(search: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}


def _ago(t: float) -> str:
    s = max(0.0, time.time() - t)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.1f} h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _num(v: Any) -> Any:
    """A table cell: floats to 4 significant digits, everything else as is."""
    import numpy as np

    if isinstance(v, float | np.floating):
        return None if not np.isfinite(v) else float(f"{float(v):.4g}")
    if isinstance(v, np.integer):
        return int(v)
    return v


def _columns(names: Sequence[str], numeric: Sequence[bool]) -> list[dict[str, str]]:
    return [{"name": c, "id": c, "type": "numeric" if n else "text"} for c, n in zip(names, numeric, strict=True)]


def _records(df: Any, columns: Sequence[str] | None = None) -> tuple[list[dict], list[dict]]:
    import pandas as pd

    cols = list(columns if columns is not None else df.columns)
    rows = [{c: _num(v) for c, v in zip(cols, r, strict=True)} for r in df[cols].itertuples(index=False)]
    return rows, _columns(cols, [pd.api.types.is_numeric_dtype(df[c]) for c in cols])


# --------------------------------------------------------------------------- pages


def _runs_page(q: dict[str, str], refresh_s: float) -> Any:
    from dash import dash_table, dcc, html

    return html.Div([
        html.H2("Runs"),
        html.Div(id="runs-notice"),
        dash_table.DataTable(id="runs-table", row_selectable="multi", selected_rows=[], sort_action="none",
                             page_size=50, **_TABLE_STYLE),
        dcc.Store(id="runs-wanted", data=[r for r in q.get("run", "").split(",") if r]),
        dcc.Store(id="curves-key"),
        html.Div([html.Label("training-log columns (one panel each; runs overlaid)"),
                  dcc.Dropdown(id="metrics", multi=True, value=None)], style={"marginTop": "10px"}),
        dcc.Graph(id="curves", config={"displaylogo": False}),
        html.H2("Resolved config"),
        dcc.Checklist(id="config-diff", options=[{"label": " only the values that differ between the selected runs",
                                                  "value": "diff"}], value=[]),
        dash_table.DataTable(id="config-table", page_size=400, filter_action="native",
                             **{**_TABLE_STYLE, "style_cell": {**_TABLE_STYLE["style_cell"], "textAlign": "left"}}),
        dcc.Interval(id="refresh", interval=int(refresh_s * 1000), n_intervals=0),
    ])


def _eval_options(evals: list[dd.EvalInfo], replay_only: bool = False) -> list[dict[str, Any]]:
    """Dropdown options, newest first; ``healthy`` marks the finished ones (the default picks)."""
    out = []
    for e in evals:
        if replay_only and not e.has_replay:
            continue
        tag = "" if e.status == dd.STATUS_FINISHED else f"  [{e.status}]"
        out.append({"label": e.label + tag, "value": e.key, "healthy": e.status == dd.STATUS_FINISHED})
    return out


def _plain(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"label": o["label"], "value": o["value"]} for o in options]


def _pick(options: list[dict[str, Any]], wanted: str | None) -> str | None:
    """``wanted`` if offered, else the newest finished evaluation, else the newest."""
    values = [o["value"] for o in options]
    if wanted in values:
        return wanted
    healthy = [o["value"] for o in options if o.get("healthy")]
    return (healthy or values or [None])[0]


def _evaluation_page(q: dict[str, str], results_dir: Path, eval_dir: Path) -> Any:
    from dash import dash_table, dcc, html

    evals = dd.scan_evaluations(results_dir, eval_dir)
    options = _eval_options(evals)
    if not options:
        return html.Div([html.H2("Evaluation"), _notice(
            f"no evaluation found under {results_dir}/*/evaluation or {eval_dir}/ "
            "(train.py writes one at the end of a run; evaluate.py writes one per call)", "info")])
    return html.Div([
        html.H2("Evaluation"),
        html.Div([html.Label("evaluation folder"),
                  dcc.Dropdown(id="eval-select", options=_plain(options), value=_pick(options, q.get("eval")),
                               clearable=False)], style={"maxWidth": "780px"}),
        html.Div(id="eval-notice"),
        html.H2("Summary (click a column header to sort)"),
        dash_table.DataTable(id="summary-table", sort_action="native", page_size=50, **_TABLE_STYLE),
        html.Div(className="two", children=[
            html.Div([html.H2("Paired differences"), dcc.Graph(id="paired-graph", config={"displaylogo": False}),
                      dash_table.DataTable(id="paired-table", sort_action="native", **_TABLE_STYLE)]),
            html.Div([html.H2("PnL per episode"), dcc.Graph(id="pnl-graph", config={"displaylogo": False})]),
        ]),
        html.H2("Markouts by horizon"),
        dcc.Graph(id="markout-graph", config={"displaylogo": False}),
        html.Div(id="eval-replay-link"),
    ])


def _replay_page(q: dict[str, str], results_dir: Path, eval_dir: Path) -> Any:
    from dash import dash_table, dcc, html

    evals = dd.scan_evaluations(results_dir, eval_dir)
    options = _eval_options(evals, replay_only=True)
    if not options:
        return html.Div([html.H2("Episode replay"), _notice(
            "no evaluation with a replay file (replay.parquet) found: evaluations write it since this dashboard "
            "exists; run evaluate.py (or train.py) again to get one", "info")])
    return html.Div([
        html.H2("Episode replay"),
        html.Div(className="row", children=[
            html.Div([html.Label("evaluation folder"),
                      dcc.Dropdown(id="replay-eval", options=_plain(options), value=_pick(options, q.get("eval")),
                                   clearable=False)], style={"flex": "2"}),
            html.Div([html.Label("policy (model)"), dcc.Dropdown(id="replay-policy", clearable=False)],
                     style={"flex": "1"}),
            html.Div([html.Label("episode"), dcc.Dropdown(id="replay-episode", clearable=False)],
                     style={"flex": "1"}),
        ]),
        dcc.Store(id="replay-wanted", data={"policy": q.get("policy"), "episode": q.get("episode")}),
        html.Div(id="replay-notice"),
        html.Div(className="replay", children=[
            dcc.Graph(id="replay-graph", config={"displaylogo": False, "scrollZoom": True}),
            html.Div([
                dcc.Graph(id="ladder", config={"displaylogo": False}),
                html.Div(className="row", children=[
                    html.Button("▶ play", id="play", n_clicks=0, style={"minWidth": "80px"}),
                    html.Div([dcc.Slider(id="replay-slider", min=0, max=1, step=1, value=0,
                                         marks=None, tooltip={"placement": "bottom", "always_visible": False},
                                         updatemode="drag")], style={"flex": "1"}),
                ]),
                html.Div(id="step-info", style={"fontSize": "13px", "marginTop": "8px"}),
            ]),
        ]),
        dcc.Interval(id="play-interval", interval=250, disabled=True),
        dcc.Store(id="replay-key"),
        html.H2("Fills (markouts in bps: side × (mid(t+h) − price) / price)"),
        dash_table.DataTable(id="fills-table", sort_action="native", page_size=25, **_TABLE_STYLE),
    ])


# --------------------------------------------------------------------------- the app


def create_app(results_dir: str | Path = "results", eval_dir: str | Path = "evaluation_results",
               refresh_s: float = 5.0) -> Any:
    """The Dash app over ``results_dir`` (run folders) and ``eval_dir`` (evaluation folders).

    Args:
        results_dir: the parent of the run folders (``train.py --results_dir``).
        eval_dir: the parent of the ``evaluate.py`` output folders (``--out_dir``).
        refresh_s: how often the Runs view re-reads the run folders.

    Returns:
        The ``dash.Dash`` app (``app.run(host=..., port=...)`` serves it).
    """
    import dash
    from dash import dcc, html

    results_dir, eval_dir = Path(results_dir), Path(eval_dir)
    app = dash.Dash(__name__, title="rlmm dashboard", serve_locally=True, suppress_callback_exceptions=True,
                    update_title=None, external_scripts=[], external_stylesheets=[], index_string=_INDEX,
                    include_assets_files=False)
    app.layout = html.Div([
        dcc.Location(id="url", refresh=False),
        html.Header([html.H1("rlmm dashboard"), html.Nav(id="nav", style={"display": "flex", "gap": "24px"}),
                     html.Span(f"runs: {results_dir.resolve()}  ·  evaluations: {eval_dir.resolve()}",
                               className="where")]),
        html.Main(id="page"),
    ])
    _register_page_callbacks(app, results_dir, eval_dir, refresh_s)
    _register_runs_callbacks(app, results_dir)
    _register_eval_callbacks(app, results_dir, eval_dir)
    _register_replay_callbacks(app, results_dir, eval_dir)
    _register_playback_callbacks(app, results_dir, eval_dir)
    return app


def _register_page_callbacks(app: Any, results_dir: Path, eval_dir: Path, refresh_s: float) -> None:
    from dash import Input, Output, dcc, html

    @app.callback(Output("page", "children"), Output("nav", "children"),
                  Input("url", "pathname"), Input("url", "search"))
    def route(pathname: str | None, search: str | None) -> tuple[Any, Any]:
        path = (pathname or "/").rstrip("/") or "/runs"
        q = _query(search)
        if path == "/runs":
            page = _runs_page(q, refresh_s)
        elif path == "/evaluation":
            page = _evaluation_page(q, results_dir, eval_dir)
        elif path == "/replay":
            page = _replay_page(q, results_dir, eval_dir)
        else:
            page = html.Div([_notice(f"no page {pathname}; the views are " + ", ".join(p for p, _ in PAGES), "info")])
        nav = [dcc.Link(label, href=href, className="active" if href == path else "") for href, label in PAGES]
        return page, nav


# ----- runs


def _runs_rows(runs: list[dd.RunInfo]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        budget, steps = r.budget, r.timesteps
        progress = "" if steps is None else (f"{steps:,} / {budget:,}" if budget else f"{steps:,}")
        ev = r.log["eval_pnl_mean"].dropna() if r.log is not None and "eval_pnl_mean" in r.log else None
        rows.append({"id": r.name, "run": r.name, "status": r.status, "timesteps": progress,
                     "last eval pnl": None if ev is None or ev.empty else _num(float(ev.iloc[-1])),
                     "updated": _ago(r.updated), "note": r.message})
    return rows


def _register_runs_callbacks(app: Any, results_dir: Path) -> None:
    from dash import Input, Output, State, no_update
    from dash.exceptions import PreventUpdate

    @app.callback(Output("runs-table", "data"), Output("runs-table", "columns"), Output("runs-notice", "children"),
                  Output("runs-table", "selected_rows"),
                  Input("refresh", "n_intervals"), State("runs-table", "selected_rows"), State("runs-wanted", "data"))
    def refresh_runs(n: int, selected: list[int] | None, wanted: list[str] | None) -> tuple[Any, ...]:
        runs = sorted(dd.scan_runs(results_dir), key=lambda r: r.name)
        rows = _runs_rows(runs)
        cols = [{"name": c, "id": c} for c in ("run", "status", "timesteps", "last eval pnl", "updated", "note")]
        notices = []
        if not runs:
            notices.append(_notice(f"no run folder under {results_dir.resolve()} yet (python train.py writes one)",
                                   "info"))
        for r in runs:
            if r.status in (dd.STATUS_CORRUPT, dd.STATUS_WRITING):
                kind = "error" if r.status == dd.STATUS_CORRUPT else "warn"
                notices.append(_notice(f"{r.name}: {r.status}: {r.message}", kind))
        if n == 0:  # the first load: the runs of the URL, else the newest healthy one
            names = [r["id"] for r in rows]
            sel = [names.index(w) for w in (wanted or []) if w in names]
            if not sel:  # the most recently written healthy run with a log
                ok = [i for i, r in enumerate(runs) if r.log is not None
                      and r.status not in (dd.STATUS_CORRUPT, dd.STATUS_WRITING)]
                sel = [max(ok, key=lambda i: runs[i].updated)] if ok else []
            return rows, cols, notices, sel
        return rows, cols, notices, no_update

    @app.callback(Output("curves", "figure"), Output("metrics", "options"), Output("metrics", "value"),
                  Output("config-table", "data"), Output("config-table", "columns"), Output("curves-key", "data"),
                  Input("runs-table", "selected_rows"), Input("runs-table", "data"), Input("metrics", "value"),
                  Input("config-diff", "value"), State("curves-key", "data"))
    def draw_runs(selected: list[int] | None, rows: list[dict] | None, metrics: list[str] | None,
                  diff: list[str] | None, last_key: Any) -> tuple[Any, ...]:
        names = [rows[i]["id"] for i in (selected or []) if rows and i < len(rows)]
        runs = [dd.load_run(results_dir / n) for n in names]
        logs = {r.name: r.log for r in runs if r.log is not None}
        options = figs.metric_options(list(logs.values()))
        if metrics is None:
            metrics = [m for m in figs.DEFAULT_METRICS if m in options]
        key = [names, [dd._stamp(results_dir / n / "training_log.csv") for n in names],
               [dd._stamp(results_dir / n / "params.json") for n in names], metrics, diff]
        key = [list(k) if isinstance(k, tuple) else k for k in key]
        if key == last_key:
            raise PreventUpdate  # nothing moved since the last refresh: keep the page as it is
        fig = figs.training_curves(logs, metrics, uirevision=",".join(names))
        data, columns = _config_table(runs, bool(diff))
        return fig, [{"label": m, "value": m} for m in options], metrics, data, columns, key


def _config_table(runs: list[dd.RunInfo], only_diff: bool) -> tuple[list[dict], list[dict]]:
    table: dict[tuple[str, str], dict[str, str]] = {}
    for r in runs:
        for section, key, value in dd.flatten_config(r.params or {}):
            table.setdefault((section, key), {})[r.name] = value
    rows = []
    for (section, key), vals in table.items():
        if only_diff and len(runs) > 1 and len({vals.get(r.name, "") for r in runs}) == 1:
            continue
        rows.append({"section": section, "key": key, **{r.name: vals.get(r.name, "") for r in runs}})
    cols = [{"name": c, "id": c} for c in ("section", "key", *[r.name for r in runs])]
    return rows, cols


# ----- evaluation


def _find_eval(results_dir: Path, eval_dir: Path, key: str | None) -> dd.EvalInfo | None:
    """The evaluation of ``key`` among those found (a key from the page, never a path)."""
    for k, label, path in dd._eval_candidates(results_dir, eval_dir):
        if k == key:
            return dd.load_evaluation(k, label, path)
    return None


_SUMMARY_FIRST = ("policy", "n_episodes", "n_models", "pnl_mean", "pnl_ci95_low", "pnl_ci95_high", "pnl_std",
                  "win_rate", "sharpe_episode", "fill_ratio", "n_fills_mean", "adverse_selection_ratio")


def _register_eval_callbacks(app: Any, results_dir: Path, eval_dir: Path) -> None:
    from dash import Input, Output, dcc, html

    @app.callback(Output("eval-notice", "children"), Output("summary-table", "data"),
                  Output("summary-table", "columns"), Output("paired-graph", "figure"),
                  Output("paired-table", "data"), Output("paired-table", "columns"), Output("pnl-graph", "figure"),
                  Output("markout-graph", "figure"), Output("eval-replay-link", "children"),
                  Input("eval-select", "value"))
    def show_eval(key: str | None) -> tuple[Any, ...]:
        info = _find_eval(results_dir, eval_dir, key)
        if info is None:
            empty = figs._empty("evaluation folder not found")
            return _notice(f"evaluation {key!r} not found (moved or deleted?)", "error"), [], [], empty, [], [], \
                empty, empty, None
        notes = []
        if info.status != dd.STATUS_FINISHED:
            notes.append(_notice(f"{info.path}: {info.status}: {info.message}",
                                 "error" if info.status == dd.STATUS_CORRUPT else "warn"))
        for w in info.meta.get("warnings", []) or []:
            notes.append(_notice(f"warning recorded by the evaluation: {w}", "warn"))
        if info.meta:
            n_ep = info.meta.get("n_episodes")
            notes.append(_notice(f"{info.path} · {n_ep} episodes per policy · seed {info.meta.get('seed')}"
                                 f" · models: {', '.join(info.meta.get('models') or []) or 'none'}", "info"))
        s_rows, s_cols = [], []
        if info.summary is not None:
            cols = [c for c in _SUMMARY_FIRST if c in info.summary]
            cols += [c for c in info.summary.columns if c not in cols and c != "annualisation"]
            s_rows, s_cols = _records(info.summary, cols)
        p_rows, p_cols = [], []
        if info.paired is not None and not info.paired.empty:
            p_rows, p_cols = _records(info.paired, [c for c in ("baseline", "diff_mean", "diff_ci_lo", "diff_ci_hi",
                                                                "sign_p", "wilcoxon_p", "share_positive")
                                                    if c in info.paired])
        link = None
        if info.has_replay:
            link = html.P(dcc.Link("replay the recorded episodes of this evaluation →",
                                   href="/replay?" + urlencode({"eval": info.key})))
        return (notes, s_rows, s_cols, figs.paired_figure(info.paired), p_rows, p_cols,
                figs.pnl_distribution(info.episodes), figs.markout_figure(info.summary, dd.markout_horizons(info)),
                link)


# ----- replay


def _default_episode(rows: Any, want: Any) -> int | None:
    """``want`` if recorded, else the first episode with a fill (more to see than a quiet one), else the first."""
    values = [int(e) for e in rows["episode"]]
    if want is not None and str(want).isdigit() and int(want) in values:
        return int(want)
    with_fills = [int(e) for e, n in zip(rows["episode"], rows["n_fills"], strict=True) if n > 0]
    return (with_fills or values or [None])[0]


def _policy_value(policy: str, model: str) -> str:
    return f"{policy}|{model}"


def _register_replay_callbacks(app: Any, results_dir: Path, eval_dir: Path) -> None:
    from dash import Input, Output, State
    from dash.exceptions import PreventUpdate

    def index_of(key: str | None) -> tuple[dd.EvalInfo | None, Any, str | None]:
        info = _find_eval(results_dir, eval_dir, key)
        if info is None:
            return None, None, f"evaluation {key!r} not found (moved or deleted?)"
        try:
            return info, dd.replay_index(info.replay_path), None
        except FileNotFoundError:
            return info, None, f"{info.replay_path}: no such file"
        except dd.FolderError as exc:
            return info, None, f"the replay file cannot be read: {exc}"

    @app.callback(Output("replay-policy", "options"), Output("replay-policy", "value"),
                  Output("replay-notice", "children"),
                  Input("replay-eval", "value"), State("replay-wanted", "data"))
    def pick_policy(key: str | None, wanted: dict | None) -> tuple[Any, ...]:
        info, idx, err = index_of(key)
        if err:
            return [], None, _notice(err, "error")
        pairs = list(dict.fromkeys(zip(idx["policy"], idx["model"], strict=True)))
        options = [{"label": p + (f" ({m})" if m else ""), "value": _policy_value(p, m)} for p, m in pairs]
        want = (wanted or {}).get("policy")
        values = [o["value"] for o in options]
        value = next((v for v in values if want and (v == want or v.split("|")[0] == want)), values[0] if values else None)
        notes = []
        if info.status != dd.STATUS_FINISHED:
            notes.append(_notice(f"{info.path}: {info.status}: {info.message}", "warn"))
        return options, value, notes

    @app.callback(Output("replay-episode", "options"), Output("replay-episode", "value"),
                  Input("replay-policy", "value"), State("replay-eval", "value"), State("replay-wanted", "data"))
    def pick_episode(pv: str | None, key: str | None, wanted: dict | None) -> tuple[Any, ...]:
        if not pv:
            return [], None
        info, idx, err = index_of(key)
        if err:
            return [], None
        policy, model = pv.split("|", 1)
        rows = idx[(idx["policy"] == policy) & (idx["model"] == model)]
        import pandas as pd

        options = [{"label": f"episode {int(r.episode)} — {pd.to_datetime(r.start_ts, unit='ms'):%Y-%m-%d %H:%M:%S}"
                             f", {int(r.n_fills)} fills", "value": int(r.episode)} for r in rows.itertuples()]
        return options, _default_episode(rows, (wanted or {}).get("episode"))

    @app.callback(Output("replay-graph", "figure"), Output("replay-slider", "max"), Output("replay-slider", "marks"),
                  Output("replay-slider", "value"), Output("fills-table", "data"), Output("fills-table", "columns"),
                  Output("replay-key", "data"),
                  Input("replay-episode", "value"), State("replay-policy", "value"), State("replay-eval", "value"))
    def show_episode(episode: int | None, pv: str | None, key: str | None) -> tuple[Any, ...]:
        if episode is None or not pv:
            raise PreventUpdate
        info = _find_eval(results_dir, eval_dir, key)
        if info is None:
            raise PreventUpdate
        policy, model = pv.split("|", 1)
        try:
            steps, fills, meta = dd.replay_episode(info.replay_path, policy, model, int(episode))
        except (FileNotFoundError, dd.FolderError) as exc:
            fig = figs._empty(f"cannot read {info.replay_path.name}: {exc}")
            return fig, 1, None, 0, [], [], None
        title = f"{policy}{f' ({model})' if model else ''}, episode {episode}"
        fig = figs.replay_figure(steps, fills, meta.levels, title)
        n = max(len(steps) - 1, 1)
        marks = {int(i): f"{(steps['ts'].iloc[int(i)] - steps['ts'].iloc[0]) / 1000:.0f}s"
                 for i in _mark_positions(len(steps))}
        rows = figs.fills_table_rows(fills)
        names = list(rows[0]) if rows else ["time", "step", "side", "liquidity", "price", "size", "fee"]
        cols = _columns(names, [c not in ("time", "side", "liquidity") for c in names])
        store = {"key": key, "policy": policy, "model": model, "episode": int(episode), "levels": meta.levels}
        # the instant before the first fill (the order still resting, its queue visible), else the first decision
        start = max(int(fills["step"].iloc[0]) - 1, 0) if len(fills) else min(1, n)
        return fig, n, marks, start, rows, cols, store



def _register_playback_callbacks(app: Any, results_dir: Path, eval_dir: Path) -> None:
    from dash import Input, Output, Patch, State, no_update
    from dash.exceptions import PreventUpdate

    @app.callback(Output("ladder", "figure"), Output("replay-graph", "figure", allow_duplicate=True),
                  Output("step-info", "children"),
                  Input("replay-slider", "value"), Input("replay-key", "data"), prevent_initial_call=True)
    def show_step(i: int | None, store: dict | None) -> tuple[Any, ...]:
        if not store:
            raise PreventUpdate
        info = _find_eval(results_dir, eval_dir, store["key"])
        if info is None:
            raise PreventUpdate
        try:
            steps, _, meta = dd.replay_episode(info.replay_path, store["policy"], store["model"], store["episode"])
        except (FileNotFoundError, dd.FolderError):
            raise PreventUpdate from None
        i = int(min(max(i or 0, 0), len(steps) - 1))
        row = steps.iloc[i]
        patch = Patch()
        patch["layout"]["shapes"] = [figs.cursor_shape(figs._times([row["ts"]])[0].isoformat())]
        text = (f"step {i} · t+{(row['ts'] - steps['ts'].iloc[0]) / 1000:.1f} s · mid {row['mid']:.6g} · "
                f"inventory {row['inventory']:.4g} · PnL {row['pnl']:.4g} · fees {row['fees']:.4g}")
        return figs.ladder_figure(row, meta.levels), patch, text

    @app.callback(Output("play-interval", "disabled"), Output("play", "children"),
                  Input("play", "n_clicks"), State("play-interval", "disabled"), prevent_initial_call=True)
    def toggle_play(_: int, disabled: bool) -> tuple[bool, str]:
        return (False, "❚❚ pause") if disabled else (True, "▶ play")

    @app.callback(Output("replay-slider", "value", allow_duplicate=True),
                  Output("play-interval", "disabled", allow_duplicate=True),
                  Output("play", "children", allow_duplicate=True),
                  Input("play-interval", "n_intervals"), State("replay-slider", "value"), State("replay-slider", "max"),
                  prevent_initial_call=True)
    def advance(_: int, value: int | None, vmax: int | None) -> tuple[Any, ...]:
        vmax = int(vmax or 0)
        stride = max(1, vmax // 200)  # a whole episode plays in about 200 frames
        nxt = int(value or 0) + stride
        if nxt >= vmax:
            return vmax, True, "▶ play"
        return nxt, no_update, no_update


def _mark_positions(n: int, k: int = 6) -> list[int]:
    """``k`` evenly spaced slider marks over ``n`` steps.

    >>> _mark_positions(101, 5)
    [0, 25, 50, 75, 100]
    """
    if n <= 1:
        return [0]
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python dashboard.py``."""
    p = utils.OneLineErrorParser(prog="dashboard.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--results_dir", default="results", help="parent folder of the run folders (train.py --results_dir)")
    p.add_argument("--eval_dir", default="evaluation_results",
                   help="parent folder of the evaluation folders (evaluate.py --out_dir)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; the dashboard has no authentication, keep it on loopback")
    p.add_argument("--port", type=int, default=8050, help="port to listen on")
    p.add_argument("--refresh_s", type=float, default=5.0, help="how often the Runs view re-reads the run folders")
    p.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the dashboard until Ctrl-C."""
    from cli import run_cli

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.refresh_s <= 0:
            raise utils.CliError(f"--refresh_s must be > 0, got {args.refresh_s}")
        if not 0 < args.port < 65536:
            raise utils.CliError(f"--port must be in 1..65535, got {args.port}")
        try:
            loopback = ipaddress.ip_address(args.host).is_loopback
        except ValueError:
            loopback = args.host == "localhost"
        if not loopback:
            warnings.warn(f"--host {args.host}: the dashboard has no authentication and is now reachable from "
                          "other machines", stacklevel=1)
        for d in (args.results_dir, args.eval_dir):
            if not Path(d).is_dir():
                logger.info("%s does not exist (yet): its views stay empty until it does", d)
        app = create_app(args.results_dir, args.eval_dir, args.refresh_s)
        print(f"dashboard: http://{args.host}:{args.port}/ (runs: {Path(args.results_dir).resolve()}, "
              f"evaluations: {Path(args.eval_dir).resolve()}); Ctrl-C stops it", flush=True)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # No version check: the page must not reach for anything outside this machine.
        app.run(host=args.host, port=args.port, debug=False, dev_tools_disable_version_check=True)
        return 0

    return run_cli("dashboard.py", body, argv, interrupted="stopped")


if __name__ == "__main__":
    sys.exit(main())
