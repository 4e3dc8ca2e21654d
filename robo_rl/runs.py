"""Run folders: build everything a config names, train, and write what a user looks at.

A run folder holds config.yaml (resolved), checkpoint.safetensors, tb/ (TensorBoard),
metrics.jsonl, episodes.csv, evaluations.json, eval.json, learning_curve.png and policy.mp4.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robo_rl.agents.base import Agent, agent_class
from robo_rl.callbacks import CheckpointCallback
from robo_rl.checkpoint import CheckpointError, load_checkpoint, read_info
from robo_rl.config import ConfigError, check_run_config, to_container
from robo_rl.envs.curriculum import start_curriculum
from robo_rl.envs.factory import check_env_config, make_env
from robo_rl.evaluate import evaluate
from robo_rl.logger import write_json
from robo_rl.train import Trainer, seed_everything

CONFIG_NAME = "config.yaml"
SNAPSHOTS = "snapshots"   # train.snapshot_every: the agent every N steps, step_<N>.safetensors


class RandomAgent(Agent):
    """Uniform random actions: the floor every trained policy is compared with."""

    discrete_actions = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)

    def train_step(self, replay: Any) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Any) -> None:
        self.rng.bit_generator.state = state["rng"]


def build_agent(cfg: DictConfig, env: Any) -> Agent:
    agent_cfg = to_container(cfg.agent)
    target = agent_cfg.pop("_target_")
    try:
        cls = agent_class(target)
    except CheckpointError as exc:
        raise ConfigError(f"agent._target_: {exc}") from None
    return cls(env.observation_space, env.action_space, agent_cfg, int(cfg.seed))


def agent_gamma(cfg: DictConfig) -> float:
    agent = cfg.agent
    return float(agent.get("gamma", agent.get("hyperparams", {}).get("gamma", 0.99)))


def wrap_reward(env: Any, cfg: DictConfig) -> Any:
    """The reward the agent learns from: the env's own, or the wrapper that `reward._target_` names.

    Shaping needs the learner's discount, so `reward.gamma: null` means the agent's gamma.
    """
    reward_cfg = to_container(cfg.get("reward") or {})
    target = reward_cfg.pop("_target_", None)
    if target is None:
        return env
    module_name, _, class_name = target.rpartition(".")
    try:
        wrapper = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"config key 'reward._target_': '{target}' cannot be imported") from None
    if "gamma" in reward_cfg and reward_cfg["gamma"] is None:
        reward_cfg["gamma"] = agent_gamma(cfg)
    try:
        return wrapper(env, **reward_cfg)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"reward '{reward_cfg.get('name')}': {exc}") from None


def check_config(cfg: DictConfig) -> None:
    """Everything that can be checked before the first env step."""
    check_run_config(cfg)
    if getattr(agent_class(cfg.agent._target_), "offline", False):
        raise ConfigError(f"agent '{cfg.agent.get('name')}' learns from datasets, not online: "
                          "use robo-rl pretrain and robo-rl finetune")
    try:
        check_env_config(to_container(cfg.env))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_run_config(run_dir: str | Path) -> DictConfig:
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"run folder '{run_dir}' has no {CONFIG_NAME}")
    return OmegaConf.load(path)


def train_run(cfg: DictConfig, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or continue) the run described by `cfg` in `run_dir`; returns the final eval result."""
    check_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads", 0) > 0:
        torch.set_num_threads(int(cfg.threads))
    seed = int(cfg.seed)
    seed_everything(seed)
    env_cfg = to_container(cfg.env)
    env = wrap_reward(start_curriculum(make_env(env_cfg, seed=seed), env_cfg, seed), cfg)
    eval_env = make_env(env_cfg, seed=seed + 10_000)  # evaluation reports the task's own return and success
    try:
        agent = build_agent(cfg, env)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"agent '{cfg.agent.get('name')}': {exc}") from None
    if not resume:
        if (run_dir / "checkpoint.safetensors").exists():
            raise ConfigError(f"run folder '{run_dir}' already holds a run (continue it with resume={run_dir})")
        OmegaConf.save(cfg, run_dir / CONFIG_NAME, resolve=True)
    train = cfg.train
    # A reward that is learned while training (a replay relabeler, a discount schedule) brings its callback.
    make_callback = getattr(env, "trainer_callback", None)
    callbacks = [make_callback()] if make_callback is not None else []
    if train.snapshot_every > 0:
        callbacks.append(CheckpointCallback(train.snapshot_every, run_dir / SNAPSHOTS, prefix="step"))
    trainer = Trainer(
        agent, env, total_steps=train.steps, run_dir=run_dir, eval_env=eval_env,
        eval_every=train.eval_every, eval_episodes=train.eval_episodes,
        checkpoint_every=train.checkpoint_every, save_replay=train.save_replay,
        log_every=train.log_every, progress=train.progress, seed=seed,
        callbacks=callbacks,
        run_info={"env": env_cfg, "config": to_container(cfg)},
    )
    if resume and trainer.resume():
        print(f"robo-rl: resumed {run_dir} at step {trainer.step}")
    trainer.run()
    result = finish_run(agent, eval_env, cfg, run_dir, trainer.evaluations)
    env.close()
    eval_env.close()
    return result


def finish_run(agent: Agent, eval_env: Any, cfg: DictConfig, run_dir: Path, evaluations: list) -> dict[str, Any]:
    from robo_rl.report import learning_curve, record_video

    episodes, seed = int(cfg.train.eval_episodes), 20_000 + int(cfg.seed)
    result = evaluate(agent, eval_env, episodes, seed=seed)
    random_result = evaluate(RandomAgent(eval_env.observation_space, eval_env.action_space, {}, seed), eval_env, episodes, seed=seed)
    result = {"step": int(cfg.train.steps), "agent": cfg.agent.name, "env": cfg.env.id, "seed": int(cfg.seed),
              **result, "random_policy": {k: random_result[k] for k in ("mean_return", "std_return", "success_rate") if k in random_result}}
    write_json(run_dir / "eval.json", result)
    if evaluations:
        learning_curve(evaluations, run_dir / "learning_curve.png", title=f"{cfg.agent.name} on {cfg.env.id}")
    if cfg.train.video_steps > 0 and cfg.env.family == "classic":
        print("robo-rl: no policy video for classic-control tasks (the suite renders MuJoCo scenes only)")
    elif cfg.train.video_steps > 0:
        record_video(agent, eval_env, run_dir / "policy.mp4", steps=int(cfg.train.video_steps), size=int(cfg.train.video_size))
    return result


def load_agent(run_dir: str | Path) -> tuple[Agent, dict[str, Any]]:
    """The trained agent of a run folder (or a checkpoint file) and the checkpoint's metadata."""
    from robo_rl.agents.base import agent_from_info

    state, info = load_checkpoint(run_dir)
    return agent_from_info(info, run_dir, state), info


def load_agent_and_env(run_dir: str | Path, seed: int, env_cfg: dict[str, Any] | None = None) -> tuple[Agent, dict[str, Any], Any]:
    """The trained agent of a run, its checkpoint metadata, and a fresh env of the task it learned
    (or of `env_cfg`, another task with the same spaces)."""
    agent, info = load_agent(run_dir)
    env_cfg = env_cfg or info.get("env")
    if env_cfg is None:
        raise CheckpointError(f"{run_dir}: checkpoint does not say which env it was trained on")
    return agent, info, make_env(env_cfg, seed=seed)


def eval_run(run_dir: str | Path, episodes: int = 10, seed: int = 20_000, video: bool = False,
             env_cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    agent, info, env = load_agent_and_env(run_dir, seed, env_cfg)
    for name, have, want in (("observations", env.observation_space, agent.observation_space),
                             ("actions", env.action_space, agent.action_space)):
        if have.shape != want.shape:
            env.close()
            raise ConfigError(f"env '{(env_cfg or info['env']).get('id')}' has {name} of shape {have.shape}, "
                              f"the policy in '{run_dir}' expects {want.shape}")
    result = {"step": info.get("step"), "seed": seed, **evaluate(agent, env, episodes, seed=seed)}
    if run_dir.is_dir():
        # beside the training's own eval.json, which keeps its random-policy reference
        closing = run_dir / "eval.json"
        if closing.is_file():
            import json

            reference = json.loads(closing.read_text()).get("random_policy")
            if reference is not None:
                result["random_policy"] = reference
        other_env = f"{env_cfg['id']}_" if env_cfg else ""   # played on another task than its own
        write_json(run_dir / f"eval_{other_env}s{seed}_{episodes}ep.json", result)
        if video and info["env"].get("family") == "classic":
            print("robo-rl: no policy video for classic-control tasks (the suite renders MuJoCo scenes only)")
        elif video:
            from robo_rl.report import record_video

            record_video(agent, env, run_dir / "policy.mp4")
    env.close()
    return result


__all__ = ["train_run", "eval_run", "load_agent", "load_agent_and_env", "load_run_config", "read_info", "RandomAgent"]
