"""The model market on the command line: what ``train.py --env as_model`` and ``evaluate.py`` share.

One job: the command-line side of ``model_market`` (PPO in the Avellaneda–Stoikov model
market ``AvellanedaStoikov-v0``): the flags and their resolution into configs, the records
saved with a run and beside each model, the periodic evaluation during training, and the
evaluation files against the closed-form strategies. ``train.py`` keeps its own loop
(``TrainingMonitor``: log, plots, checkpoints, Ctrl-C, ``--resume``) and only swaps the env,
the defaults and the evaluations; ``evaluate.py`` recognises a model-market model by its
saved ``env_config.json`` (``is_as_model``).

Public names:

- ``ENVS`` / ``ENV_HELP`` / ``env_of_run``: the values of ``train.py --env``, its help, and
  the env of a run (``--resume`` keeps the run's).
- ``AS_TRAIN_DEFAULTS``: the ``train.TrainSettings`` values of an ``as_model`` run.
- ``add_as_arguments`` / ``given_as_flags``: the model-market flags (``--as_setting`` and one
  ``--as_<field>`` per ``ASModelConfig`` / ``ASTrainingConfig`` field) and which were typed.
- ``as_configs_from_args`` / ``as_ppo_config_from_args``: flags -> configs.
- ``as_model_metadata`` / ``as_configs_from_params``: the record saved beside every model and
  in ``params.json``, and the configs of a saved run.
- ``check_training_seeds``: refuse a ``--seed`` whose training episodes could reach the
  held-out seeds.
- ``is_as_model`` / ``as_config_of`` / ``same_as_config``: recognise a saved model-market
  model, its config, and the one config of several models; ``evaluation_env``: the env as a
  model saw it (windowed for ``--network conv_lstm``), to check its spaces.
- ``warn_if_seen_in_training``: warn when evaluation paths use a seed a model trained on.
- ``periodic_eval_fn``: train.py's held-out evaluation on the validation paths.
- ``run_as_evaluation`` / ``format_as_report`` / ``final_evaluation``: an evaluation's files
  and terminal table; train.py's final one.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

import model_market as mm
import utils
from as_model_env import ASModelConfig, simulate
from model_market import ASTrainingConfig

logger = logging.getLogger(__name__)

ENVS: tuple[str, ...] = ("market", "as_model")
"""``market``: the event-driven replay env (``EnvConfig``); ``as_model``: ``AvellanedaStoikov-v0``."""

ENV_HELP = (
    "market: the event-driven market replay (EnvConfig and the data flags); as_model: the "
    "Avellaneda-Stoikov model market AvellanedaStoikov-v0 (the --as_* flags; PPO defaults "
    "model_market.AS_PPO_DEFAULTS, MLP; loop defaults model_market_cli.AS_TRAIN_DEFAULTS: 1000 "
    "episodes of 200 steps, 16 envs, evaluations on 200 / 1000 held-out paths; --network conv_lstm "
    "reads a window of the last --as_obs_window steps, 8 by default); --resume keeps the run's own "
    "(default: market)")
"""Help of ``train.py --env``."""

AS_TRAIN_DEFAULTS: dict[str, Any] = {
    "num_episodes": 1000, "n_envs": 16, "eval_interval": 10, "eval_episodes": 200,
    "final_eval_episodes": mm.EVAL_PATHS, "plot_interval": 10,
}
"""``TrainSettings`` of ``train.py --env as_model`` where they differ from the market's.

An episode is one simulated path of ``n_steps`` steps: 1,000 episodes of 200 steps are
``benchmarks/learn_as.py``'s measured budget of 200k steps (16 envs, 63 updates; every seed
reached >= 98 % of the optimum there). ``eval_episodes``/``final_eval_episodes`` are the
simulated paths of the periodic evaluation (``VALIDATION_SEED``, every 10 updates) and of the
final one (``EVAL_SEED``)."""

_SETTING_DEST = "as_setting"

# --------------------------------------------------------------------------- flags


def add_as_arguments(parser: argparse.ArgumentParser) -> dict[str, dict[str, str]]:
    """Add ``--as_setting`` and the ``--as_<field>`` flags of ``ASModelConfig`` and ``ASTrainingConfig``.

    Returns:
        ``{"as_model": {dest: field}, "as_training": {dest: field}}``.
    """
    g = parser.add_argument_group("model market (--env as_model)")
    settings = "; ".join(f"{k}: {', '.join(f'{f}={v}' for f, v in d.items()) or 'the ASModelConfig defaults'}"
                         for k, d in mm.AS_SETTINGS.items())
    g.add_argument(f"--{_SETTING_DEST}", choices=sorted(mm.AS_SETTINGS), default=None,
                   help=f"named setting the --as_* flags below start from ({settings}; as2008 is "
                        "Avellaneda-Stoikov 2008 with the PnL objective, cj mbt_gym's Cartea-Jaimungal "
                        "setting) (default: as2008)")
    return {
        "as_model": utils.add_dataclass_arguments(parser, ASModelConfig, prefix="as_",
                                                  title="model market (--env as_model): ASModelConfig"),
        "as_training": utils.add_dataclass_arguments(parser, ASTrainingConfig, prefix="as_", exclude=("n_envs",),
                                                     title="model market (--env as_model): ASTrainingConfig"),
    }


def env_of_run(env: str | None, resume: str | None) -> str:
    """``--env``; with ``--resume``, the run's own (``params.json``'s ``env``; runs without one: market).

    Raises:
        utils.CliError: ``--env`` names another env than the resumed run's.
    """
    if not resume:
        return env or "market"
    params_file = Path(resume) / "params.json"
    saved = orjson.loads(params_file.read_bytes()).get("env", "market") if params_file.is_file() else "market"
    if env not in (None, saved):
        raise utils.CliError(f"--resume {resume} is an --env {saved} run, not --env {env}")
    return saved


def given_as_flags(args: argparse.Namespace, maps: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The model-market flags typed on the command line (their dests), sorted."""
    given = [d for key in ("as_model", "as_training") for d in maps[key] if hasattr(args, d)]
    if getattr(args, _SETTING_DEST, None) is not None:
        given.append(_SETTING_DEST)
    return sorted(given)


def as_configs_from_args(args: argparse.Namespace, maps: Mapping[str, Mapping[str, str]], n_envs: int
                         ) -> tuple[str, ASModelConfig, ASTrainingConfig]:
    """``(setting, model config, training config)``: the named setting, then the typed ``--as_*`` flags.

    Raises:
        utils.CliError: a value the configs reject (their own message).
    """
    setting = getattr(args, _SETTING_DEST, None) or "as2008"
    cfg = utils.dataclass_from_args(ASModelConfig, args, dict(maps["as_model"]), base=mm.as_setting_config(setting))
    training = utils.dataclass_from_args(ASTrainingConfig, args, dict(maps["as_training"]),
                                         base=ASTrainingConfig(n_envs=n_envs))
    # --network conv_lstm reads the windowed Dict observation (ModelMarketWindow): resolved here so
    # that the saved run records the window it trained on.
    network = getattr(args, "network", mm.AS_PPO_DEFAULTS["network"])
    return setting, cfg, mm.resolve_obs_window(training, network)


def as_ppo_config_from_args(args: argparse.Namespace, ppo_map: Mapping[str, str]) -> Any:
    """``model_market.as_ppo_config()`` with the typed PPO flags.

    Raises:
        utils.CliError: an invalid value (the config's own message).
    """
    from ppo_agent import PPOConfig

    return utils.dataclass_from_args(PPOConfig, args, dict(ppo_map), base=mm.as_ppo_config())


def check_training_seeds(seed: int, n_envs: int, n_updates: int) -> None:
    """Refuse a training ``seed`` whose episode seeds (``model_market.training_seeds``) reach a held-out seed.

    Raises:
        utils.CliError: naming the seeds.
    """
    seen = mm.training_seeds(seed, n_envs, n_updates)
    for name, held_out in (("EVAL_SEED", mm.EVAL_SEED), ("VALIDATION_SEED", mm.VALIDATION_SEED)):
        if held_out in seen:
            raise utils.CliError(f"--seed {seed}: training episodes would use the seeds {seen.start}.."
                                 f"{seen.stop - 1}, which hold the held-out paths' model_market.{name} = "
                                 f"{held_out}; use a smaller --seed")


# --------------------------------------------------------------------------- records


def as_model_metadata(setting: str, config: ASModelConfig, training: ASTrainingConfig) -> dict[str, Any]:
    """The model-market record: the ``cli.ENV_CONFIG_FILE`` of every saved model and entries of ``params.json``.

    ``{"env": "as_model", "env_id", "as_setting", "as_model_config", "as_training_config",
    "held_out": {"eval_seed", "validation_seed"}}``; ``evaluate.py`` recognises a
    model-market model by ``env`` (``is_as_model``) and rebuilds its model from
    ``as_model_config``.
    """
    return {"env": "as_model", "env_id": mm.ENV_ID, "as_setting": setting,
            "as_model_config": utils.dataclass_to_dict(config),
            "as_training_config": utils.dataclass_to_dict(training),
            "held_out": {"eval_seed": mm.EVAL_SEED, "validation_seed": mm.VALIDATION_SEED}}


def as_configs_from_params(params: Mapping[str, Any], n_envs: int, source: str
                           ) -> tuple[str, ASModelConfig, ASTrainingConfig]:
    """``(setting, model config, training config)`` of a saved run (``n_envs``: the loop's, which may change)."""
    cfg = utils.dataclass_from_dict(ASModelConfig, params["as_model_config"], source=source)
    saved = {**params.get("as_training_config", {}), "n_envs": n_envs}
    return params.get("as_setting", "as2008"), cfg, utils.dataclass_from_dict(ASTrainingConfig, saved, source=source)


def is_as_model(meta: Mapping[str, Any] | None) -> bool:
    """Whether a model's ``env_config.json`` content is a model-market one.

    >>> is_as_model({"env": "as_model", "as_model_config": {}}), is_as_model({"env_config": {}}), is_as_model(None)
    (True, False, False)
    """
    return bool(meta) and meta.get("env") == "as_model"


def as_config_of(meta: Mapping[str, Any], source: str = "model") -> ASModelConfig:
    """The ``ASModelConfig`` a model-market model was trained on."""
    return utils.dataclass_from_dict(ASModelConfig, meta["as_model_config"], source=source)


def evaluation_env(meta: Mapping[str, Any], config: ASModelConfig) -> Any:
    """The model market as the model saw it in training: ``AvellanedaStoikov-v0``, windowed if it was.

    Used to check a model's spaces before an evaluation (which runs on ``simulate``).
    """
    from as_model_env import AvellanedaStoikovEnv

    env = AvellanedaStoikovEnv(config)
    window = int(meta.get("as_training_config", {}).get("obs_window", 0))
    return mm.WindowedModelObservation(env, window) if window else env


def same_as_config(metas: Mapping[str, Mapping[str, Any] | None]) -> ASModelConfig:
    """The one ``ASModelConfig`` of several model-market models (``{name: env_config.json content}``).

    Raises:
        utils.CliError: two models trained on different models or criteria (the first difference).
    """
    items = [(name, as_config_of(meta or {}, source=f"model {name}")) for name, meta in metas.items()]
    name0, ref = items[0]
    for name, cfg in items[1:]:
        for key, v in utils.dataclass_to_dict(ref).items():
            if getattr(cfg, key) != v:
                raise utils.CliError(f"models {name0} and {name} differ in {key} ({v!r} vs {getattr(cfg, key)!r}): "
                                     "every model must share the model market and criterion")
    return ref


def warn_if_seen_in_training(seed: int, agent: Any, meta: Mapping[str, Any], name: str) -> None:
    """``warnings.warn`` when evaluation paths of ``seed`` use a seed ``agent``'s training episodes used."""
    n_envs = int(meta.get("as_training_config", {}).get("n_envs", 1))
    seen = mm.training_seeds(int(agent.seed), n_envs, int(agent.num_updates))
    if seed in seen:
        warnings.warn(f"evaluation seed {seed} is one of the seeds {seen.start}..{seen.stop - 1} of {name}'s "
                      f"training episodes: these are not held-out paths (default: {mm.EVAL_SEED})", stacklevel=2)


# --------------------------------------------------------------------------- evaluations


def periodic_eval_fn(config: ASModelConfig, n_paths: int, seed: int = mm.VALIDATION_SEED
                     ) -> Callable[[Any], tuple[float, float, dict[str, float]]]:
    """``eval_fn(agent) -> (mean, std, extra)`` of the criterion on the same ``n_paths`` validation paths.

    ``extra``: ``eval/n_fills`` and ``eval/final_inv_std`` of the deterministic policy.
    """

    def eval_fn(agent: Any) -> tuple[float, float, dict[str, float]]:
        r = simulate(mm.AgentPolicy(agent), config, n_paths=n_paths, seed=seed)
        std = float(r.reward.std(ddof=1)) if n_paths > 1 else math.nan
        return float(r.reward.mean()), std, {"eval/n_fills": float(r.n_fills.mean()),
                                             "eval/final_inv_std": float(r.final_inventory.std())}

    return eval_fn


def run_as_evaluation(models: Mapping[str, Any], config: ASModelConfig, out_dir: str | Path,
                      n_paths: int = mm.EVAL_PATHS, seed: int = mm.EVAL_SEED,
                      extra_meta: Mapping[str, Any] | None = None) -> mm.ASComparison:
    """``model_market.compare_with_references`` written into ``out_dir``.

    Files: ``evaluation_summary.csv`` (``model_market.SUMMARY_COLUMNS``), ``paths.csv``
    (``PATH_COLUMNS``), ``paired_differences.csv`` (``PAIRED_COLUMNS``), ``evaluation_meta.json``.
    """
    t0 = time.perf_counter()
    comp = mm.compare_with_references(models, config, n_paths=n_paths, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    utils.atomic_write_text(out / "evaluation_summary.csv", comp.summary.to_csv(index=False))
    utils.atomic_write_text(out / "paths.csv", comp.paths.to_csv(index=False))
    utils.atomic_write_text(out / "paired_differences.csv", comp.paired.to_csv(index=False))
    utils.atomic_write_json(out / "evaluation_meta.json", {
        "env": "as_model", "env_id": mm.ENV_ID, "as_model_config": utils.dataclass_to_dict(config),
        "n_paths": n_paths, "seed": seed, "optimum": comp.optimum, "models": list(models),
        "references": [p for p in comp.summary["policy"] if p != mm.AGENT],
        "wall_s": time.perf_counter() - t0, **(extra_meta or {})})
    logger.info("wrote the model-market evaluation into %s", out)
    return comp


def final_evaluation(agent: Any, config: ASModelConfig, n_paths: int, run_dir: Path) -> str:
    """train.py's final evaluation: the final model and the closed forms into ``run_dir/evaluation``; the report."""
    logger.info("final evaluation on %d held-out paths (seed %d): the agent and the closed-form strategies",
                n_paths, mm.EVAL_SEED)
    comp = run_as_evaluation({f"{run_dir.name}-final_model": agent}, config, run_dir / "evaluation",
                             n_paths=n_paths, seed=mm.EVAL_SEED,
                             extra_meta={"model_path": str(run_dir / "models" / "final_model")})
    return format_as_report(comp, config, mm.EVAL_SEED)


def format_as_report(comp: mm.ASComparison, config: ASModelConfig, seed: int) -> str:
    """The terminal tables of a model-market evaluation: the summary, then the paired differences."""
    s = comp.summary
    head = (f"model market {mm.ENV_ID} (phi={config.per_step_inventory_aversion:g}, "
            f"alpha={config.terminal_inventory_aversion:g}), {int(s['n_paths'].iloc[0])} held-out paths "
            f"(seed {seed}), the same for every policy; ratio = over the optimum, {comp.optimum}:")
    cols = {"policy": "policy", "model": "model", "criterion_mean": "criterion", "criterion_se": "se",
            "ratio_to_optimum": "ratio", "pnl_mean": "pnl", "pnl_std": "pnl_std", "final_inv_std": "inv_std",
            "inv_std_ratio": "inv_ratio", "spread_mean": "spread", "fills_mean": "fills"}
    table = s[list(cols)].rename(columns=cols).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    p = comp.paired
    paired_head = (f"paired difference agent - reference per path on the same {int(p['n_episodes'].iloc[0])} "
                   f"paths, {int(p['n_models'].iloc[0])} model(s); 95 % bootstrap CI, two-sided sign and "
                   "Wilcoxon p:")
    paired = p[["metric", "baseline", "diff_mean", "diff_ci_lo", "diff_ci_hi", "sign_p", "wilcoxon_p",
                "share_positive"]].rename(columns={"diff_mean": "diff", "diff_ci_lo": "ci95_lo",
                                                   "diff_ci_hi": "ci95_hi", "share_positive": "agent_better"})
    return "\n".join([head, table, "", paired_head,
                      paired.to_string(index=False, float_format=lambda v: f"{v:.3g}")])

