"""Issue 16: the research workflow tells the truth on a user's own file.

The design card's command on the real Bybit recording (budget line in real units,
``--inventory_penalty`` reaching the reward, a validation range disjoint from train and test,
degenerate-result warnings and CSV flags); prefix flags refused; ``--help`` and argument errors
without TensorFlow; SIGTERM handled like Ctrl-C; a second Ctrl-C and a full disk ending in the
resume hint; ``inspect`` failing loudly; AS/GLFT calibration on a flat-mid recording.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

import manifest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
BYBIT = REPO.parent / "shared" / "data" / "bybit" / "cryptofeed_v3_BYBIT_linear_ob200_publicTrade.jsonl"
needs_bybit = pytest.mark.skipif(not BYBIT.is_file(), reason=f"real recording {BYBIT} absent")

# A tiny network and rollout (as tests/test_train_cli.py): seconds per update on 2 cores.
TINY = ["--n_steps", "64", "--batch_size", "64", "--n_epochs", "1", "--n_envs", "1", "--jit_compile", "false",
        "--no_progress", "--conv_filters", "4", "--lstm_units", "8", "--hidden_size", "16"]
DESIGN_CARD = ["--data_path", str(BYBIT), "--symbol", "BTCUSDT", "--inventory_penalty", "0.05",
               "--learning_rate", "1e-5"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from synthetic_market import generate_file

    return generate_file(tmp_path_factory.mktemp("data") / "synth_ETHUSDT.jsonl", hours=0.1, seed=11)


def run_train(args, cwd, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- the design card


@needs_bybit
@pytest.mark.slow
def test_design_card_command_tells_the_truth(tmp_path):
    results = tmp_path / "results"
    r = run_train([*DESIGN_CARD, "--num_episodes", "2", "--eval_interval", "2", "--eval_episodes", "1",
                   "--final_eval_episodes", "2", "--results_dir", str(results), *TINY], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    err, out = r.stderr, r.stdout
    # the budget in real units, up front: the 0-0.6 training range holds 26.1 s, not a 300 s episode
    assert "plan: 522 steps = 2.0 episodes of 261 steps (26.1 s of data each)" in err
    assert "= 2.0 passes over it; estimated" in err
    assert "less than one episode of --episode_length_s 300" in err
    run = next(results.iterdir())
    params = orjson.loads((run / "params.json").read_bytes())
    reward = params["env_config"]["reward_config"]
    assert reward["reward"] == "pnl_inventory_penalty" and reward["inventory_penalty_gamma"] == 0.05
    data = params["data"]
    ranges = {k: tuple(data[k]["time_range"]) for k in ("train", "validation", "test")}
    assert ranges == {"train": (0.0, 0.6), "validation": (0.6, 0.7), "test": (0.7, 1.0)}
    assert data["validation"]["files"] == data["train"]["files"] == data["test"]["files"]
    assert params["budget"]["passes"] == pytest.approx(2.0) and params["steps_per_episode"] == 261
    meta = orjson.loads((run / "models" / "best_model" / "env_config.json").read_bytes())
    assert meta["validation"]["time_range"] == [0.6, 0.7] and meta["held_out"]["time_range"] == [0.7, 1.0]
    # degenerate results are flagged, in the terminal and in the CSV
    for text in ("holds 13.1 s of data, less than one 300 s episode", "only 1 distinct start time",
                 "scored the same PnL on every episode (std 0)", "AS/GLFT intensity fit failed"):
        assert "warning: degenerate: " in out and text in out, text
    summary = pd.read_csv(run / "evaluation" / "evaluation_summary.csv")
    assert summary["policy"].tolist() == ["agent", "initial_agent", "random", "fixed_spread", "join_best",
                                          "avellaneda_stoikov", "glft"]
    for flags in summary["flags"]:
        assert {"range_shorter_than_episode", "repeated_starts", "zero_variance"} <= set(flags.split(";"))
    glft = summary.set_index("policy").loc["glft"]
    assert "calibration_failed" in glft["flags"]
    # annualised ratios: empty with the reason, never nan or inf printed as a finding
    assert summary[["sharpe_episode_ann", "sharpe_step_ann"]].isna().all().all()
    assert summary["annualisation"].str.startswith("not annualised").all()
    assert np.isfinite(summary["pnl_before_liquidation_mean"]).all()
    paired = pd.read_csv(run / "evaluation" / "paired_differences.csv")  # no p-value over copies of one episode
    assert paired["baseline"].iloc[0] == "initial_agent" and paired[["sign_p", "diff_ci_lo"]].isna().all().all()
    # which model, on what, and that the test range was never used for selection; own timing
    assert "final evaluation of models/final_model" in out and "never used for training or model selection" in out
    assert "steps/s" in out.splitlines()[-1] and "elapsed" in out.splitlines()[-1]


@needs_bybit
def test_design_card_budget_of_500_episodes_is_refused(tmp_path, capsys):
    import train

    rc = train.main([*DESIGN_CARD, "--num_episodes", "500", "--results_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "replays the 26.1 s of training data 500 times (130,500 steps" in err and "--force" in err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize("argv", [["--inventory_penalty_g", "0.1"], ["--num_ep", "5"], ["--learning_r", "1e-5"]])
def test_prefix_of_a_flag_is_refused(argv, capsys):
    import train

    parser, _ = train.build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_every_parser_refuses_prefixes(capsys):
    import data_processor
    import evaluate

    with pytest.raises(SystemExit):
        evaluate.build_parser().parse_args(["--num_ep", "3"])
    with pytest.raises(SystemExit) as exc:
        data_processor.main(["inspect", "--sym", "X", "f.jsonl"])
    assert exc.value.code == 2 and "unrecognized arguments: --sym" in capsys.readouterr().err


def test_inventory_penalty_selects_the_penalty_reward(tiny_data, caplog):
    import train
    import utils

    parser, maps = train.build_parser()
    run = train._resolve_new_run(parser.parse_args(["--data_path", str(tiny_data), "--inventory_penalty", "0.05"]),
                                 maps)
    assert utils.get_flat(run["env"], "reward") == "pnl_inventory_penalty"
    assert utils.get_flat(run["env"], "inventory_penalty_gamma") == 0.05
    for extra, message in ((["--reward", "pnl"], "contradicts --reward pnl"),
                           (["--inventory_penalty_gamma", "0.1"], "not both")):
        args = parser.parse_args(["--data_path", str(tiny_data), "--inventory_penalty", "0.05", *extra])
        with pytest.raises(utils.CliError, match=message):
            train._resolve_new_run(args, maps)
    # a setting the chosen reward ignores is a warning, not silence
    with caplog.at_level(logging.WARNING):
        train._resolve_new_run(parser.parse_args(["--data_path", str(tiny_data), "--inventory_penalty_gamma", "0.3"]),
                               maps)
    assert "--inventory_penalty_gamma 0.3 is ignored: --reward pnl does not use it" in caplog.text


def test_split_defaults_and_flags(tiny_data, tmp_path):
    import train
    import train_plan
    import utils

    parser, _ = train.build_parser()

    def split(*argv):
        return train_plan.data_split(parser.parse_args(["--data_path", str(tiny_data), *argv]))

    s = split()
    assert (s.train_range, s.val_range, s.test_range) == ((0.0, 0.6), (0.6, 0.7), (0.7, 1.0))
    s = split("--val_range", "0.5", "0.6", "--train_range", "0", "0.5")
    assert (s.train_range, s.val_range, s.test_range) == ((0.0, 0.5), (0.5, 0.6), (0.7, 1.0))
    other = tmp_path / "other_day.jsonl"
    other.write_bytes(tiny_data.read_bytes())
    s = split("--eval_data_path", str(other))
    assert s.train_range[1] == s.val_range[0] and s.val_range[1] == 1.0 and s.test_range == (0.0, 1.0)
    assert s.test_files == [other] and s.val_files == s.train_files == [tiny_data]
    with pytest.raises(utils.CliError, match="overlap"):  # the training file given as the test file
        split("--eval_data_path", str(tiny_data))
    with pytest.raises(utils.CliError, match="--val_range .* and --eval_range .* overlap"):
        split("--val_range", "0.65", "0.75")


# --------------------------------------------------------------------------- fast --help


def test_help_and_argument_errors_do_not_import_tensorflow(tiny_data):
    code = (
        "import sys, train, evaluate\n"
        "def rc(f, argv):\n"
        "    try:\n"
        "        return f(argv)\n"
        "    except SystemExit as e:\n"
        "        return e.code\n"
        "assert rc(train.main, ['--help']) == 0\n"
        "assert rc(evaluate.main, ['--help']) == 0\n"
        "assert rc(train.main, ['--no_such_flag']) == 2\n"
        f"assert rc(train.main, ['--data_path', {str(tiny_data)!r}, '--eval_range', '0.9', '0.2']) == 2\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n"
        "print('no tensorflow')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("no tensorflow"), r.stderr[-2000:]


# --------------------------------------------------------------------------- interrupts, full disk


def _start_training(tiny_data, results, name):
    cmd = [sys.executable, str(REPO / "train.py"), "--data_path", str(tiny_data), "--total_timesteps", "100000",
           "--eval_interval", "0", "--checkpoint_interval", "1", "--run_name", name, "--results_dir", str(results),
           "--episode_length_s", "20", "--warmup_s", "2", *TINY]
    return subprocess.Popen(cmd, cwd=results.parent, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_updates(proc, results, n):
    deadline = time.time() + 240
    while time.time() < deadline:
        runs = list(results.glob("*/checkpoints/latest.json")) if results.exists() else []
        if runs and len(pd.read_csv(runs[0].parent.parent / "training_log.csv")) >= n:
            return runs[0].parent.parent
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.3)
    raise AssertionError(f"training never logged {n} updates")


@pytest.mark.slow
def test_sigterm_saves_checkpoint_and_resume_continues(tiny_data, tmp_path):
    results = tmp_path / "results"
    proc = _start_training(tiny_data, results, "term")
    run = _wait_for_updates(proc, results, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM: stopping after the current update" in err and "Traceback" not in err
    assert f"Resume with: python train.py --resume {run}" in err
    stopped_at = orjson.loads((run / "checkpoints" / "latest.json").read_bytes())["num_timesteps"]
    assert stopped_at == 64 * len(pd.read_csv(run / "training_log.csv"))
    r = run_train(["--resume", str(run), "--total_timesteps", str(stopped_at + 64), "--no_progress",
                   "--final_eval", "false"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert orjson.loads((run / "models" / "final_model" / "agent.json").read_bytes())["num_timesteps"] == \
        stopped_at + 64


@pytest.mark.slow
def test_second_ctrl_c_within_milliseconds_names_the_checkpoint(tiny_data, tmp_path):
    results = tmp_path / "results"
    proc = _start_training(tiny_data, results, "twice")
    run = _wait_for_updates(proc, results, 2)
    # Two signals a few ms apart may reach Python's handler as one (graceful stop); the third,
    # 50 ms later, lands during that stop and aborts at once: either way the checkpoint is named.
    for pause in (0.005, 0.05, 0):
        proc.send_signal(signal.SIGINT)
        time.sleep(pause)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "nothing saved" not in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"Resume with: python train.py --resume {run}" in last, err[-2000:]
    assert (run / "checkpoints" / orjson.loads((run / "checkpoints" / "latest.json").read_bytes())["checkpoint"]).is_dir()


def test_interrupt_message_names_the_latest_checkpoint(tmp_path, monkeypatch):
    import train

    monkeypatch.setitem(train._ACTIVE, "run_dir", None)
    assert train._interrupted() == "interrupted before training started; nothing saved"
    monkeypatch.setitem(train._ACTIVE, "run_dir", tmp_path)
    assert "before the first checkpoint" in train._interrupted()
    ck = tmp_path / "checkpoints" / "update_000003"
    ck.mkdir(parents=True)
    (ck / "agent.json").write_text("{}")  # an intact checkpoint (manifest.newest_intact): files + manifest
    manifest.write(ck)
    (tmp_path / "checkpoints" / "latest.json").write_bytes(orjson.dumps({"checkpoint": "update_000003"}))
    msg = train._interrupted()
    assert "update_000003" in msg and f"Resume with: python train.py --resume {tmp_path}" in msg
    assert "nothing saved" not in msg


@pytest.mark.slow
def test_disk_full_ends_in_one_line_with_the_file_and_the_resume_hint(tiny_data, tmp_path, monkeypatch, capsys):
    import train
    import utils

    real = utils.atomic_write_text
    writes = {"n": 0}

    def full_disk(path, text):
        if Path(path).name == "training_log.csv":
            writes["n"] += 1
            if writes["n"] == 2:  # the second update's log: the disk is full
                with utils.atomic_open(path):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, text)

    monkeypatch.setattr(utils, "atomic_write_text", full_disk)
    results = tmp_path / "results"
    rc = train.main(["--data_path", str(tiny_data), "--total_timesteps", "256", "--eval_interval", "0",
                     "--checkpoint_interval", "1", "--final_eval", "false", "--results_dir", str(results),
                     "--episode_length_s", "20", "--warmup_s", "2", *TINY])
    err = capsys.readouterr().err
    assert rc == 2
    run = next(results.iterdir())
    last = err.strip().splitlines()[-1]
    assert last.startswith("train.py: error: [Errno 28] No space left on device: ")
    assert str(run / "training_log.csv") in last
    assert f"Resume with: python train.py --resume {run}" in last and "update_000001" in last
    assert len(pd.read_csv(run / "training_log.csv")) == 1  # the old log is intact, no temp file left
    assert not list(run.glob(".training_log.csv.*"))


# --------------------------------------------------------------------------- data CLI, calibration


def test_inspect_exits_non_zero_when_nothing_could_be_read(tmp_path, tiny_data, capsys):
    import data_processor

    bad = tmp_path / "garbage.jsonl"
    bad.write_text("not json\n{broken\n")
    assert data_processor.main(["inspect", str(bad)]) == 1
    assert "no message could be read from" in capsys.readouterr().err
    assert data_processor.main(["inspect", str(tiny_data)]) == 0


def _flat_mid_recording(path: Path) -> tuple[list[int], int, int]:
    """A Bybit v5 file whose mid never moves (bid 100.0 / ask 100.2) and 200 trades 1-4 ticks deep."""
    t0, lines, trades = 1_700_000_000_000, [], []
    book = {"s": "TESTUSDT", "b": [[f"{100.0 - 0.1 * i:.1f}", "5"] for i in range(10)],
            "a": [[f"{100.2 + 0.1 * i:.1f}", "5"] for i in range(10)], "u": 1, "seq": 1}
    lines.append({"topic": "orderbook.50.TESTUSDT", "type": "snapshot", "ts": t0, "data": book, "cts": t0})
    depths = [1] * 8 + [2] * 4 + [3] * 2 + [4]
    for i in range(1000):  # deltas that never touch the best levels
        ts = t0 + 100 * (i + 1)
        lines.append({"topic": "orderbook.50.TESTUSDT", "type": "delta", "ts": ts, "cts": ts,
                      "data": {"s": "TESTUSDT", "b": [["99.0", str(5 + i % 3)]], "a": [], "u": i + 2, "seq": i + 2}})
        if i % 5 == 2:
            k, side = depths[(i // 5) % len(depths)], 1 if (i // 5) % 2 else -1
            price = 100.1 + side * (0.1 * k)
            trades.append(ts + 1)
            lines.append({"topic": "publicTrade.TESTUSDT", "type": "snapshot", "ts": ts + 1, "data": [
                {"T": ts + 1, "s": "TESTUSDT", "S": "Buy" if side > 0 else "Sell", "v": "0.1", "p": f"{price:.1f}",
                 "L": "PlusTick", "i": f"t{i}", "BT": False}]})
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    return trades, t0, t0 + 100_000


def test_calibration_on_a_flat_mid_recording_uses_the_trades(tmp_path):
    import baselines

    trades, t0, t1 = _flat_mid_recording(tmp_path / "flat.jsonl")
    fit = baselines.calibrate_from_file(tmp_path / "flat.jsonl", symbol="TESTUSDT")
    assert fit.n_orders == len(trades) == 200  # (the mid-change span was 0 s: no trade was used)
    assert fit.A > 0 and fit.k > 0
    half = baselines.calibrate_from_file(tmp_path / "flat.jsonl", symbol="TESTUSDT", time_range=(0.0, 0.5))
    assert half.n_orders == sum(t <= t0 + 0.5 * (t1 - t0) for t in trades)


def test_degenerate_summary_flags_and_annualisation():
    import evaluation_checks as ec

    summary = pd.DataFrame({"policy": ["agent", "glft"], "n_episodes": [30, 30], "pnl_std": [0.0, 1.0],
                            "sharpe_episode": [np.inf, -0.5], "sortino_episode": [-1.0, -0.4],
                            "sharpe_episode_ann": [np.nan, -2817.0], "sortino_episode_ann": [np.nan, -5.0],
                            "sharpe_step_ann": [1.0, 2.0], "sortino_step_ann": [1.0, 2.0], "annualisation": "x"})
    episodes = pd.DataFrame({"start_ts": np.arange(30)})
    flags, warns = ec.degenerate_flags(summary, episodes, 30, 30, 9000.0, 300.0, {"fit": "ok", "n_orders": 9})
    assert flags == {"agent": ["zero_variance"], "glft": ["calibration_few_orders"]}
    assert any("agent scored the same PnL" in w for w in warns) and any("9 aggressive orders" in w for w in warns)
    out = ec.apply_flags(summary, flags)
    assert out["flags"].tolist() == ["zero_variance", "calibration_few_orders"]
    assert out.loc[0, list(ec.ANNUALISED_COLUMNS)].isna().all() and out.loc[0, "annualisation"].startswith("not")
    assert out.loc[1, "sharpe_episode_ann"] == -2817.0  # 30 independent episodes, spread > 0: reported
    assert np.isnan(out.loc[0, "sharpe_episode"])  # +inf is never printed
