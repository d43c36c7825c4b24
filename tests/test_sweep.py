"""The sweep file's one-line errors; sweep.py on a real local Ray instance (2 CPUs): a 2 x 2 grid x 2 seeds with a tiny budget,
one trial's train.py killed (a crash: reported, the sweep goes on), the sweep interrupted
(SIGINT) and resumed (Tune's restore): every trial folder complete, finished trials not run
again, the crashed one continued from its checkpoint, the summary, figure and best.args."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
       "RAY_USAGE_STATS_ENABLED": "0"}
TINY = ("--total_timesteps 128 --eval_interval 2 --eval_episodes 1 --checkpoint_interval 1 "
        "--final_eval_episodes 2 --final_eval_figures false --plot_interval 100 --episode_length_s 10 "
        "--warmup_s 2 --n_steps 64 --batch_size 64 --n_epochs 1 --n_envs 1 --jit_compile false "
        "--conv_filters 4 --lstm_units 8 --hidden_size 16")
SPEC = """name: tiny
seeds: 2
objective: agent_pnl_mean
train_args: --data_path {data} {tiny}
space:
  learning_rate: {{grid: [0.0003, 0.003]}}
  ent_coef: {{grid: [0.0, 0.01]}}
resources: {{cpu: 1}}
"""


def wait_for(cond, proc, what, timeout=600):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = cond()
        if got:
            return got
        assert proc.poll() is None, f"sweep.py exited ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def trials(sweep: Path) -> dict[str, dict]:
    out = {}
    for f in (sweep / "trials").glob("*/trial.json"):
        try:
            out[f.parent.name] = orjson.loads(f.read_bytes())
        except orjson.JSONDecodeError:  # being replaced (atomic rename): read next time
            pass
    return out


def run_dir(trial: Path) -> Path:
    runs = [p for p in trial.glob("run_*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def a_checkpointed_train_py(sweep: Path):
    """``(trial folder, pid)`` of a running train.py that has saved a checkpoint."""
    for pid_file in (sweep / "trials").glob("*/train.pid"):
        runs = list(pid_file.parent.glob("run_*/checkpoints/latest.json"))
        done = list(pid_file.parent.glob("run_*/evaluation"))
        if runs and not done:
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, 0)
            except OSError:
                continue
            return pid_file.parent, pid
    return None


@pytest.mark.slow
def test_grid_with_seeds_crash_interrupt_and_resume(tmp_path):
    pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install -r requirements-sweep.txt)")
    import train
    from synthetic_market import generate_file

    data = generate_file(tmp_path / "synth_ETHUSDT.jsonl", hours=0.1, seed=11)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(data=data, tiny=TINY))
    cmd = [sys.executable, str(REPO / "sweep.py"), "--results_dir", str(tmp_path / "sweeps"), "--num_cpus", "2",
           "--quiet"]
    proc = subprocess.Popen([*cmd, "--config", str(spec)], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        sweep = wait_for(lambda: next((tmp_path / "sweeps").glob("tiny_*"), None), proc, "the sweep folder")
        # A crash: one trial's train.py is killed after its first checkpoint.
        crashed, pid = wait_for(lambda: a_checkpointed_train_py(sweep), proc, "a checkpointed train.py")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: trials(sweep).get(crashed.name, {}).get("status") == "error", proc, "the error record")
        # The sweep goes on: another trial finishes; then Ctrl-C.
        wait_for(lambda: sum(t["status"] == "finished" for t in trials(sweep).values()) >= 1, proc,
                 "a finished trial")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    assert f"Resume with: python sweep.py --resume {sweep}" in out
    assert "exited with code -9" in out  # the crash is reported
    first = pd.read_csv(sweep / "summary.csv").set_index("trial")
    assert first.loc[crashed.name, "status"] == "error"
    assert "exited with code -9" in first.loc[crashed.name, "error"]
    finished = {name: run_dir(sweep / "trials" / name) for name in first.index[first["status"] == "finished"]}
    assert 1 <= len(finished) < 8  # interrupted with work left
    stamps = {name: (r / "evaluation" / "evaluation_summary.csv").stat().st_mtime_ns for name, r in finished.items()}

    r = subprocess.run([*cmd, "--resume", str(sweep), "--retry_errored"], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    recs = trials(sweep)
    assert len(recs) == 8 and all(t["status"] == "finished" for t in recs.values()), recs
    assert sorted((t["config"]["learning_rate"], t["config"]["ent_coef"], t["config"]["seed"]) for t in recs.values()) \
        == sorted((lr, ec, s) for lr in (0.0003, 0.003) for ec in (0.0, 0.01) for s in (0, 1))
    for name in recs:
        trial = sweep / "trials" / name
        run = run_dir(trial)
        assert (trial / "train.log").stat().st_size > 0
        for f in ("params.json", "training_log.csv", "checkpoints/latest.json", "models/final_model/agent.json",
                  "evaluation/evaluation_summary.csv", "evaluation/paired_differences.csv"):
            assert (run / f).is_file(), (name, f)
        params = orjson.loads((run / "params.json").read_bytes())
        assert params["seed"] == recs[name]["config"]["seed"]
        assert params["ppo_config"]["learning_rate"] == recs[name]["config"]["learning_rate"]
        assert params["ppo_config"]["ent_coef"] == recs[name]["config"]["ent_coef"]
    for name, run in finished.items():  # not run again
        assert run_dir(sweep / "trials" / name) == run
        assert (run / "evaluation" / "evaluation_summary.csv").stat().st_mtime_ns == stamps[name]
    # the crashed trial continued from its own checkpoint
    assert orjson.loads((run_dir(crashed) / "params.json").read_bytes())["resumed"]

    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 8 and (summary["status"] == "finished").all()
    assert summary["objective"].notna().all() and (summary["objective"] == summary["agent_pnl_mean"]).all()
    configs = pd.read_csv(sweep / "configs.csv")
    assert len(configs) == 4 and (configs["n_finished"] == 2).all()
    assert configs["objective_mean"].is_monotonic_decreasing
    assert (sweep / "sweep_summary.png").read_bytes()[:4] == b"\x89PNG"
    best = orjson.loads((sweep / "best.json").read_bytes())
    assert best["objective_mean"] == pytest.approx(configs["objective_mean"].iloc[0])
    parser, _ = train.build_parser()
    ns = parser.parse_args([f"@{sweep / 'best.args'}"])  # what `python train.py @best.args` reads
    assert ns.learning_rate == best["config"]["learning_rate"] and ns.ent_coef == best["config"]["ent_coef"]
    assert ns.data_path == [str(data)] and ns.total_timesteps == 128
    assert "seed" not in best["config"] and ns.seed == 0


@pytest.mark.parametrize("text, message", [
    ("name: x\nspace: {learning_rate: {grid: [1]}}\nseed: 3\n", "unknown key(s) ['seed']"),
    ("name: x\nspace: {learning_rate: {range: [1, 2]}}\n", "space.learning_rate: expected one of"),
    ("name: x\nspace: {gamma: {uniform: [0.99, 0.9]}}\n", "space.gamma.uniform: expected [low, high]"),
    ("name: x\nspace: {gamma: {grid: [0.9]}}\nobjective: sharpe\n", "objective 'sharpe' not one of"),
    ("name: x\nspace: {gamma: {grid: [0.9]}}\nscheduler: {type: pbt}\n", "only {type: asha"),
    ("name: a/b\nspace: {gamma: {grid: [0.9]}}\n", "name 'a/b'"),
    ("space: {gamma: {grid: [0.9]}}\n", "missing key 'name'"),
])
def test_sweep_file_errors_name_file_and_key(tmp_path, text, message):
    import sweep

    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(sweep.SweepError) as exc:
        sweep.load_spec(f)
    assert str(f) in str(exc.value) and message in str(exc.value)


def test_spec_values_become_train_flags(tmp_path):
    import sweep

    f = tmp_path / "ok.yaml"
    f.write_text("name: ok\nseeds: 2\ntrain_args: --total_timesteps 64 --normalize_reward false\n"
                 "space: {learning_rate: {grid: [0.001, 0.0003]}, layer_norm: {choice: [true]}}\n")
    spec = sweep.load_spec(f, seeds=3)
    assert spec.seeds == 3 and spec.train_args == ("--total_timesteps", "64", "--normalize_reward", "false")
    assert sweep.trial_flags({"learning_rate": 0.001, "layer_norm": True, "seed": 1}, spec.space) == \
        ["--learning_rate", "0.001", "--layer_norm", "true", "--seed", "1"]
