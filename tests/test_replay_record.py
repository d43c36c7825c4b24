"""replay_record: the per-step replay file of an evaluation (what the dashboard's replay view reads).

Checks that the file agrees with the env's own episode metrics (steps, fills, final PnL and
fees), that the book levels and quotes are consistent, that only the requested episodes are
kept, that the write is atomic, and that a damaged file gives an error naming it."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import evaluation
import replay_record
import synthetic_market
import utils
from event_driven_env import EnvConfig


@pytest.fixture(scope="module")
def env_config(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    data = synthetic_market.generate_file(d / "synth.jsonl", hours=0.1, seed=3)
    return utils.from_flat(EnvConfig, data_path=str(data), cache_dir=str(d / "cache"), episode_length_s=20.0,
                           warmup_s=2.0, time_range=(0.3, 1.0))


@pytest.fixture(scope="module")
def recorded(env_config, tmp_path_factory):
    """Two baselines, 3 episodes each, the first 2 recorded: ``(episodes, path)``."""
    import baselines as bl

    path = tmp_path_factory.mktemp("out") / replay_record.REPLAY_FILE
    cache: dict = {}
    env = cache["continuous"] = evaluation.make_env(utils.replace_flat(env_config, action_mode="continuous"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no intensity fit: A = k = 1 per tick
        pols = {k: v for k, v in bl.make_baselines(env).items() if k in ("join_best", "fixed_spread")}
    with replay_record.ReplayRecorder(path, levels=5, episodes=2,
                                      horizons_ms=utils.get_flat(env_config, "markout_horizons_ms")) as rec:
        episodes, _, _ = evaluation.evaluate_policies(pols, utils.replace_flat(env_config, action_mode="continuous"),
                                                      3, seed=1, progress=False, env_cache=cache, replay=rec)
    env.close()
    return episodes, path


def test_file_agrees_with_the_env_metrics(recorded):
    episodes, path = recorded
    index = replay_record.read_index(path)
    assert sorted(index["episode"].unique()) == [0, 1]  # episodes=2: the third is not recorded
    assert set(index["policy"]) == {"join_best", "fixed_spread"}
    assert index["n_fills"].sum() > 0
    for row in episodes[episodes["episode"] < 2].itertuples():
        steps, fills, meta = replay_record.read_episode(path, row.policy, "", row.episode)
        assert meta.levels == 5
        assert len(steps) == row.length_steps + 1  # the state after reset, then every step
        assert len(fills) == row.n_fills
        assert steps["pnl"].iloc[-1] == pytest.approx(row.pnl, abs=1e-9)
        assert steps["fees"].iloc[-1] == pytest.approx(row.fees, abs=1e-9)
        assert steps["ts"].iloc[0] == pytest.approx(row.start_ts)
        assert np.all(np.diff(steps["ts"]) > 0)
        if len(fills):
            maker = fills[fills["maker"]]
            assert maker["size"].sum() == pytest.approx(row.maker_volume, rel=1e-9)
            # a fill belongs to the first step at or after it
            at = steps["ts"].to_numpy()[fills["step"].to_numpy()]
            assert np.all((fills["ts"].to_numpy() <= at) | (fills["step"].to_numpy() == len(steps) - 1))


def test_book_levels_and_quotes_are_consistent(recorded):
    _, path = recorded
    steps, _, _ = replay_record.read_episode(path, "join_best", "", 0)
    bid = steps[[f"bid_px_{i}" for i in range(1, 6)]].to_numpy()
    ask = steps[[f"ask_px_{i}" for i in range(1, 6)]].to_numpy()
    assert np.all(np.diff(bid, axis=1)[np.isfinite(np.diff(bid, axis=1))] < 0)  # bids best (highest) first
    assert np.all(np.diff(ask, axis=1)[np.isfinite(np.diff(ask, axis=1))] > 0)
    np.testing.assert_allclose(bid[:-1, 0], steps["best_bid"].iloc[:-1])
    np.testing.assert_allclose(ask[:-1, 0], steps["best_ask"].iloc[:-1])
    assert np.isnan(bid[-1]).all()  # the last step's book is past the episode (markouts): not kept
    quoted = steps["quote_bid"].notna()
    assert quoted.mean() > 0.5  # join_best quotes nearly all the time
    assert (steps.loc[quoted, "bid_queue_ahead"] >= 0).all()
    assert (steps.loc[quoted, "bid_quote_size"] > 0).all()
    assert steps["quote_bid"].isna().iloc[0]  # nothing rests right after reset


def test_zero_episodes_writes_nothing_and_errors_name_the_file(env_config, tmp_path):
    path = tmp_path / "replay.parquet"
    with replay_record.ReplayRecorder(path, episodes=0):
        pass
    assert not path.exists()
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(replay_record.ReplayFileError, match="replay.parquet"):
        replay_record.read_index(path)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(replay_record.ReplayFileError, match="not a replay file"):
        replay_record.read_meta(tmp_path / "other.parquet")
    with pytest.raises(replay_record.ReplayFileError, match="no replay file"):
        replay_record.read_meta(tmp_path / "missing.parquet")


def test_write_is_atomic(recorded, tmp_path):
    """An evaluation interrupted after some episodes leaves the old file and no temp file."""
    _, src = recorded
    path = tmp_path / "replay.parquet"
    path.write_bytes(src.read_bytes())
    before = path.read_bytes()
    steps, fills, meta = replay_record.read_episode(src, "join_best", "", 0)

    class FakeEnv:
        def __init__(self, row):
            self.row = row

        def book_frame(self, levels):
            r = self.row
            return {"bid_ticks": [round(r.bid_px_1 / 0.01)], "bid_sz": [r.bid_sz_1],
                    "ask_ticks": [round(r.ask_px_1 / 0.01)], "ask_sz": [r.ask_sz_1], "tick_size": 0.01, "fees": 0.0, "bid_quote_px": None, "ask_quote_px": None, "bid_quote_size": None,
                    "ask_quote_size": None, "bid_queue_ahead": None, "ask_queue_ahead": None}

    with pytest.raises(KeyboardInterrupt):
        with replay_record.ReplayRecorder(path, levels=2, horizons_ms=meta.markout_horizons_ms) as rec:
            ep = rec.episode("p", "", 0)
            for r in steps.head(3).itertuples():
                ep.step(FakeEnv(r), {"market": {"ts": r.ts, "mid": r.mid}, "pnl": 0.0, "inventory": 0.0})
            ep.finish({"fills": [], "markout_horizons_ms": meta.markout_horizons_ms})
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["replay.parquet"]
