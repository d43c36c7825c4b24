"""The env's per-episode quoted shares (``quoted_bid_share``, ``quoted_ask_share``) against the
per-step ``info["quotes"]`` of the same episode, and their use by the evaluation."""

from __future__ import annotations

import numpy as np
import pytest

import synthetic_market
import utils
from event_driven_env import DISCRETE_ACTIONS, EnvConfig, MarketMakingEnv


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = synthetic_market.generate_file(tmp_path_factory.mktemp("synth") / "synth.jsonl", hours=0.1, seed=3)
    cfg = utils.from_flat(EnvConfig, data_path=str(data), episode_length_s=20.0, warmup_s=2.0)
    e = MarketMakingEnv(cfg)
    yield e
    e.close()


def _schedule(n_steps: int) -> list[int]:
    """Hold, then a bid 2 ticks behind for a while, an ask, cancel both, hold to the end."""
    a = {name: i for i, name in enumerate(DISCRETE_ACTIONS)}
    plan = [a["hold"]] * n_steps
    plan[10] = a["bid_offset_+2"]
    plan[60] = a["ask_offset_+2"]
    plan[120] = a["cancel_all"]
    return plan


def test_quoted_shares_match_the_per_step_quotes(env):
    _, info = env.reset(seed=1)
    n = 200  # 20 s of 100 ms decisions
    steps_with = np.zeros(2)
    n_steps = 0
    for action in _schedule(n):
        _, _, terminated, truncated, info = env.step(action)
        n_steps += 1
        q = info["quotes"]
        steps_with += (q["bid"] is not None, q["ask"] is not None)
        if terminated or truncated:
            break
    assert n_steps == n and (terminated or truncated)
    ep = info["episode"]
    # every quote is cancelled before the last step, so the closing cancel changes nothing
    assert ep["quoted_bid_share"] == pytest.approx(steps_with[0] / n)
    assert ep["quoted_ask_share"] == pytest.approx(steps_with[1] / n)
    assert 0 < ep["quoted_bid_share"] < 1 and ep["quoted_ask_share"] <= ep["quoted_bid_share"]


def test_a_policy_that_never_quotes_has_zero_shares_in_the_evaluation(env):
    import evaluation

    class Hold:
        action_mode = "discrete"

        def reset(self):
            pass

        def act(self, obs, info):
            return 0

    ep, steps, _ = evaluation.run_episode(env, Hold(), int(env.range_start_ts), seed=0)
    assert ep["quoted_bid_share"] == 0.0 and ep["quoted_ask_share"] == 0.0
    assert ep["pnl"] == 0.0 and np.all(steps == 0.0)  # doing nothing earns exactly 0
