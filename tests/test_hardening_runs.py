"""Broken checkpoints and senseless settings end in one line naming the file or the setting.

Issue 17's run-side classes, each with a reproducer made here: checkpoint files cut or
changed after the save (``manifest.py``), a weights file of another model shape, a missing or
damaged latest checkpoint on ``--resume`` (falls back to the newest intact one with a
warning), evaluation reading only what it needs (never ``optimizer.npz``), and every float
setting checked for finiteness and its documented sane range (``utils.check_settings``).
The CLI checks run ``train.py`` / ``evaluate.py`` in subprocesses: exit status 2, one line.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import orjson
import pytest

import cli
import manifest
from ppo_agent import PPOAgent, PPOConfig
from ppo_network import NetworkConfig

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _agent(hidden: int = 8, seed: int = 0) -> PPOAgent:
    cfg = PPOConfig(n_steps=16, batch_size=8, n_epochs=1, jit_compile=False,
                    net=NetworkConfig(network="mlp", hidden_size=hidden, n_hidden_layers=1))
    return PPOAgent(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(3), cfg, seed=seed)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A saved agent (with its optimizer state) and its manifest."""
    d = tmp_path_factory.mktemp("agent") / "a"
    agent = _agent()
    agent.optimizer.build(agent.model.trainable_variables)  # Adam slots exist, as after training
    cli.save_model(agent, d, {"env_config": {}, "held_out": {"data_path": [], "time_range": [0.7, 1.0]}})
    return d


def _copy(saved: Path, tmp_path: Path) -> Path:
    d = tmp_path / "a"
    shutil.copytree(saved, d)
    return d


def _cut(p: Path, keep: float = 0.5) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])


# ------------------------------------------------------------------ checkpoint files


def test_manifest_lists_every_file_and_verifies(saved):
    listed = orjson.loads((saved / manifest.MANIFEST).read_bytes())["files"]
    assert set(listed) == {"agent.json", "model.weights.h5", "optimizer.npz", cli.ENV_CONFIG_FILE}
    assert manifest.verify(saved) is True
    loaded = PPOAgent.load(saved)
    assert loaded.num_timesteps == 0


@pytest.mark.parametrize("name", ["optimizer.npz", "model.weights.h5", "agent.json", cli.ENV_CONFIG_FILE])
def test_cut_file_named_in_one_line(saved, tmp_path, name):
    d = _copy(saved, tmp_path)
    _cut(d / name)
    with pytest.raises(ValueError) as e:
        PPOAgent.load(d)
        manifest.verify(d)
    msg = str(e.value)
    assert str(d / name) in msg and "\n" not in msg and "were written" in msg


def test_evaluation_does_not_read_the_optimizer(saved, tmp_path):
    d = _copy(saved, tmp_path)
    _cut(d / "optimizer.npz", 0.3)
    with pytest.raises(manifest.CheckpointError, match="optimizer.npz"):
        PPOAgent.load(d)  # training needs it: refused, naming it
    agent, meta = cli.load_model(d)  # evaluation: fine
    assert meta["held_out"]["time_range"] == [0.7, 1.0] and agent.num_updates == 0
    (d / "optimizer.npz").unlink()
    cli.load_model(d)


def test_damaged_files_without_manifest_still_name_the_file(saved, tmp_path):
    """Folders saved before manifests are read unchecked; a damaged file is still one line naming it."""
    d = _copy(saved, tmp_path)
    (d / manifest.MANIFEST).unlink()
    _cut(d / "optimizer.npz")
    with pytest.raises(manifest.CheckpointError, match=r"optimizer.npz: unreadable") as e:
        PPOAgent.load(d)
    assert "\n" not in str(e.value)
    _cut(d / "model.weights.h5")
    with pytest.raises(manifest.CheckpointError, match=r"model.weights.h5: cannot load these weights"):
        PPOAgent.load(d)
    (d / "agent.json").write_bytes(b'{"format_version": ')
    with pytest.raises(manifest.CheckpointError, match=r"agent.json: not valid JSON"):
        PPOAgent.load(d)
    with pytest.raises(Exception) as e:  # through the CLI helper: a CliError, one line
        cli.load_model(d)
    assert "agent.json" in str(e.value) and "\n" not in str(e.value)


def test_weights_of_another_shape_one_line(saved, tmp_path):
    d = _copy(saved, tmp_path)
    other = tmp_path / "other"
    _agent(hidden=16).save(other, include_optimizer=False)
    shutil.copy(other / "model.weights.h5", d / "model.weights.h5")
    manifest.write(d)  # a consistent folder: the shapes, not the bytes, are wrong
    with pytest.raises(manifest.CheckpointError) as e:
        PPOAgent.load(d, optimizer=False)
    msg = str(e.value)
    assert "model.weights.h5" in msg and "another shape" in msg and "\n" not in msg and len(msg) < 600


# ------------------------------------------------------------------ --resume falls back


def _run_with_checkpoints(tmp_path: Path, saved: Path, n: int) -> Path:
    run = tmp_path / "run"
    root = run / "checkpoints"
    for i in range(1, n + 1):
        shutil.copytree(saved, root / f"update_{i:06d}")
    (root / "latest.json").write_bytes(orjson.dumps({"checkpoint": f"update_{n:06d}", "num_timesteps": 0,
                                                     "num_updates": n, "best_eval_pnl": None, "wall_s": 1.0}))
    return run


def test_resume_falls_back_to_newest_intact_checkpoint(saved, tmp_path, caplog):
    import train

    run = _run_with_checkpoints(tmp_path, saved, 3)
    _cut(run / "checkpoints" / "update_000003" / "optimizer.npz")
    with caplog.at_level(logging.WARNING, logger="train"):
        ckpt = train._latest_checkpoint(run, warn=True)
    assert ckpt == run / "checkpoints" / "update_000002"
    text = caplog.text
    assert "update_000003" in text and "optimizer.npz" in text and "newest intact checkpoint, update_000002" in text
    assert (run / "checkpoints" / "damaged_update_000003").is_dir()  # kept, out of the rotation
    # the folder latest.json names is missing: older ones are still found
    shutil.rmtree(run / "checkpoints" / "update_000002")
    (run / "checkpoints" / "latest.json").write_bytes(b'{"checkpoint": "update_0000')  # and it is cut
    assert train._latest_checkpoint(run, warn=True) == run / "checkpoints" / "update_000001"
    assert train._read_latest(run) == {}
    _cut(run / "checkpoints" / "update_000001" / "agent.json")
    assert train._latest_checkpoint(run, warn=True) is None


# ------------------------------------------------------------------ settings


def _cfg_cases():
    from event_driven_env import EnvConfig
    from market_features import FeatureConfig
    from reward import RewardConfig
    from sim_exchange import ExchangeConfig

    nan, inf = math.nan, math.inf
    return [
        (ExchangeConfig, "maker_fee_bps", nan), (ExchangeConfig, "maker_fee_bps", 100_000.0),
        (ExchangeConfig, "taker_fee_bps", inf), (ExchangeConfig, "entry_latency_ms", inf),
        (ExchangeConfig, "latency_sigma", 50.0), (ExchangeConfig, "queue_power", nan),
        (RewardConfig, "inventory_penalty_gamma", inf), (RewardConfig, "terminal_inventory_penalty", nan),
        (EnvConfig, "episode_length_s", inf), (EnvConfig, "decision_interval_ms", nan),
        (EnvConfig, "warmup_s", 1e9), (EnvConfig, "order_size", inf), (EnvConfig, "max_loss", inf),
        (EnvConfig, "tick_size", 1e20), (EnvConfig, "continuous_max_offset", inf),
        (FeatureConfig, "vol_long_ms", 1e12), (PPOConfig, "learning_rate", 5.0), (PPOConfig, "ent_coef", inf),
        (PPOConfig, "max_grad_norm", nan), (PPOConfig, "target_kl", inf), (PPOConfig, "clip_obs", inf),
        (NetworkConfig, "log_std_init", nan), (NetworkConfig, "log_std_init", 100.0),
    ]


@pytest.mark.parametrize("case", range(len(_cfg_cases())))
def test_float_setting_finite_and_in_range(case):
    cls, name, value = _cfg_cases()[case]
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name}") as e:
        cls(**{name: value})
    assert "\n" not in str(e.value)


def test_sane_ranges_are_documented():
    from event_driven_env import EnvConfig
    from reward import RewardConfig
    from sim_exchange import ExchangeConfig

    doc = (REPO / "docs" / "reliability.md").read_text()
    for cls in (ExchangeConfig, RewardConfig, EnvConfig, PPOConfig):
        for name, (lo, hi) in cls.SANE_RANGES.items():
            assert f"`{cls.__name__}.{name}`" in doc and f"{lo:g} .. {hi:g}" in doc, (cls.__name__, name)


# ------------------------------------------------------------------ the CLIs: exit 2, one line


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)


def _last_line_is_the_error(res: subprocess.CompletedProcess, prog: str) -> str:
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{prog}: error")]
    assert len(lines) == 1 and res.stderr.strip().splitlines()[-1] == lines[0], res.stderr[-2000:]
    return lines[0]


def test_train_cli_damaged_data_and_nan_fee(tmp_path):
    src = b"".join(orjson.dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot" if i == 0 else "delta",
                                 "ts": 1000 + i, "data": {"s": "BTCUSDT", "b": [["100.0", str(1 + i % 3)]],
                                                          "a": [["100.5", "1"]], "u": 1 + i}}) + b"\n"
                   for i in range(5000))
    cut = tmp_path / "day.jsonl.gz"
    cut.write_bytes(gzip.compress(src)[:-8])
    env_cache = {"--results_dir": str(tmp_path / "results")}
    res = _run("train.py", ["--data_path", str(cut), "--total_timesteps", "64", "--results_dir",
                            env_cache["--results_dir"]], tmp_path)
    line = _last_line_is_the_error(res, "train.py")
    assert str(cut) in line and "ends before the end" in line and ".plain" not in line
    res = _run("train.py", ["--maker_fee_bps", "nan", "--total_timesteps", "64"], tmp_path)
    assert "maker_fee_bps" in _last_line_is_the_error(res, "train.py")


def test_evaluate_cli_damaged_weights(saved, tmp_path):
    d = _copy(saved, tmp_path)
    _cut(d / "model.weights.h5")
    res = _run("evaluate.py", ["--model_path", str(d)], tmp_path)
    line = _last_line_is_the_error(res, "evaluate.py")
    assert str(d / "model.weights.h5") in line
