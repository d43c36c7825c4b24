"""dashboard.py in a real browser, and the folder reading behind it.

The browser test trains a tiny run (``train.py``, whose final evaluation writes
``results/<run>/evaluation`` with its replay file) and evaluates it once more
(``evaluate.py`` → ``evaluation_results/``), adds a corrupt run, a run being written and a
damaged evaluation beside them, starts ``python dashboard.py`` on a free loopback port and
loads every view in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
Selenium). Each view must draw its graphs with data, show the problems in the page, make no
request outside 127.0.0.1, log no console error, and leave the folders untouched.
Screenshots go to a temporary folder (printed), or to ``$RLMM_SCREENSHOT_DIR`` when set.
Without a browser or Selenium the browser test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pandas as pd
import pytest

import dashboard_data as dd
import utils

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TINY = ["--episode_length_s", "20", "--warmup_s", "2", "--n_steps", "64", "--batch_size", "64",
        "--n_epochs", "1", "--n_envs", "1", "--jit_compile", "false", "--no_progress",
        "--conv_filters", "4", "--lstm_units", "8", "--hidden_size", "16"]
BASELINES = ["fixed_spread", "join_best"]
WAIT_S = 120.0  # a loaded 2-core machine renders slowly; no timing is asserted


# --------------------------------------------------------------------------- folder reading (no browser)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_run_states(tmp_path):
    log = "update,timesteps,reward\n1,64,0.5\n2,128,0.7\n"
    _write(tmp_path / "done" / "params.json", '{"total_timesteps": 128, "env_config": {"seed": 1}}')
    _write(tmp_path / "done" / "training_log.csv", log)
    (tmp_path / "done" / "models" / "final_model").mkdir(parents=True)
    _write(tmp_path / "live" / "params.json", '{"total_timesteps": 1000}')
    _write(tmp_path / "live" / "training_log.csv", log)
    _write(tmp_path / "old" / "params.json", "{}")
    _write(tmp_path / "old" / "training_log.csv", log)
    for p in (tmp_path / "old").iterdir():
        os.utime(p, (time.time() - 2 * dd.ACTIVE_S,) * 2)
    os.utime(tmp_path / "old", (time.time() - 2 * dd.ACTIVE_S,) * 2)
    _write(tmp_path / "starting" / "checkpoints" / "x", "")
    _write(tmp_path / "badjson" / "params.json", '{"total_timesteps": 1')
    _write(tmp_path / "badlog" / "params.json", "{}")
    _write(tmp_path / "badlog" / "training_log.csv", b"\x00\xff\xfe garbage\n\x00")
    (tmp_path / "not_a_run").mkdir()
    runs = {r.name: r for r in dd.scan_runs(tmp_path)}
    assert "not_a_run" not in runs
    assert runs["done"].status == dd.STATUS_FINISHED and runs["done"].timesteps == 128 and runs["done"].budget == 128
    assert runs["live"].status == dd.STATUS_TRAINING
    assert runs["old"].status == dd.STATUS_STOPPED and "--resume" in runs["old"].message
    assert runs["starting"].status == dd.STATUS_WRITING and "params.json" in runs["starting"].message
    assert runs["badjson"].status == dd.STATUS_CORRUPT and "params.json" in runs["badjson"].message
    assert runs["badlog"].status == dd.STATUS_CORRUPT and "training_log.csv" in runs["badlog"].message
    assert dd.scan_runs(tmp_path / "missing") == []


def test_reads_follow_the_file(tmp_path):
    """A cached read is redone when the file changes (live refresh), and an error is not sticky."""
    p = _write(tmp_path / "params.json", "{broken")
    with pytest.raises(dd.FolderError, match="params.json"):
        dd.read_json(p)
    _write(p, '{"seed": 1}')
    os.utime(p, ns=(time.time_ns() + 10**9,) * 2)
    assert dd.read_json(p) == {"seed": 1}


def test_evaluation_states(tmp_path):
    ev = tmp_path / "evals"
    _write(ev / "ok" / "evaluation_summary.csv", "policy,pnl_mean\nagent,1.0\n")
    _write(ev / "ok" / "episodes.csv", "policy,episode,pnl\nagent,0,1.0\n")
    _write(ev / "ok" / "paired_differences.csv", "metric,baseline\n")
    _write(ev / "ok" / "evaluation_meta.json", '{"env_config": {"markout_horizons_ms": [100, 1000]}}')
    _write(ev / "partial" / "evaluation_summary.csv", "policy,pnl_mean\nagent,1.0\n")
    _write(ev / "broken" / "evaluation_summary.csv", "no_policy_column\n1\n")
    _write(ev / "broken" / "evaluation_meta.json", "[]")
    found = {e.key: e for e in dd.scan_evaluations(tmp_path / "results", ev)}
    assert found["eval:ok"].status == dd.STATUS_FINISHED and not found["eval:ok"].has_replay
    assert found["eval:partial"].status == dd.STATUS_WRITING and "evaluation_meta.json" in found["eval:partial"].message
    broken = found["eval:broken"]
    assert broken.status == dd.STATUS_CORRUPT
    assert "evaluation_meta.json" in broken.message and "'policy'" in broken.message


def test_flatten_config():
    rows = dd.flatten_config({"seed": 0, "env_config": {"exchange": {"maker_fee_bps": 2.0}},
                              "train_settings": {"n_envs": 8}, "command": ["train.py", "--seed", "0"]})
    assert ("env_config", "exchange.maker_fee_bps", "2.0") in rows
    assert ("run", "command", "train.py --seed 0") in rows and ("train_settings", "n_envs", "8") in rows


# --------------------------------------------------------------------------- the browser


def _browser_or_skip():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    for exe, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(exe).exists():
            pytest.skip(f"no headless browser: {exe} missing (apt-get install -y chromium chromium-driver; "
                        f"Debian package {pkg})")
    return webdriver


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, cwd, timeout=400):
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (args[0], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny run with its final evaluation, one evaluate.py evaluation, and three damaged folders."""
    _browser_or_skip()
    from synthetic_market import generate_file

    root = tmp_path_factory.mktemp("dash")
    data = generate_file(root / "synth_ETHUSDT.jsonl", hours=0.1, seed=11)
    results, evals = root / "results", root / "evaluation_results"
    _run([str(REPO / "train.py"), "--data_path", str(data), "--total_timesteps", "192", "--eval_interval", "1",
          "--eval_episodes", "1", "--final_eval_episodes", "2", "--run_name", "tiny", "--seed", "3",
          "--results_dir", str(results), *TINY], root)
    run = next(p for p in results.iterdir() if p.is_dir())
    _run([str(REPO / "evaluate.py"), "--model_path", str(run), "--num_episodes", "2", "--baselines", *BASELINES,
          "--out_dir", str(evals), "--name", "again", "--no_progress"], root)
    ev = next(evals.iterdir())
    # a second run to overlay: a copy with another entropy curve, written an hour "earlier"
    other = results / f"{run.name}_b"
    shutil.copytree(run, other)
    log = pd.read_csv(other / "training_log.csv")
    log["entropy"] *= 0.9
    log.to_csv(other / "training_log.csv", index=False)
    for p in (*other.iterdir(), other):
        os.utime(p, (time.time() - 3600,) * 2)
    # a run "still training": its log grows during the test (test_runs_view), written 5 min ago
    live = results / "zz_live"
    shutil.copytree(run, live, ignore=shutil.ignore_patterns("models", "checkpoints", "evaluation"))
    for p in (*live.iterdir(), live):
        os.utime(p, (time.time() - 300,) * 2)
    # damaged neighbours: a corrupt run, a run being written, an evaluation with a damaged replay file
    _write(results / "zz_corrupt" / "params.json", '{"total_timesteps": ')
    _write(results / "zz_corrupt" / "training_log.csv", "update,timesteps\n1,64\n")
    _write(results / "zz_starting" / "training_log.csv", "update,timesteps\n")
    broken = evals / "zz_broken_replay"
    shutil.copytree(ev, broken)
    _write(broken / "replay.parquet", b"PAR1 truncated")
    return {"root": root, "results": results, "evals": evals, "run": run, "other": other, "live": live, "eval": ev,
            "data": data}


def _snapshot(*dirs: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if skip is not None and (p == skip or skip in p.parents):
                continue
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def server(folders):
    port = _free_port()
    before = _snapshot(folders["results"], folders["evals"], skip=folders["live"])
    log = open(folders["root"] / "dashboard.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, str(REPO / "dashboard.py"), "--results_dir", str(folders["results"]),
                             "--eval_dir", str(folders["evals"]), "--port", str(port), "--refresh_s", "2"],
                            cwd=folders["root"], env=ENV, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=5) as r:
                html = r.read().decode()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail("dashboard.py did not start: " + (folders["root"] / "dashboard.log").read_text()[-2000:])
            time.sleep(0.5)
    yield {"base": base, "html": html, "before": before, "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    webdriver = _browser_or_skip()
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
              "--window-size=1500,1300"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except WebDriverException as exc:
        pytest.skip(f"headless Chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(90)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("RLMM_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots: {d}")
    return d


_GRAPHS_JS = """
var out = {};
document.querySelectorAll('.dash-graph').forEach(function (holder) {
  var gd = holder.classList.contains('js-plotly-plot') ? holder : holder.querySelector('.js-plotly-plot');
  if (!gd || !holder.id) { return; }
  // _fullData: the traces as drawn, arrays decoded (the figure's numpy arrays arrive base64-packed)
  var traces = (gd._fullData || []).map(function (t) {
    var n = 0;
    ['x', 'y', 'z'].forEach(function (k) { if (t[k] && t[k].length > n) { n = t[k].length; } });
    return {type: t.type || 'scatter', name: t.name || '', n: n};
  });
  var title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
  // what was drawn in the DOM: line paths, markers, bars, boxes, heat-map images
  var drawn = gd.querySelectorAll('.scatterlayer path.js-line, .scatterlayer path.point, .barlayer path, ' +
                                  '.boxlayer path, .heatmaplayer image').length;
  out[holder.id] = {traces: traces, title: title, svg: gd.querySelectorAll('.main-svg').length, drawn: drawn};
});
return out;
"""


def _graphs(driver) -> dict[str, dict]:
    """``{graph id: {"traces": [{"type", "name", "n"}], "title", "svg"}}`` of the drawn Plotly graphs."""
    return driver.execute_script(_GRAPHS_JS)


def _wait(driver, what: str, cond, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - the page is still being drawn; retried until the deadline
            last = exc
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def _with_data(ids):
    def cond(driver):
        gs = _graphs(driver)
        ok = all(i in gs and gs[i]["svg"] and gs[i]["drawn"] and any(t["n"] > 0 for t in gs[i]["traces"])
                 for i in ids)
        return gs if ok else None
    return cond


def _page(driver, base: str, path: str):
    driver.get(base + path)
    driver.get_log("browser")  # drop nothing of this page: the log is read after it settles
    return driver


def _check_clean(driver, base: str):
    """No console error, and every resource the page loaded came from the dashboard itself."""
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(function (e) { return e.name; })")
    outside = [u for u in urls if not u.startswith(base + "/")]
    assert not outside, outside


def _tick(driver, row: int) -> None:
    """Click the checkbox of the runs table's ``row`` (found afresh: the table re-renders on refresh)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(20):
        try:
            driver.find_elements("css selector", "#runs-table input[type=checkbox]")[row].click()
            return
        except StaleElementReferenceException:
            time.sleep(0.2)
    pytest.fail(f"could not tick row {row} of the runs table")


def _text(driver, css: str) -> str:
    return "\n".join(e.text for e in driver.find_elements("css selector", css))


def _served_page_is_offline(server):
    """The HTML references only the server's own scripts and styles (no CDN)."""
    import re

    srcs = re.findall(r'(?:src|href)="([^"]+)"', server["html"])
    assert srcs and all(s.startswith("/") for s in srcs), srcs
    assert "cdn." not in server["html"].replace("dash-version.plotly.com", "")


def _runs_view(browser, server, folders, shots):
    base = server["base"]
    driver = browser
    driver.get(base + "/runs")
    gs = _wait(driver, "training curves with data", lambda: _with_data(["curves"])(driver))
    names = {t["name"] for t in gs["curves"]["traces"]}
    assert folders["run"].name in names
    assert len(gs["curves"]["traces"]) >= 6  # one per metric panel for the one selected run
    table = _text(driver, "#runs-table")
    assert folders["run"].name in table and "finished" in table
    notices = _wait(driver, "the damaged runs' notices", lambda: _text(driver, ".notice") or None)
    assert "zz_corrupt: corrupt" in notices and "params.json" in notices
    assert "zz_starting: being written" in notices
    config = _wait(driver, "the resolved config", lambda: _text(driver, "#config-table") or None)
    assert "maker_fee_bps" in config and "total_timesteps" in config
    # overlay the second run: tick its row, its lines join the first run's
    assert len(driver.find_elements("css selector", "#runs-table input[type=checkbox]")) == 5
    assert "training" in _text(driver, "#runs-table")  # zz_live
    _tick(driver, 1)  # rows by name: the run, its copy, zz_corrupt, zz_live, zz_starting
    _wait(driver, "two runs overlaid", lambda: {t["name"] for t in _graphs(driver)["curves"]["traces"]} ==
          {folders["run"].name, folders["other"].name})
    # live refresh: the training run's log grows while the page is open, its curve follows
    for i in (3, 0, 1):
        _tick(driver, i)

    def live_points():
        return max((t["n"] for t in _graphs(driver)["curves"]["traces"] if t["name"] == "zz_live"), default=0)

    n0 = _wait(driver, "the training run's curves", live_points)
    log = pd.read_csv(folders["live"] / "training_log.csv")
    more = log.tail(1).assign(update=log["update"].max() + 1, timesteps=log["timesteps"].max() + 64)
    utils.atomic_write_text(folders["live"] / "training_log.csv", pd.concat([log, more]).to_csv(index=False))
    _wait(driver, "the refresh to draw the new row", lambda: live_points() > n0)
    driver.save_screenshot(str(shots / "runs.png"))
    _check_clean(driver, base)


def _evaluation_view(browser, server, folders, shots):
    base = server["base"]
    driver = browser
    driver.get(base + "/evaluation?eval=eval:" + folders["eval"].name)
    ids = ["paired-graph", "pnl-graph", "markout-graph"]
    gs = _wait(driver, "evaluation graphs with data", lambda: _with_data(ids)(driver))
    policies = ["agent", "initial_agent", *BASELINES]  # initial_agent: the run's untrained model, a reference row
    assert [t["name"] for t in gs["pnl-graph"]["traces"] if t["type"] == "box"] == policies
    assert all(t["n"] == 2 for t in gs["pnl-graph"]["traces"])  # 2 episodes each
    assert [t["name"] for t in gs["markout-graph"]["traces"]] == policies
    summary = _text(driver, "#summary-table")
    for p in policies:
        assert p in summary
    assert "pnl_ci95_low" in summary
    paired = _text(driver, "#paired-table")
    assert all(b in paired for b in BASELINES)
    # sorting: click the pnl_mean header's sort arrow, the table reorders by it
    csv = pd.read_csv(folders["eval"] / "evaluation_summary.csv")
    col = driver.find_elements("css selector", "#summary-table th.column-3 .column-header--sort")
    assert col, "no sort control on the summary table"
    col[0].click()
    want = list(csv.sort_values("pnl_mean", kind="stable")["policy"])
    _wait(driver, "the summary sorted by pnl_mean",
          lambda: [e.text for e in driver.find_elements("css selector", "#summary-table td.column-0")] == want)
    driver.save_screenshot(str(shots / "evaluation.png"))
    _check_clean(driver, base)
    # the run's own final evaluation is listed and opens too
    driver.get(base + "/evaluation?eval=run:" + folders["run"].name)
    gs = _wait(driver, "the run's final evaluation", lambda: _with_data(ids)(driver))
    assert len([t for t in gs["pnl-graph"]["traces"] if t["type"] == "box"]) == 7  # agent, initial agent, 5 baselines
    _check_clean(driver, base)


def _replay_view(browser, server, folders, shots):
    import replay_record

    base = server["base"]
    driver = browser
    idx = replay_record.read_index(folders["eval"] / "replay.parquet")
    pick = idx.sort_values("n_fills", ascending=False).iloc[0]
    steps, fills, _ = replay_record.read_episode(folders["eval"] / "replay.parquet", pick.policy, pick.model,
                                                 int(pick.episode))
    assert len(fills) > 0, "the tiny evaluation has no fill to show"
    driver.get(base + "/replay?" + f"eval=eval:{folders['eval'].name}&policy={pick.policy}&episode={pick.episode}")
    gs = _wait(driver, "the replay and ladder graphs", lambda: _with_data(["replay-graph", "ladder"])(driver))
    traces = {t["name"]: t for t in gs["replay-graph"]["traces"]}
    assert traces["depth"]["type"] == "heatmap" and traces["depth"]["n"] > 0
    for name in ("mid", "agent bid", "agent ask", "inventory", "PnL", "fees"):
        assert traces[name]["n"] == len(steps), name
    n_marked = sum(t["n"] for name, t in traces.items() if name.startswith(("buy,", "sell,")))
    assert n_marked == len(fills)
    rows = _wait(driver, "the fills table",
                 lambda: driver.find_elements("css selector", "#fills-table tbody tr td.column-0") or None)
    assert len(rows) == min(len(fills), 25)
    ladder = gs["ladder"]
    assert {"bids", "asks"} <= {t["name"] for t in ladder["traces"]}
    first = ladder["title"]
    assert "step" in first
    # play: the slider moves and the ladder follows
    driver.find_element("css selector", "#play").click()
    _wait(driver, "the ladder to move on", lambda: _graphs(driver)["ladder"]["title"] != first)
    driver.find_element("css selector", "#play").click()  # pause
    driver.save_screenshot(str(shots / "replay.png"))
    _check_clean(driver, base)
    # a damaged replay file: a message in the page, no crash
    driver.get(base + "/replay?eval=eval:zz_broken_replay")
    msg = _wait(driver, "the damaged replay file's message", lambda: _text(driver, ".notice.error") or None)
    assert "zz_broken_replay/replay.parquet" in msg and "not a readable parquet file" in msg
    driver.save_screenshot(str(shots / "replay_damaged.png"))


def _wrote_nothing(browser, server, folders):
    """After every view was loaded (runs refreshed several times), the folders are as they were."""
    time.sleep(2.5)  # at least one more refresh of the Runs view's interval, if a page still runs it
    assert _snapshot(folders["results"], folders["evals"], skip=folders["live"]) == server["before"]
    assert server["proc"].poll() is None, "the dashboard process died"
    assert orjson.loads((folders["run"] / "params.json").read_bytes())["total_timesteps"] == 192


def test_dashboard_in_chromium(browser, server, folders, shots):
    """Every view in headless Chromium, then the folders unchanged.

    One test, not one per view: the run, the evaluation, the server and the browser are made
    once, and ``pytest -n 2`` cannot split the views across workers (each would make its own).
    """
    _served_page_is_offline(server)
    _runs_view(browser, server, folders, shots)
    _evaluation_view(browser, server, folders, shots)
    _replay_view(browser, server, folders, shots)
    _wrote_nothing(browser, server, folders)
