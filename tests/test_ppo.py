"""Unit tests of ppo_agent / ppo_network: GAE, loss vs NumPy, save/load, determinism, config plumbing."""

from __future__ import annotations

import logging

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from gymnasium.vector import AutoresetMode

import ppo_agent
from ppo_agent import (
    PPOAgent,
    PPOConfig,
    compute_gae,
    ppo_losses_numpy,
    space_from_json,
    space_to_json,
)
from ppo_network import NetworkConfig, build_actor_critic, dummy_batch
from utils import flat_field_paths, from_flat, replace_flat


def make_cfg(**leaves) -> PPOConfig:
    """A PPOConfig from leaf names (the network's included, as on the command line)."""
    return from_flat(PPOConfig, **leaves)


# jit_compile=False keeps the unit tests fast (XLA compilation costs seconds per agent);
# the XLA path is exercised by test_xla_matches_graph_mode and the slow learning test.
SMALL = dict(n_steps=16, batch_size=32, n_epochs=2, hidden_size=16, conv_filters=4, lstm_units=8,
             jit_compile=False)


# --------------------------------------------------------------------------- tiny envs


class ConstantRewardEnv(gym.Env):
    """Reward 1 every step; episode cut after ``max_steps`` (truncated) or ended (terminated)."""

    def __init__(self, max_steps: int = 5, terminate: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.max_steps, self.terminate, self.t = max_steps, terminate, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.max_steps
        obs = np.array([self.t / 10.0, 0.0], np.float32)
        return obs, 1.0, end and self.terminate, end and not self.terminate, {}


class FakeMarketEnv(gym.Env):
    """Dict observation shaped like MarketMaking-v0's (book, features, agent); a learnable reward.

    The reward is +1 when the action matches the sign of the mean of the book's channel 0 at
    the last step of the window, so a policy reading the book can learn it.
    """

    def __init__(self, continuous: bool = False, window: int = 6, levels: int = 5, episode: int = 20) -> None:
        self.observation_space = gym.spaces.Dict({
            "book": gym.spaces.Box(-np.inf, np.inf, (window, levels, 4), np.float32),
            "features": gym.spaces.Box(-np.inf, np.inf, (window, 3), np.float32),
            "agent": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        })
        self.action_space = (gym.spaces.Box(-2.0, 2.0, (2,), np.float32) if continuous
                             else gym.spaces.Discrete(3))
        self.continuous, self.episode, self.t = continuous, episode, 0

    def _obs(self):
        s = self.observation_space
        self._last = {k: self.np_random.normal(size=sp.shape).astype(np.float32) for k, sp in s.spaces.items()}
        self._last["agent"] = np.clip(self._last["agent"], -1, 1)
        return self._last

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        sign = float(np.sign(self._last["book"][-1, :, 0].mean()))
        a = float(np.asarray(action).ravel()[0]) if self.continuous else float(int(action) - 1)
        reward = 1.0 if np.sign(a) == sign else 0.0
        self.t += 1
        info = {"episode": {"pnl": float(self.t)}} if self.t >= self.episode else {}
        return self._obs(), reward, False, self.t >= self.episode, info


def make_vec(env_fn, n=2, same_step=False):
    kwargs = {"autoreset_mode": AutoresetMode.SAME_STEP} if same_step else {}
    return gym.vector.SyncVectorEnv([env_fn for _ in range(n)], **kwargs)


# --------------------------------------------------------------------------- GAE


def test_gae_hand_computed_with_truncation_and_termination():
    gamma, lam = 0.9, 0.8
    # env 0: steps 0-1 one episode truncated at step 1 (final value 10), step 2 a new episode.
    # env 1: terminated at step 1 (no bootstrap), then a new episode.
    rewards = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    values = np.array([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])
    next_values = np.array([[1.0, 1.0], [10.0, 10.0], [4.0, 4.0]])  # V(final obs)=10 at step 1
    terminated = np.array([[0, 0], [0, 1], [0, 0]], float)
    dones = np.array([[0, 0], [1, 1], [0, 0]], float)
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    d2 = 3.0 + 0.9 * 4.0 - 1.5                       # 5.1, rollout end bootstraps
    d1_trunc = 2.0 + 0.9 * 10.0 - 1.0                # 10.0, truncation bootstraps V(final)
    d1_term = 2.0 - 1.0                              # 1.0, termination does not
    d0 = 1.0 + 0.9 * 1.0 - 0.5                       # 1.4
    expected = np.array([[d0 + 0.72 * d1_trunc, d0 + 0.72 * d1_term], [d1_trunc, d1_term], [d2, d2]])
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    np.testing.assert_allclose(ret, expected + values, rtol=1e-6)


def _constant_value_agent(env, gamma, same_step, terminate):
    envs = make_vec(lambda: ConstantRewardEnv(max_steps=5, terminate=terminate), n=2, same_step=same_step)
    cfg = make_cfg(n_steps=23, batch_size=46, n_epochs=1, gamma=gamma, gae_lambda=1.0,
                    normalize_obs=False, hidden_size=8, jit_compile=False)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=0)
    c = 1.0 / (1.0 - gamma)
    head = agent.model.critic_head
    head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
    head.bias.assign(np.full(head.bias.shape, c, np.float32))
    agent.learn(envs, 10_000, callback=lambda a, s: False)
    return agent.rollout_buffer, c


@pytest.mark.parametrize("same_step", [False, True], ids=["next_step", "same_step"])
def test_infinite_horizon_truncation_bootstraps(same_step):
    # SB3 tests/test_gae.py::test_infinite_horizon: with V = 1/(1-gamma) exact for an endless
    # reward-1 stream, every return must equal V when truncation bootstraps correctly.
    buf, c = _constant_value_agent(None, 0.9, same_step, terminate=False)
    real = buf.mask == 1
    assert (~real).any() != same_step  # NEXT_STEP stores reset-only steps, masked out
    np.testing.assert_allclose(buf.returns[real], c, rtol=1e-5)
    assert np.all(buf.advantages[~real] == 0)


@pytest.mark.parametrize("same_step", [False, True], ids=["next_step", "same_step"])
def test_termination_does_not_bootstrap(same_step):
    buf, c = _constant_value_agent(None, 0.9, same_step, terminate=True)
    # The step that terminated has return exactly its reward 1; the one before 1 + 0.9.
    term = buf.terminated == 1
    assert term.any()
    np.testing.assert_allclose(buf.returns[term], 1.0, rtol=1e-6)
    t, e = np.argwhere(term)[0]
    if t >= 1:
        np.testing.assert_allclose(buf.returns[t - 1, e], 1.9, rtol=1e-6)


# --------------------------------------------------------------------------- loss vs NumPy


LOSS_CASES = {
    "discrete_default": (False, {}),
    "discrete_vclip_ent": (False, {"clip_range_vf": 0.1, "ent_coef": 0.05, "vf_coef": 0.7}),
    "continuous_noadvnorm": (True, {"normalize_advantage": False, "ent_coef": 0.01, "clip_range": 0.1}),
}


def _loss_check(continuous, overrides, seed=3):
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous else gym.spaces.Discrete(4)
    cfg = make_cfg(hidden_size=8, jit_compile=False, **overrides)
    agent = PPOAgent(obs_space, act_space, cfg, seed=seed)
    rng = np.random.default_rng(seed)
    n = 12
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    actions = (rng.normal(size=(n, 2)).astype(np.float32) if continuous
               else rng.integers(0, 4, n).astype(np.int32))
    old_logp = rng.normal(-1.0, 0.3, n).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    ret = rng.normal(size=n).astype(np.float32)
    old_v = rng.normal(size=n).astype(np.float32)
    mask = np.ones(n, np.float32)
    mask[[2, 7]] = 0.0
    dist, values = agent.model(obs)
    logp, ent = agent._dist_stats(dist, tf.constant(actions))
    weights = [w.numpy().copy() for w in agent.model.weights]
    clip = cfg.clip_range
    out = agent._train_fn(obs, actions, old_logp, adv, ret, old_v, mask, tf.constant(clip), tf.constant(0.0))
    ref = ppo_losses_numpy(logp.numpy(), old_logp, adv, values.numpy(), old_v, ret, ent.numpy(), mask, clip,
                           cfg.clip_range_vf, cfg.ent_coef, cfg.vf_coef, cfg.normalize_advantage)
    # learning rate 0: Adam must leave the weights untouched
    for w, before in zip(agent.model.weights, weights, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)
    return {k: float(v) for k, v in out.items()}, ref


@pytest.mark.parametrize("case", list(LOSS_CASES), ids=list(LOSS_CASES))
def test_ppo_loss_matches_numpy_reference(case):
    continuous, overrides = LOSS_CASES[case]
    out, ref = _loss_check(continuous, overrides)
    for k in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "loss"):
        assert out[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-5), k
    assert np.isfinite(out["grad_norm"]) and out["grad_norm"] > 0


@pytest.mark.parametrize("field,value", [("clip_range_vf", 0.05), ("ent_coef", 0.3), ("vf_coef", 2.0),
                                         ("normalize_advantage", False)])
def test_loss_config_values_reach_the_loss(field, value):
    out_default, _ = _loss_check(False, {})
    out, ref = _loss_check(False, {field: value})
    assert out["loss"] == pytest.approx(ref["loss"], rel=1e-4, abs=1e-5)
    assert out["loss"] != pytest.approx(out_default["loss"], rel=1e-6, abs=1e-7)


# --------------------------------------------------------------------------- save / load


def _trained(env_fn, cfg, seed=1, steps=64, n=2):
    envs = make_vec(env_fn, n=n)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=seed)
    agent.learn(envs, steps)
    return agent, envs


@pytest.mark.parametrize("kind,continuous", [("mlp", False), ("conv_lstm", False), ("conv_lstm", True)],
                         ids=["mlp", "conv_lstm", "conv_lstm_box"])
def test_save_load_roundtrip(tmp_path, kind, continuous):
    cfg = make_cfg(network=kind, normalize_reward=True, **SMALL)
    agent, envs = _trained(lambda: FakeMarketEnv(continuous=continuous), cfg)
    obs, _ = envs.reset(seed=5)
    agent.save(tmp_path / "a")
    loaded = PPOAgent.load(tmp_path / "a")
    np.testing.assert_array_equal(agent.predict(obs)[0], loaded.predict(obs)[0])
    np.testing.assert_array_equal(agent.predict_values(obs), loaded.predict_values(obs))
    # stochastic actions too: the RNG state was saved
    np.testing.assert_array_equal(agent.predict(obs, deterministic=False)[0],
                                  loaded.predict(obs, deterministic=False)[0])
    for a, b in zip(agent.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in agent.obs_rms:
        np.testing.assert_array_equal(agent.obs_rms[k].mean, loaded.obs_rms[k].mean)
    assert loaded.ret_rms.count == agent.ret_rms.count
    assert (loaded.num_timesteps, loaded.num_updates) == (agent.num_timesteps, agent.num_updates)
    assert loaded.config == agent.config


def test_resume_after_load_matches_uninterrupted_training(tmp_path):
    cfg = make_cfg(**SMALL)
    env_fn = lambda: ConstantRewardEnv(max_steps=7)  # noqa: E731
    a, envs = _trained(env_fn, cfg, steps=64)
    a.save(tmp_path / "a")
    b = PPOAgent.load(tmp_path / "a")
    a.learn(envs, 128)
    b.learn(make_vec(env_fn), 128)
    for wa, wb in zip(a.model.weights, b.model.weights, strict=True):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())


def test_predict_does_not_update_normaliser_and_single_obs():
    cfg = make_cfg(**SMALL)
    agent, envs = _trained(lambda: ConstantRewardEnv(), cfg)
    count = agent.obs_rms["obs"].count
    obs, _ = envs.reset(seed=0)
    batch_actions, _ = agent.predict(obs * 100)
    single, state = agent.predict(obs[0] * 100)
    assert agent.obs_rms["obs"].count == count
    assert batch_actions.shape == (2,) and np.ndim(single) == 0 and state is None
    assert single == batch_actions[0]


def test_space_json_roundtrip():
    space = FakeMarketEnv(continuous=True).observation_space
    assert space_from_json(space_to_json(space)) == space
    box = gym.spaces.Box(np.array([-1.0, -np.inf], np.float32), np.array([2.0, 3.0], np.float32), dtype=np.float32)
    assert space_from_json(space_to_json(box)) == box


def test_load_missing_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved PPO agent"):
        PPOAgent.load(tmp_path)


def test_config_saved_nested_and_agent_saved_flat_by_older_versions_loads(tmp_path):
    import orjson

    cfg = make_cfg(network="mlp", hidden_size=12, n_hidden_layers=1, **{k: v for k, v in SMALL.items()
                                                                         if k != "hidden_size"})
    agent = PPOAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2), cfg, seed=3)
    agent.save(tmp_path / "a")
    meta = orjson.loads((tmp_path / "a" / "agent.json").read_bytes())
    assert meta["config"]["net"]["hidden_size"] == 12 and "hidden_size" not in meta["config"]
    # rewrite it the way the version before the nested NetworkConfig did: one flat dict
    nested = meta["config"]
    meta["config"] = {**{k: v for k, v in nested.items() if k != "net"}, **nested["net"]}
    (tmp_path / "a" / "agent.json").write_bytes(orjson.dumps(meta))
    (tmp_path / "a" / "manifest.json").unlink()  # that version wrote no manifest (manifest.py)
    loaded = PPOAgent.load(tmp_path / "a")
    assert loaded.config == cfg
    obs = np.array([[0.1, -0.2]], np.float32)
    np.testing.assert_array_equal(agent.predict_values(obs), loaded.predict_values(obs))


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_training_on_cpu():
    cfg = make_cfg(network="conv_lstm", **SMALL)
    runs = []
    for seed in (4, 4, 5):
        agent, _ = _trained(lambda: FakeMarketEnv(), cfg, seed=seed, steps=64)
        runs.append([w.numpy() for w in agent.model.weights])
    for i, (w1, w2) in enumerate(zip(runs[0], runs[1], strict=True)):
        np.testing.assert_array_equal(w1, w2, err_msg=f"weight {i} differs between identical seeds")
    assert any(not np.array_equal(w1, w3) for w1, w3 in zip(runs[0], runs[2], strict=True))


# --------------------------------------------------------------------------- config plumbing


def _one_update(cfg, env_fn=lambda: ConstantRewardEnv(max_steps=7), n=2, total=10_000):
    envs = make_vec(env_fn, n=n)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=0)
    got = {}

    def cb(a, s):
        got.update(s)
        return a.num_updates < 2

    agent.learn(envs, total, cb)
    return agent, got


def _layer_names(agent):
    names = []
    for layer in agent.model._flatten_layers(include_self=False, recursive=True):
        names.append(layer.name)
    return names


def _check_schedule(field, value, cfg, base):
    if field in ("learning_rate", "anneal_lr"):
        agent, s = _one_update(replace_flat(cfg, anneal_lr=False) if field == "learning_rate" else cfg,
                               total=64)
        if field == "learning_rate":
            assert float(agent.optimizer.learning_rate) == pytest.approx(value)
        else:
            assert s["train/learning_rate"] < cfg.learning_rate  # annealed at the 2nd update
    else:  # clip_range, anneal_clip_range
        _, s = _one_update(cfg, total=64)
        if field == "clip_range":
            assert s["train/clip_range"] == pytest.approx(value)
        else:
            assert s["train/clip_range"] < cfg.clip_range


def _check_rollout_shape(field, value, cfg, base):
    agent, s = _one_update(cfg)
    assert agent.num_timesteps == 2 * cfg.n_steps * 2
    assert s["train/n_minibatches"] == cfg.n_epochs * (cfg.n_steps * 2 // cfg.batch_size)


def _check_gae(field, value, cfg, base):
    agent, _ = _one_update(cfg)
    b = agent.rollout_buffer
    adv, _ = compute_gae(b.rewards, b.values, b.next_values, b.terminated, b.dones, value if field == "gamma"
                         else cfg.gamma, value if field == "gae_lambda" else cfg.gae_lambda)
    np.testing.assert_allclose(b.advantages, adv * b.mask, rtol=1e-6)
    other = make_cfg(**base)
    adv2, _ = compute_gae(b.rewards, b.values, b.next_values, b.terminated, b.dones, other.gamma,
                          other.gae_lambda)
    assert not np.allclose(adv, adv2)


def _check_target_kl(field, value, cfg, base):
    # the first minibatch of an update has KL 0 (policy unchanged); the second exceeds 1e-9
    _, s = _one_update(replace_flat(cfg, learning_rate=0.05, n_epochs=4))
    assert s["train/early_stop"] == 1.0 and s["train/n_minibatches"] == 2


def _check_normalisers(field, value, cfg, base):
    if field in ("normalize_obs", "clip_obs"):
        agent, _ = _one_update(cfg)
        if field == "normalize_obs":
            assert agent.obs_rms is None
        else:
            assert np.abs(agent.normalize_obs(np.full((1, 2), 1e6, np.float32))).max() == pytest.approx(value)
        return
    agent, _ = _one_update(replace_flat(cfg, normalize_reward=True))  # normalize_reward, clip_reward
    assert agent.ret_rms is not None and agent.ret_rms.count > 1
    if field == "clip_reward":
        assert np.abs(agent.rollout_buffer.rewards).max() <= value + 1e-7


def _check_construction(field, value, cfg, base):
    agent = PPOAgent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), cfg)
    if field == "adam_eps":
        assert agent.optimizer.epsilon == value
    elif field == "jit_compile":
        assert agent._train_fn._jit_compile is value and agent._policy_fn._jit_compile is value
    else:  # device
        assert agent.device == "/CPU:0"


_FIELD_CHECKS = {
    "learning_rate": _check_schedule, "anneal_lr": _check_schedule, "clip_range": _check_schedule,
    "anneal_clip_range": _check_schedule, "n_steps": _check_rollout_shape, "batch_size": _check_rollout_shape,
    "n_epochs": _check_rollout_shape, "gamma": _check_gae, "gae_lambda": _check_gae, "target_kl": _check_target_kl,
    "normalize_obs": _check_normalisers, "clip_obs": _check_normalisers, "normalize_reward": _check_normalisers,
    "clip_reward": _check_normalisers, "adam_eps": _check_construction, "jit_compile": _check_construction,
    "device": _check_construction,
}


def _check_training_fields(field, value):
    base = dict(SMALL)
    base.pop(field, None)
    cfg = make_cfg(**{**base, field: value})
    check = _FIELD_CHECKS.get(field)
    if check is None:
        raise AssertionError(f"no check for {field}")
    check(field, value, cfg, base)


TRAINING_FIELDS = {
    "learning_rate": 0.0123, "anneal_lr": True, "n_steps": 24, "batch_size": 16, "n_epochs": 3,
    "gamma": 0.5, "gae_lambda": 0.3, "clip_range": 0.33, "anneal_clip_range": True, "target_kl": 1e-9,
    "normalize_obs": False, "clip_obs": 0.7, "normalize_reward": True, "clip_reward": 0.01,
    "adam_eps": 1e-3, "jit_compile": True, "device": "cpu",
}
LOSS_FIELDS = {"clip_range_vf", "ent_coef", "vf_coef", "normalize_advantage"}  # test_loss_config_values...
NETWORK_FIELDS = {"network", "hidden_size", "n_hidden_layers", "activation", "shared_trunk", "layer_norm",
                  "conv_filters", "conv_kernel", "conv_layers", "lstm_units", "ortho_init", "log_std_init"}
OTHER_FIELDS = {"mixed_precision", "max_grad_norm"}  # dedicated tests below


def test_every_config_field_has_a_plumbing_check():
    fields = set(flat_field_paths(PPOConfig))  # leaves, the nested network's included
    covered = set(TRAINING_FIELDS) | LOSS_FIELDS | NETWORK_FIELDS | OTHER_FIELDS
    assert fields == covered, f"untested: {fields - covered}, unknown: {covered - fields}"


@pytest.mark.parametrize("field", list(TRAINING_FIELDS))
def test_training_config_value_reaches_consumer(field):
    _check_training_fields(field, TRAINING_FIELDS[field])


def test_network_config_values_reach_model():
    cfg = make_cfg(network="conv_lstm", hidden_size=24, n_hidden_layers=3, activation="relu", shared_trunk=True,
                    layer_norm=True, conv_filters=5, conv_kernel=2, conv_layers=3, lstm_units=7,
                    ortho_init=False, log_std_init=-0.7)
    env = FakeMarketEnv(continuous=True)
    agent = PPOAgent(env.observation_space, env.action_space, cfg)
    assert agent.model.net_config == cfg.net == NetworkConfig(
        network="conv_lstm", hidden_size=24, n_hidden_layers=3, activation="relu", shared_trunk=True,
        layer_norm=True, conv_filters=5, conv_kernel=2, conv_layers=3, lstm_units=7, ortho_init=False,
        log_std_init=-0.7)
    assert agent.model.hidden_dtype_policy == "float32"  # derived at build time (CPU), not a config field
    body = agent.model.actor_body
    assert agent.model.critic_body is body  # shared
    convs = [lay for lay in body.layers if "conv" in lay.name and hasattr(lay, "filters")]
    assert len(convs) == 3 and convs[0].filters == 5 and convs[0].kernel_size == (1, 2)
    lstm = body.get_layer("shared_lstm")
    assert lstm.units == 7
    dense = [lay for lay in body.layers if lay.name.startswith("shared_dense")]
    assert len(dense) == 3 and all(d.units == 24 for d in dense)
    assert all(body.get_layer(f"shared_act{i}").activation.__name__ == "relu" for i in range(3))
    assert any("ln" in lay.name for lay in body.layers)
    np.testing.assert_allclose(agent.model.log_std.numpy(), -0.7)
    assert isinstance(convs[0].kernel_initializer, keras.initializers.GlorotUniform)  # ortho_init=False
    mlp = PPOAgent(env.observation_space, env.action_space, replace_flat(cfg, network="mlp"))
    assert not any("lstm" in lay.name for lay in mlp.model.actor_body.layers)
    ortho = PPOAgent(env.observation_space, env.action_space, make_cfg(network="conv_lstm"))
    assert ortho.model.critic_body is not ortho.model.actor_body
    k = ortho.model.actor_body.get_layer("actor_dense0").kernel.numpy()
    np.testing.assert_allclose(k.T @ k, 2.0 * np.eye(k.shape[1]), atol=1e-4)  # orthogonal, gain sqrt(2)


def test_max_grad_norm_reaches_clipping(monkeypatch):
    seen = []
    real = tf.clip_by_global_norm

    def spy(grads, clip_norm, *args, **kwargs):
        seen.append(clip_norm)
        return real(grads, clip_norm, *args, **kwargs)

    monkeypatch.setattr(ppo_agent.tf, "clip_by_global_norm", spy)
    _one_update(make_cfg(max_grad_norm=0.123, **SMALL))
    assert seen and all(v == 0.123 for v in seen)


def test_mixed_precision_on_cpu_warns_and_uses_float32(caplog):
    with caplog.at_level(logging.WARNING, logger="ppo_agent"):
        agent = PPOAgent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), make_cfg(mixed_precision=True))
    assert "mixed_precision" in caplog.text
    assert all(w.dtype == "float32" for w in agent.model.weights)


@pytest.mark.parametrize("kwargs,match", [
    ({"gamma": 1.5}, "gamma"), ({"batch_size": 0}, "batch_size"), ({"network": "cnn"}, "network kind"),
    ({"device": "tpu"}, "device"), ({"activation": "gelu"}, "activation"), ({"clip_range": -0.1}, "clip_range"),
])
def test_invalid_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cfg(**kwargs)


def test_conv_lstm_on_vector_obs_raises():
    with pytest.raises(ValueError, match="conv_lstm"):
        PPOAgent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), make_cfg(network="conv_lstm"))


def test_env_space_mismatch_raises():
    agent = PPOAgent(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3), make_cfg(**SMALL))
    with pytest.raises(ValueError, match="action space"):
        agent.learn(make_vec(lambda: ConstantRewardEnv()), 64)


# --------------------------------------------------------------------------- market-shaped env


@pytest.mark.parametrize("network,same_step", [("conv_lstm", False), ("mlp", True)],
                         ids=["conv_lstm-next_step", "mlp-same_step"])
def test_fake_market_env_trains_end_to_end(network, same_step):
    envs = make_vec(lambda: FakeMarketEnv(), n=2, same_step=same_step)
    cfg = make_cfg(network=network, **SMALL)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=0)
    stats = []
    agent.learn(envs, 96, callback=lambda a, s: stats.append(s))
    assert len(stats) == 3 and agent.num_timesteps == 96
    assert all(np.isfinite(s["train/loss"]) for s in stats)
    assert "market/pnl" in stats[-1] and stats[-1]["market/pnl"] == 20.0
    assert {"rollout/ep_return_mean", "train/policy_loss", "train/value_loss", "train/entropy", "train/approx_kl",
            "train/clip_fraction", "train/learning_rate", "time/steps_per_s"} <= set(stats[-1])


def test_network_output_shapes():
    env = FakeMarketEnv()
    for kind in ("conv_lstm", "mlp"):
        model = build_actor_critic(env.observation_space, env.action_space, NetworkConfig(network=kind, lstm_units=4))
        dist, value = model(dummy_batch(env.observation_space, 3))
        assert dist.shape == (3, 3) and value.shape == (3,)
        assert dist.dtype == tf.float32 and value.dtype == tf.float32


def test_xla_matches_graph_mode():
    env = FakeMarketEnv()
    obs = {k: np.random.default_rng(0).normal(size=(4, *s.shape)).astype(np.float32)
           for k, s in env.observation_space.spaces.items()}
    out = []
    for jit in (False, True):
        agent = PPOAgent(env.observation_space, env.action_space, make_cfg(**{**SMALL, "jit_compile": jit}))
        out.append((agent.predict(obs)[0], agent.predict_values(obs)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5, atol=1e-6)


def test_compiled_epoch_equals_minibatch_loop():
    # _train_epoch (the whole epoch in one compiled call) must do exactly the _train_step sequence.
    space, act = gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Discrete(3)
    rng = np.random.default_rng(0)
    n, b = 40, 8
    data = (rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32),
            rng.normal(-1.1, 0.1, n).astype(np.float32), rng.normal(size=n).astype(np.float32),
            rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
            (rng.random(n) > 0.2).astype(np.float32))
    idx = rng.permutation(n).reshape(n // b, b).astype(np.int32)
    cfg = make_cfg(hidden_size=8, jit_compile=False)
    a, c = PPOAgent(space, act, cfg, seed=1), PPOAgent(space, act, cfg, seed=1)
    clip, lr = tf.constant(0.2), tf.constant(1e-2)
    sums, done, stopped = a._epoch_fn(*data, idx, clip, lr, tf.constant(np.inf, tf.float32))
    total = np.zeros(len(ppo_agent.TRAIN_METRICS))
    for row in idx:
        out = c._train_fn(*(x[row] for x in data), clip, lr)
        total += [float(out[k]) for k in ppo_agent.TRAIN_METRICS]
    assert int(done) == n // b and not bool(stopped)
    np.testing.assert_allclose(sums.numpy(), total, rtol=1e-4, atol=1e-6)
    for wa, wc in zip(a.model.weights, c.model.weights, strict=True):
        np.testing.assert_allclose(wa.numpy(), wc.numpy(), rtol=1e-5, atol=1e-6)


def test_reward_normalisation_is_vecnormalize_style():
    """Rewards are divided by the running std of the per-env discounted return, which restarts
    at every episode end; reset-only steps (NEXT_STEP autoreset) update nothing; the statistics
    are saved with the model; predict never touches them."""
    from utils import RunningMeanStd

    gamma, n_steps, max_steps = 0.5, 8, 3
    cfg = make_cfg(normalize_reward=True, gamma=gamma, clip_reward=1e6,
                    **{**SMALL, "n_steps": n_steps, "batch_size": 8})
    envs = make_vec(lambda: ConstantRewardEnv(max_steps=max_steps), n=1)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space, cfg, seed=0)
    agent.learn(envs, n_steps, None)
    # Reward 1 per step, episodes of 3 steps then one reset-only step: the discounted
    # returns seen are 1, 1.5, 1.75, (reset), 1, 1.5, 1.75, (reset).
    ref = RunningMeanStd(())
    expected = []
    for disc in (1.0, 1.5, 1.75, None, 1.0, 1.5, 1.75, None):
        if disc is None:
            expected.append(0.0)
            continue
        ref.update(np.array([disc]))
        expected.append(1.0 / np.sqrt(ref.var + 1e-8))
    assert agent.ret_rms.count == pytest.approx(ref.count)
    assert agent.ret_rms.mean == pytest.approx(ref.mean)
    assert agent.ret_rms.var == pytest.approx(ref.var)
    np.testing.assert_allclose(agent.rollout_buffer.rewards[:, 0], expected, rtol=1e-5)
    np.testing.assert_array_equal(agent.rollout_buffer.mask[:, 0], [1, 1, 1, 0, 1, 1, 1, 0])
    before = agent.ret_rms.state_dict()
    agent.predict(np.zeros((1, 2), np.float32))
    assert agent.ret_rms.state_dict() == before
    envs.close()


# --------------------------------------------------------------------------- collapse diagnostics


class QuotingEnv(FakeMarketEnv):
    """FakeMarketEnv whose per-step info carries market-env-like ``quotes`` and ``fills``:
    a bid rests after action 0, an ask after action 2, one fill after action 1."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        a = int(action)
        info = {**info, "quotes": {"bid": 100.0 if a == 0 else None, "ask": 101.0 if a == 2 else None},
                "fills": [{"side": 1}] if a == 1 else []}
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("continuous", [False, True], ids=["discrete", "continuous"])
def test_rollout_diagnostics_in_the_callback_stats(continuous):
    env_fn = (lambda: FakeMarketEnv(continuous=True)) if continuous else (lambda: QuotingEnv())
    envs = make_vec(env_fn, n=2)
    agent = PPOAgent(envs.single_observation_space, envs.single_action_space,
                     make_cfg(network="mlp", **SMALL), seed=0)
    stats = []
    agent.learn(envs, 64, callback=lambda a, s: stats.append(s))
    buf = agent.rollout_buffer
    valid = buf.mask.reshape(-1) > 0
    s = stats[-1]
    if continuous:
        a = np.clip(buf.actions.reshape(-1, 2)[valid], -2.0, 2.0)
        for j in range(2):
            assert s[f"diag/action{j}_mean"] == pytest.approx(a[:, j].mean(), rel=1e-5)
            assert -2.0 <= s[f"diag/action{j}_q10"] <= s[f"diag/action{j}_q50"] <= s[f"diag/action{j}_q90"] <= 2.0
        assert not any(k.startswith("diag/quoted") for k in s)  # no quotes in this env's info
        return
    acts = buf.actions.reshape(-1)[valid]
    shares = [s[f"diag/action_share_{i}"] for i in range(3)]
    assert shares == pytest.approx([np.mean(acts == i) for i in range(3)])
    assert sum(shares) == pytest.approx(1.0)
    assert s["diag/entropy_uniform"] == pytest.approx(np.log(3))
    # the env's info after each step: a bid rests iff the action was 0, an ask iff it was 2
    assert s["diag/quoted_bid_share"] == pytest.approx(shares[0])
    assert s["diag/quoted_ask_share"] == pytest.approx(shares[2])
    assert s["diag/fills_per_step"] == pytest.approx(shares[1])


def test_step_info_counts_read_vector_infos_with_none_and_nan():
    counts = {}
    infos = {"quotes": {"bid": np.array([100.0, np.nan, 99.0]), "_bid": np.array([True, True, True]),
                        "ask": np.array([None, 101.0, None], dtype=object), "_ask": np.array([True, True, False])},
             "fills": np.array([[{}], [], None], dtype=object), "_fills": np.array([True, True, False])}
    ppo_agent._count_step_info(infos, np.array([True, True, False]), counts)
    assert counts == {"steps": 2, "quoted_bid": 1, "quoted_ask": 1, "fills": 1}
    assert ppo_agent.step_info_diagnostics(counts) == {
        "diag/quoted_bid_share": 0.5, "diag/quoted_ask_share": 0.5, "diag/fills_per_step": 0.5}
