"""Pre-training on datasets, and the continual protocol: tasks in sequence, each from its own data only.

`robo-rl pretrain` trains a model (an agent with `update`, e.g. agents/l2m.py) on the datasets of several
tasks at once and evaluates it on each. `robo-rl finetune` takes a pre-trained run folder and a sequence of
tasks; for each task in turn it trains `updates` updates on that task's dataset alone (the offline loop,
robo_rl/offline.py), evaluating the task `evals_per_task` times during its phase (the curve forward transfer
integrates), then every task seen so far. The pre-training tasks are evaluated at the start (the frozen
model) and at the end (through the fine-tuned model). Metrics are Continual World's (Wolczyk et al.,
NeurIPS 2021):
  average success   mean over the sequence's tasks of their success after the last task
  forgetting        per task: success at the end of its own phase minus success after the last task
  forward transfer  per task: (AUC - AUC_ref) / (1 - AUC_ref), AUC the mean success over its phase's
                    evaluations, AUC_ref the same for that task trained alone from the pre-trained model
The run folder holds continual.json (rewritten after every evaluation, atomically), the checkpoint, and a
plot of each task's success over the sequence; an interrupted run continues where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf

from robo_rl.config import ConfigError, to_container
from robo_rl.logger import write_json

# Keys a fine-tuning run takes from its own agent config; the rest (the architecture) is the pre-trained model's.
PRETRAIN_EVAL_SEED = 50_000   # + the run's seed: the pre-training tasks' episodes, before and after fine-tuning
FINETUNE_KEYS = ("pool_size", "rank", "lora_scale", "pull_weight", "count_penalty", "learning_rate", "weight_decay",
                 "grad_clip", "batch_size", "dropout")


def task_env_config(task: str) -> dict[str, Any]:
    from robo_rl.datasets import EPISODE_STEPS
    from robo_rl.envs.factory import env_config

    return env_config("metaworld", task, max_episode_steps=EPISODE_STEPS)


def evaluate_task(agent: Any, task: str, episodes: int, seed: int) -> dict[str, float]:
    """Success rate and mean return of `agent` on a task's 200-step episodes."""
    from robo_rl.envs.factory import make_env
    from robo_rl.evaluate import evaluate

    env = make_env(task_env_config(task), seed=seed)
    try:
        result = evaluate(agent, env, episodes, seed=seed)
    finally:
        env.close()
    return {"success": float(result.get("success_rate", 0.0)), "return": float(result["mean_return"])}


def evaluate_tasks(agent: Any, tasks: Sequence[str], episodes: int, seed: int) -> dict[str, dict[str, float]]:
    return {t: evaluate_task(agent, t, episodes, seed) for t in tasks}


def _check_tasks(tasks: Sequence[str], key: str) -> list[str]:
    from robo_rl.envs.factory import metaworld_tasks

    known = set(metaworld_tasks())
    tasks = [str(t) for t in tasks]
    if not tasks:
        raise ConfigError(f"config key '{key}' must list at least one task")
    for task in tasks:
        if task not in known:
            raise ConfigError(f"config key '{key}': '{task}' is not a Meta-World v3 task")
    return tasks


def _check_positive(cfg: DictConfig, keys: Sequence[str]) -> None:
    for key in keys:
        if OmegaConf.select(cfg, key) <= 0:
            raise ConfigError(f"config key '{key}' must be > 0, got {OmegaConf.select(cfg, key)}")


def _threads(cfg: DictConfig) -> None:
    import torch

    if cfg.get("threads", 0) > 0:
        torch.set_num_threads(int(cfg.threads))


# --- pre-training ------------------------------------------------------------------------------
def run_pretrain(cfg: DictConfig, out: str | Path) -> dict[str, Any]:
    from robo_rl.agents.base import agent_class
    from robo_rl.datasets import ensure_datasets, load_task_dataset
    from robo_rl.envs.factory import make_env
    from robo_rl.offline import OfflineTrainer, WindowSampler, cosine_lr

    tasks = _check_tasks(cfg.tasks, "tasks")
    _check_positive(cfg, ("updates", "episodes", "eval_episodes", "checkpoint_every", "learning_rate"))
    agent_type = agent_class(cfg.agent._target_)
    if not getattr(agent_type, "offline", False):
        raise ConfigError(f"agent '{cfg.agent.get('name')}' learns online (robo-rl train); pretrain takes an offline agent (agent=l2m)")
    _threads(cfg)
    out = Path(out)
    summary_path = out / "pretrain.json"
    if summary_path.is_file():
        print(f"robo-rl: {out} is already pre-trained (pretrain.json); nothing to do")
        return json.loads(summary_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    ensure_datasets(tasks, int(cfg.episodes), cfg.datasets, int(cfg.seed), bool(cfg.progress))
    data = [load_task_dataset(t, cfg.datasets) for t in tasks]
    env = make_env(task_env_config(tasks[0]))
    agent_cfg = {k: v for k, v in to_container(cfg.agent).items() if k != "_target_"}
    agent_cfg.update(method="pretrained", learning_rate=float(cfg.learning_rate))
    try:
        agent = agent_type(env.observation_space, env.action_space, agent_cfg, int(cfg.seed))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"agent: {exc}") from None
    env.close()
    sampler = WindowSampler(data, agent.context, agent.state_dim, agent.reward_scale, agent.max_timestep, int(cfg.seed))
    agent.target_return = sampler.best_return
    trainer = OfflineTrainer(agent, sampler, int(cfg.updates), out, "pretrain", int(cfg.checkpoint_every), bool(cfg.progress),
                             lambda u: cosine_lr(u, int(cfg.updates), float(cfg.learning_rate), int(cfg.warmup)),
                             {"env": task_env_config(tasks[0]), "pretrain_tasks": tasks})
    if trainer.resume():
        print(f"robo-rl: resumed {out} at update {trainer.done}")
    losses = trainer.run()
    eval_seed = PRETRAIN_EVAL_SEED + int(cfg.seed)
    results = evaluate_tasks(agent, tasks, int(cfg.eval_episodes), eval_seed)
    summary = {"tasks": tasks, "updates": int(cfg.updates), "seed": int(cfg.seed), "evaluation": results,
               "eval_episodes": int(cfg.eval_episodes), "eval_seed": eval_seed,
               "mean_success": float(np.mean([r["success"] for r in results.values()])),
               "target_return": agent.target_return, "loss_first_last": [losses[0], losses[-1]] if losses else None}
    write_json(summary_path, summary)
    return summary


# --- the continual protocol ------------------------------------------------------------------
def run_finetune(cfg: DictConfig, out: str | Path) -> dict[str, Any]:
    from robo_rl.checkpoint import load_checkpoint
    from robo_rl.datasets import ensure_datasets
    from robo_rl.runs import load_agent

    tasks = _check_tasks(cfg.sequence.tasks, "sequence.tasks")
    _check_positive(cfg, ("updates", "episodes", "eval_episodes", "evals_per_task", "checkpoint_every"))
    _threads(cfg)
    from robo_rl.agents.base import agent_class

    if not getattr(agent_class(cfg.agent._target_), "offline", False):
        raise ConfigError(f"agent '{cfg.agent.get('name')}' learns online (robo-rl train); finetune takes an offline agent (agent=l2m)")
    if cfg.method not in ("full", "lora", "l2m", "l2m_oracle"):
        raise ConfigError(f"config key 'method' must be full, lora, l2m or l2m_oracle, got '{cfg.method}'")
    agent, pretrained, pretrain_tasks, previous = _starting_point(cfg, tasks, load_agent)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    state_path = out / "continual.json"
    record = json.loads(state_path.read_text()) if state_path.is_file() else {
        "method": str(cfg.method), "sequence": tasks, "previous_sequence": previous, "pretrain_tasks": pretrain_tasks, "seed": int(cfg.seed),
        "updates_per_task": int(cfg.updates), "phases": [], "pretrain_before": None, "pretrain_after": None}
    episodes, seed = int(cfg.eval_episodes), 60_000 + int(cfg.seed)

    def save() -> None:
        write_json(state_path, record)

    pretrain_eval = bool(cfg.pretrain_eval)
    if pretrain_eval and record["pretrain_before"] is None:   # the frozen model, before any fine-tuning
        record["pretrain_before"] = _frozen_evaluation(cfg, pretrained, pretrain_tasks, episodes)
        save()
    ensure_datasets(tasks, int(cfg.episodes), cfg.datasets, int(cfg.seed), bool(cfg.progress))
    finished = len([p for p in record["phases"] if p.get("after") is not None])
    if finished and (out / "checkpoint.safetensors").is_file():
        state, _ = load_checkpoint(out / "checkpoint.safetensors")
        agent.load_state_dict(state["agent"])
    for index in range(finished, len(tasks)):
        _phase(agent, record, index, tasks, cfg, out, save, episodes, seed)
    if pretrain_eval and record["pretrain_after"] is None:
        agent.play_task(len(record.get("previous_sequence", [])) + len(tasks) - 1)
        record["pretrain_after"] = evaluate_tasks(agent, pretrain_tasks, episodes, PRETRAIN_EVAL_SEED + int(cfg.seed))
    record["metrics"] = continual_metrics(record)
    save()
    plot_sequence(record, out / "success.png")
    return record


def _frozen_evaluation(cfg: DictConfig, pretrained: Any, tasks: list[str], episodes: int) -> dict[str, Any]:
    """The pre-training tasks played by the model fine-tuning starts from: the pre-training run's own
    evaluation when it used the same episodes (same seeds), else measured now."""
    summary = Path(str(cfg.pretrained)) / "pretrain.json"
    if summary.is_file():
        done = json.loads(summary.read_text())
        if done.get("eval_episodes") == episodes and done.get("eval_seed") == PRETRAIN_EVAL_SEED + int(cfg.seed):
            return done["evaluation"]
    return evaluate_tasks(pretrained, tasks, episodes, PRETRAIN_EVAL_SEED + int(cfg.seed))


def _starting_point(cfg: DictConfig, tasks: list[str], load_agent) -> tuple[Any, Any, list[str], list[str]]:
    """The agent to fine-tune, the frozen model, the pre-training tasks and the tasks learned before.

    From a pre-training run: a new agent of `method` around its transformer. From a fine-tuning run:
    that agent as it is (its pool, counts and optimiser), learning the new tasks after its own."""
    base_dir = Path(str(cfg.pretrained))
    if (base_dir / "continual.json").is_file():
        base_record = json.loads((base_dir / "continual.json").read_text())
        if base_record.get("metrics") is None:
            raise ConfigError(f"pretrained: '{base_dir}' is a fine-tuning run that has not finished")
        if base_record["method"] != str(cfg.method) or cfg.method == "l2m_oracle":
            raise ConfigError(f"pretrained: '{base_dir}' was fine-tuned with method {base_record['method']}; it continues "
                              f"with the same method only (and not l2m_oracle, whose entries are fixed by its sequence), got {cfg.method}")
        agent, _ = load_agent(base_dir)
        previous = [*base_record.get("previous_sequence", []), *base_record["sequence"]]
        agent.tasks = agent.config["tasks"] = previous + tasks
        frozen, _ = load_agent(base_dir)
        return agent, frozen, base_record["pretrain_tasks"], previous
    if not (base_dir / "pretrain.json").is_file():
        raise ConfigError(f"pretrained: '{base_dir}' is neither a finished pre-training run (pretrain.json) nor a fine-tuning run")
    pretrained, _ = load_agent(base_dir)
    overrides = {k: to_container(cfg.agent)[k] for k in FINETUNE_KEYS if k in cfg.agent}
    try:
        agent = pretrained.with_method(str(cfg.method), tasks, overrides)
    except ValueError as exc:
        raise ConfigError(f"agent: {exc}") from None
    return agent, pretrained, json.loads((base_dir / "pretrain.json").read_text())["tasks"], []


def _phase(agent: Any, record: dict[str, Any], index: int, tasks: list[str], cfg: DictConfig, out: Path, save: Any,
           episodes: int, seed: int) -> None:
    """Train task `index` alone, evaluating it along the way, then every task seen so far."""
    from robo_rl.datasets import load_task_dataset
    from robo_rl.offline import OfflineTrainer, WindowSampler

    task, previous = tasks[index], record.get("previous_sequence", [])
    if len(record["phases"]) <= index:
        record["phases"].append({"task": task, "curve": [], "after": None})
    phase = record["phases"][index]
    # a checkpoint inside this phase (resumed below) restores the state after the switch
    agent.switch_task(len(previous) + index)
    # The return the model is conditioned on stays the pre-trained one: a new target would change what the
    # frozen model does on every task, the pre-training tasks included.
    sampler = WindowSampler([load_task_dataset(task, cfg.datasets)], agent.context, agent.state_dim, agent.reward_scale,
                            agent.max_timestep, int(cfg.seed) * 100 + index)
    checkpoints = np.linspace(0, int(cfg.updates), int(cfg.evals_per_task) + 1)[1:].astype(int)
    for target in checkpoints[len(phase["curve"]):]:
        trainer = OfflineTrainer(agent, sampler, int(target), out, f"task{index}", int(cfg.checkpoint_every),
                                 bool(cfg.progress), run_info={"env": task_env_config(task), "sequence": tasks})
        trainer.resume()
        trainer.run()
        phase["curve"].append({"update": int(target), **evaluate_task(agent, task, episodes, seed)})
        save()
    after = {}
    for seen, name in enumerate([*previous, *tasks[:index + 1]]):
        agent.play_task(seen)   # only the oracle uses the task id; for the others this is the same model
        after[name] = evaluate_task(agent, name, episodes, seed)
    agent.play_task(len(previous) + index)
    phase["after"] = after
    save()


def continual_metrics(record: Mapping[str, Any], reference_auc: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Continual World's metrics from a run record (forward transfer only where a reference is given)."""
    phases = [p for p in record["phases"] if p.get("after")]
    tasks = [p["task"] for p in phases]
    final = phases[-1]["after"] if phases else {}
    own_end = {p["task"]: p["after"][p["task"]]["success"] for p in phases}
    auc = {p["task"]: float(np.mean([c["success"] for c in p["curve"]])) for p in phases}
    metrics: dict[str, Any] = {
        "average_success": float(np.mean([final[t]["success"] for t in tasks])) if tasks else None,
        "forgetting": {t: own_end[t] - final[t]["success"] for t in tasks},
        "auc": auc,
    }
    metrics["average_forgetting"] = float(np.mean(list(metrics["forgetting"].values()))) if tasks else None
    if reference_auc:
        ft = {t: (auc[t] - reference_auc[t]) / (1.0 - reference_auc[t]) if reference_auc[t] < 1.0 else auc[t] - 1.0
              for t in tasks if t in reference_auc}
        metrics["forward_transfer"] = ft
        metrics["average_forward_transfer"] = float(np.mean(list(ft.values()))) if ft else None
    for key in ("pretrain_before", "pretrain_after"):
        if record.get(key):
            metrics[f"{key}_success"] = float(np.mean([r["success"] for r in record[key].values()]))
    return metrics


def plot_sequence(record: Mapping[str, Any], path: Path) -> None:
    """Success of every task after each phase of the sequence (the Continual World picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [p for p in record["phases"] if p.get("after")]
    if not phases:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, task in enumerate(record["sequence"][:len(phases)]):
        xs = list(range(i, len(phases)))
        ax.plot([x + 1 for x in xs], [phases[x]["after"][task]["success"] for x in xs], marker="o", label=task)
    ax.set_xlabel("after task (phase)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"{record['method']}: success of each task over the sequence")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
