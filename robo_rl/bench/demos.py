"""`robo-rl bench demos`: manipulation from one to five demonstrations with the demo-seeded learner.

Settings (Meta-World v3, MT1 goal randomisation, 200-step episodes, the scripted expert's demos recorded
once per task with seed 0 and cameras corner/corner2 at 84 px):
- one-shot tasks (1 demo): drawer-open-v3, door-open-v3, button-press-topdown-v3;
- harder tasks (5 demos): pick-place-v3, assembly-v3.
Arms (one job, one result file per task, arm and seed; the runner's options apply):
- bc: behaviour cloning alone (the demo-seeded learner's BC pre-training), evaluated on 50 episodes;
- bc_hand: the same, observing in the hand's frame (env.hand_frame, envs/hand_frame.py);
- demo_sparse: agent=demo_sac with the sparse success reward (episodes end at success);
- demo_ibrl: the same with IBRL's BC proposal;
- demo_promote: demo_sparse whose own successful episodes join the demo store (self-imitation);
- demo_promote_bc: the same with the BC term everywhere (no Q filter);
- demo_process: demo_sac, sparse reward plus the potential of a process reward model fitted on the other
  tasks' demos and adapted one-shot to this task's demo (frames rendered every step);
- demo_progress: the same progress used as a plain reward (the semantic-trap control);
- demo_clip: demo_sparse with the critic's target clipped into [0, 1], the range of the sparse reward's returns;
- demo_hand: demo_sparse observing in the hand's frame (BC, critic and evaluation alike);
- demo_hand_clip: demo_hand with the critic's target clipped into [0, 1];
- demo_hand_process: demo_process observing in the hand's frame, the critic's target clipped into [-1, 1] (the
  sparse return in [0, 1] less the potential of the state, in [0, 1]: shaping telescopes to -Phi(s));
- demo_curriculum: demo_sparse trained on a forward curriculum over the task's start variants (envs/curriculum.py;
  evaluation still draws them uniformly);
- demo_dense: demo_sac on the env's own dense reward (a diagnostic: is the reward, or the learner, short?);
- sac_sparse / sac_dense: the suite's SAC from scratch (no demos), sparse and the env's dense reward;
- critic_only: the learner's critic and UTD (demo_sac's settings) without any demos, sparse reward;
- ads_critic / ads_critic_fixed: imitation from the demos' observations alone (reward=ads, rewards/ads.py) on that
  same critic, with the discount scheduled (ADS) and fixed (its ablation); no BC, no demo store. ADS's progress
  recognizer needs 2 demos at least, so these arms read 2 on the one-shot tasks (the table's demos column).
Every training arm is evaluated every 25 rollouts (5000 env steps) on 20 episodes with new goals.
Budgets count rollouts of 200 steps: 300 on the one-shot tasks, 500 on the harder ones (--rollouts).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.bench import RUN_DEFAULTS, parse_args, results_dir, run_bench, runner_options, seeds_of, write_summary
from robo_rl.config import ConfigError
from robo_rl.jobs import Job
from robo_rl.logger import write_json

ONE_SHOT = ("drawer-open-v3", "door-open-v3", "button-press-topdown-v3")
HARDER = ("pick-place-v3", "assembly-v3")
DEMOS = {**{t: 1 for t in ONE_SHOT}, **{t: 5 for t in HARDER}}
BUDGET = {**{t: 300 for t in ONE_SHOT}, **{t: 500 for t in HARDER}}
HORIZON = 200
EVAL_EVERY = 25            # rollouts
EVAL_EPISODES = 20
BC_EPISODES = 50
CAMERAS = ("corner", "corner2")
WORK = Path("runs") / "bench" / "demos"
# demo_sac's critic, UTD and start on the SAC core, without any of its demo parts (the critic_only and ADS arms)
LEARNER_CRITIC = ("agent.learning_starts=2000", "agent.critics=4", "agent.layer_norm=true", "agent.utd=4",
                  "agent.backup_entropy=false", "agent.initial_alpha=0.01")
ARMS = {
    "bc": [],
    "bc_hand": ["env.hand_frame=true"],
    "demo_sparse": ["agent=demo_sac", "reward=sparse"],
    "demo_ibrl": ["agent=demo_sac", "reward=sparse", "agent.ibrl=true"],
    "demo_promote": ["agent=demo_sac", "reward=sparse", "agent.promote_successes=true"],
    "demo_promote_bc": ["agent=demo_sac", "reward=sparse", "agent.promote_successes=true", "agent.bc_filter=false"],
    "demo_process": ["agent=demo_sac", "reward=process", "reward.base=sparse"],
    "demo_dense": ["agent=demo_sac", "reward=env"],
    "demo_curriculum": ["agent=demo_sac", "reward=sparse", "env.start_curriculum=true"],
    "demo_clip": ["agent=demo_sac", "reward=sparse", "agent.target_bounds=[0,1]"],
    "demo_hand": ["agent=demo_sac", "reward=sparse", "env.hand_frame=true"],
    "demo_hand_clip": ["agent=demo_sac", "reward=sparse", "env.hand_frame=true", "agent.target_bounds=[0,1]"],
    "demo_hand_process": ["agent=demo_sac", "reward=process", "reward.base=sparse", "env.hand_frame=true",
                          "agent.target_bounds=[-1,1]"],
    "demo_progress": ["agent=demo_sac", "reward=process", "reward.base=sparse", "reward.plain=true"],
    # the headline learner's diagnostics: the perceptual reward as a potential, and the progress as a plain
    # reward (per step in [0, 2], so the return stays in [0, 2 / (1 - gamma)] = [0, 200])
    "demo_hand_perceptual": ["agent=demo_sac", "reward=perceptual", "reward.base=sparse", "reward.plain=false",
                             "reward.terminate_on_success=true", "env.hand_frame=true", "agent.target_bounds=[-1,1]"],
    "demo_hand_progress": ["agent=demo_sac", "reward=process", "reward.base=sparse", "reward.plain=true",
                           "env.hand_frame=true", "agent.target_bounds=[0,200]"],
    "sac_sparse": ["agent=sac", "reward=sparse", "agent.learning_starts=5000"],
    "sac_dense": ["agent=sac", "reward=env", "agent.learning_starts=5000"],
    "critic_only": ["agent=sac", "reward=sparse", *LEARNER_CRITIC],
    "ads_critic": ["agent=sac", "reward=ads", "reward.schedule=true", *LEARNER_CRITIC],
    "ads_critic_fixed": ["agent=sac", "reward=ads", "reward.schedule=false", *LEARNER_CRITIC],
}
# The headline grid (the default --arms): BC alone in both frames, and the learner in the hand's frame with its
# critic's target clipped, sparse and with the process potential (the world-frame, unclipped arms collapse: docs)
HEADLINE = ("bc", "bc_hand", "demo_hand_clip", "demo_hand_process")
BC_ARMS = ("bc", "bc_hand")   # no training env steps: BC alone, evaluated on BC_EPISODES episodes


def is_bc(arm: str) -> bool:
    return arm in BC_ARMS


def demos_of(task: str, arm: str) -> int:
    """The demos an arm reads: the task's count; at least 2 for ADS, whose progress recognizer sets its threshold
    from demo-to-demo distances (rewards/ads.py); none for SAC from scratch and the critic alone."""
    if arm.startswith("ads_"):
        return max(DEMOS[task], 2)
    return DEMOS[task] if is_bc(arm) or arm.startswith("demo_") else 0


def demo_file(task: str) -> Path:
    """Five expert demos of the task (seed 0, two cameras, 84 px), recorded once."""
    from robo_rl.rewards.demos import collect_demos, save_demos

    path = WORK / "demos" / f"{task}.h5"
    if not path.exists():
        print(f"bench demos: recording 5 expert demos of {task}", flush=True)
        save_demos(path, collect_demos(task, 5, CAMERAS, 84, seed=0, progress=False), task)
    return path


def feature_file(tasks: list[str]) -> Path:
    """The frozen feature net the learned rewards embed frames with: a TCN pretrained on the tasks' demos."""
    from robo_rl.rewards.demos import load_demos
    from robo_rl.rewards.features import pretrain_tcn, save_feature_net

    features = WORK / "features.safetensors"
    if not features.exists():
        frames = [d.frames for t in tasks for d in load_demos(demo_file(t), limit=DEMOS[t])]
        net, _ = pretrain_tcn(frames, steps=1000, seed=0)
        save_feature_net(net, features, {"tasks": tasks, "steps": 1000})
    return features


def process_file(task: str, tasks: list[str]) -> Path:
    """A process reward model fitted on the other tasks' demos, adapted one-shot to this task's first demo."""
    from robo_rl.rewards.pipeline import fit_process_file

    features = feature_file(tasks)
    path = WORK / f"process__{task}.safetensors"
    if not path.exists():
        others = [demo_file(t) for t in tasks if t != task]
        fit_process_file(others, features, path, CAMERAS, steps=1500, adapt_file=demo_file(task))
    return path


def perceptual_file(task: str, tasks: list[str]) -> Path:
    """A perceptual reward fitted on this task's demos (its first camera), on the same feature net."""
    from robo_rl.rewards.pipeline import fit_perceptual_file

    features = feature_file(tasks)
    path = WORK / f"perceptual__{task}.safetensors"
    if not path.exists():
        fit_perceptual_file(demo_file(task), features, path, CAMERAS[0], limit=DEMOS[task])
    return path


def learned_reward(arm: str) -> str | None:
    """The kind of learned reward model an arm trains on: process, perceptual, or None."""
    return next((kind for kind in ("process", "perceptual") if f"reward={kind}" in ARMS[arm]), None)


def model_file(task: str, arm: str) -> Path | None:
    """The learned reward model an arm reads, fitted once per task (None: the arm has none)."""
    fit = {"process": process_file, "perceptual": perceptual_file}.get(learned_reward(arm))
    return fit(task, list(ONE_SHOT)) if fit else None


def arm_overrides(task: str, arm: str, seed: int, rollouts: int, model: Path | None) -> list[str]:
    steps = rollouts * HORIZON
    overrides = [*ARMS[arm], "env=metaworld", f"env.id={task}", f"env.max_episode_steps={HORIZON}", f"seed={seed}",
                 f"train.steps={steps}", f"train.eval_every={EVAL_EVERY * HORIZON}", f"train.eval_episodes={EVAL_EPISODES}",
                 "train.checkpoint_every=5000", "train.progress=false", *RUN_DEFAULTS]
    if arm.startswith("demo_"):
        overrides += [f"agent.demos={demo_file(task).as_posix()}", f"agent.demo_episodes={DEMOS[task]}"]
    if "reward=ads" in ARMS[arm]:   # the demos' observations only
        overrides += [f"reward.demos={demo_file(task).as_posix()}", f"reward.max_demos={demos_of(task, arm)}"]
    if model is not None:
        overrides.append(f"reward.model={model.as_posix()}")
    return overrides


def bc_policy(task: str, seed: int, hand_frame: bool = False) -> tuple[Any, Any]:
    """BC alone (the demo-seeded learner's pre-training on the task's demos) and the env it is evaluated on
    (new goals, seeds apart from training's), observing in the world's frame or the hand's."""
    from robo_rl.agents.demo_sac import DemoSAC
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.rewards.learned import SparseSuccess
    from robo_rl.train import seed_everything

    seed_everything(seed)
    cfg = env_config("metaworld", task, max_episode_steps=HORIZON, hand_frame=hand_frame)
    env = SparseSuccess(make_env(cfg, seed=seed))
    eval_env = make_env(cfg, seed=seed + 10_000)
    agent = DemoSAC(env.observation_space, env.action_space,
                    {"demos": str(demo_file(task)), "demo_episodes": DEMOS[task]}, seed=seed)
    agent.prepare(env)
    return agent, eval_env


def run_bc(task: str, seed: int, arm: str = "bc") -> dict[str, Any]:
    """BC alone (`arm` bc or bc_hand), evaluated deterministically on new goals."""
    import time

    from robo_rl.evaluate import evaluate

    start = time.perf_counter()
    agent, eval_env = bc_policy(task, seed, hand_frame="env.hand_frame=true" in ARMS[arm])
    result = evaluate(agent, eval_env, BC_EPISODES, seed=10_000 + 100 * seed)
    return {"task": task, "arm": arm, "seed": seed, "demos": DEMOS[task], "rollouts": 0, "steps": 0,
            "success_rate": result["success_rate"], "episodes": BC_EPISODES, "wall_s": round(time.perf_counter() - start, 1)}


def bc_coverage(task: str, seed: int = 0, episodes: int = BC_EPISODES) -> dict[str, Any]:
    """Where BC alone succeeds: per evaluation episode (run_bc's episodes), the object's start position (the
    observation's first object, Meta-World's obs[4:7]) and success; and the demos' object positions."""
    from robo_rl.evaluate import evaluate
    from robo_rl.jobs import machine

    agent, eval_env = bc_policy(task, seed)
    starts = np.flatnonzero(np.r_[True, agent.demo_store.terminated[: agent.demo_store.size - 1, 0] > 0])
    rows = []
    for k in range(episodes):
        episode_seed = 10_000 + 100 * seed + k
        obs, _ = eval_env.reset(seed=episode_seed)   # the start the evaluation below plays from
        success = evaluate(agent, eval_env, 1, seed=episode_seed)["success_rate"]
        rows.append({"object": [round(float(v), 4) for v in obs[4:7]], "success": bool(success)})
    return {"task": task, "seed": seed, "demos": DEMOS[task], "machine": machine(), "episodes": rows,
            "demo_objects": [[round(float(v), 4) for v in agent.demo_store.obs[i, 4:7]] for i in starts]}


def plot_coverage(coverage: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for won, colour, label in ((True, "C2", "BC succeeds"), (False, "C3", "BC fails")):
        points = np.array([e["object"][:2] for e in coverage["episodes"] if e["success"] == won]).reshape(-1, 2)
        ax.scatter(points[:, 0], points[:, 1], c=colour, s=18, label=f"{label} ({len(points)})")
    demos = np.array(coverage["demo_objects"])[:, :2]
    ax.scatter(demos[:, 0], demos[:, 1], marker="*", s=160, c="k", label="the demo" if len(demos) == 1 else "the demos")
    ax.set_xlabel("object x at reset (m)")
    ax.set_ylabel("object y at reset (m)")
    ax.set_title(f"{coverage['task']}: BC from {coverage['demos']} demo{'s' if coverage['demos'] > 1 else ''}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / f"coverage__{coverage['task']}.png", dpi=110)
    plt.close(fig)


def run_one(task: str, arm: str, seed: int, rollouts: int, model: str | None, extra: list[str]) -> dict[str, Any]:
    from robo_rl.config import compose, to_container
    from robo_rl.runs import load_run_config, train_run

    if is_bc(arm):
        return run_bc(task, seed, arm)
    run_dir = WORK / f"{task}__{arm}__s{seed}"
    resume = (run_dir / "checkpoint.safetensors").exists()
    cfg = load_run_config(run_dir) if resume else compose(arm_overrides(task, arm, seed, rollouts, model and Path(model)) + extra)
    if resume:
        cfg.train.steps = rollouts * HORIZON   # a larger budget continues the same run
    train_run(cfg, run_dir, resume=resume)
    evaluations = json.loads((run_dir / "evaluations.json").read_text())
    curve = [{"rollouts": e["step"] // HORIZON, "step": e["step"], "success_rate": e.get("success_rate", 0.0),
              "wall_s": e.get("wall_s")} for e in evaluations]
    wall = curve[-1]["wall_s"] if curve else None
    return {"task": task, "arm": arm, "seed": seed, "demos": demos_of(task, arm),
            "rollouts": rollouts, "steps": rollouts * HORIZON, "curve": curve,
            "env_steps_per_s": round(rollouts * HORIZON / wall, 1) if wall else None,
            "config": {"agent": to_container(cfg.agent), "reward": to_container(cfg.get("reward") or {})}}


# --- the report -------------------------------------------------------------------------------------
def success_at(result: dict[str, Any], rollouts: int) -> float | None:
    if is_bc(result["arm"]):
        return result["success_rate"]
    points = [p for p in result["curve"] if p["rollouts"] <= rollouts]
    return points[-1]["success_rate"] if points and points[-1]["rollouts"] == rollouts else None


def rollouts_to(result: dict[str, Any], level: float) -> int | None:
    if is_bc(result["arm"]):
        return 0 if result["success_rate"] >= level else None
    return next((p["rollouts"] for p in result["curve"] if p["success_rate"] >= level), None)


def iqm_ci(values: list[float]) -> str:
    from scipy import stats

    if len(values) < 5:
        return "-"
    rng = np.random.default_rng(0)
    boots = [stats.trim_mean(rng.choice(values, len(values)), 0.25) for _ in range(2000)]
    return f"{stats.trim_mean(values, 0.25):.2f} [{np.percentile(boots, 2.5):.2f}, {np.percentile(boots, 97.5):.2f}]"


def common_rollouts(task: str, runs: list[dict[str, Any]]) -> int | None:
    """The last evaluation every run of an arm reached, up to the task's budget (BC: the budget)."""
    if is_bc(runs[0]["arm"]):
        return BUDGET[task]
    reached = [r["curve"][-1]["rollouts"] if r["curve"] else 0 for r in runs]
    return min(min(reached), BUDGET[task]) or None


def report() -> str:
    folder = results_dir() / "demos"
    folder.mkdir(parents=True, exist_ok=True)
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*__*__s*.json")) if not p.name.startswith("coverage__")]
    lines = ["Success rate (fraction of evaluation episodes with new goals) after N rollouts of 200 steps; per seed, and the "
             "IQM with a 95% bootstrap interval where 5 seeds are done, at the last evaluation all of them reached "
             "(BC: at the budget; its success does not change with rollouts). Rollouts to 80% / 95%: the first evaluation at or "
             "above it, per seed ('-': not reached). bc: behaviour cloning alone, 50 episodes; bc_hand: the same, observing "
             "in the hand's frame (`env.hand_frame`).", "",
             "| task | demos | arm | seeds | @100 | @150 | @300 | @500 | IQM [95% CI] @ rollouts | to 80% | to 95% | env steps/s | last evaluation (rollouts) |",
             "|---|---:|---|---:|---|---|---|---|---|---|---|---:|---|"]
    for task in (*ONE_SHOT, *HARDER):
        for arm in ARMS:
            runs = sorted((r for r in results if r["task"] == task and r["arm"] == arm), key=lambda r: r["seed"])
            if not runs:
                continue
            cells = []
            for budget in (100, 150, 300, 500):
                values = [success_at(r, budget) for r in runs]
                cells.append(", ".join("-" if v is None else f"{v:.2f}" for v in values) if any(v is not None for v in values) else "")
            common = common_rollouts(task, runs)
            final = [success_at(r, common) for r in runs] if common else []
            iqm = iqm_ci([v for v in final if v is not None])
            iqm = f"{iqm} @ {common}" if iqm != "-" else "-"
            to80, to95 = (", ".join("-" if n is None else str(n) for n in (rollouts_to(r, level) for r in runs)) for level in (0.8, 0.95))
            speed = [r.get("env_steps_per_s") for r in runs if r.get("env_steps_per_s")]
            demos = demos_of(task, arm)
            speed = f"{np.mean(speed):.0f}" if speed else "-"
            last = ", ".join("-" if is_bc(r["arm"]) or not r["curve"] else
                             f"{r['curve'][-1]['success_rate']:.2f} ({r['curve'][-1]['rollouts']})" for r in runs)
            lines.append(f"| {task} | {demos} | {arm} | {len(runs)} | {' | '.join(cells)} | "
                         f"{iqm} | {to80} | {to95} | {speed} | {last} |")
    lines += coverage_lines(folder)
    plot(results, folder)
    return write_summary("demos", folder, lines)


def coverage_lines(folder: Path) -> list[str]:
    """BC's success near the demos' object positions and away from them (`--coverage`)."""
    files = sorted(folder.glob("coverage__*.json"))
    if not files:
        return []
    lines = ["", f"Where BC alone succeeds (`--coverage`, seed 0, {BC_EPISODES} episodes): success by the distance of the "
             f"object's start from the nearest demo's, in the table's plane (x, y).", "",
             "| task | demos | within 5 cm | 5-10 cm | beyond 10 cm |", "|---|---:|---|---|---|"]
    for path in files:
        coverage = json.loads(path.read_text())
        demos = np.array(coverage["demo_objects"])[:, :2]
        cells = []
        for low, high in ((0.0, 0.05), (0.05, 0.10), (0.10, np.inf)):
            won = [e["success"] for e in coverage["episodes"]
                   if low <= np.min(np.linalg.norm(demos - np.array(e["object"][:2]), axis=1)) < high]
            cells.append(f"{np.mean(won):.2f} ({len(won)} episodes)" if won else "-")
        lines.append(f"| {coverage['task']} | {coverage['demos']} | {' | '.join(cells)} |")
    return lines


def plot(results: list[dict[str, Any]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in (*ONE_SHOT, *HARDER) if any(r["task"] == t for r in results)]
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, arm in enumerate(ARMS):
            runs = [r for r in results if r["task"] == task and r["arm"] == arm]
            if not runs:
                continue
            if is_bc(arm):
                ax.axhline(np.mean([r["success_rate"] for r in runs]), color="gray" if arm == "bc" else "k",
                           ls="--" if arm == "bc" else ":", label=f"{arm} (mean)")
                continue
            for k, r in enumerate(runs):
                xs = [p["rollouts"] for p in r["curve"]]
                ax.plot(xs, [p["success_rate"] for p in r["curve"]], color=f"C{i}", alpha=0.8, label=arm if k == 0 else None)
        ax.set_title(f"{task} ({DEMOS[task]} demo{'s' if DEMOS[task] > 1 else ''})")
        ax.set_xlabel("rollouts (200 steps)")
        ax.set_xlim(0, BUDGET[task])
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("success rate (per seed)")
    fig.tight_layout()
    fig.savefig(folder / "success.png", dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench demos` (the docs' commands are checked against them)."""
    parser = argparse.ArgumentParser(prog="robo-rl bench demos")
    parser.add_argument("--tasks", default=",".join(ONE_SHOT + HARDER))
    parser.add_argument("--arms", default=",".join(HEADLINE))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--rollouts", type=int, default=None, help="rollouts of 200 steps per run (default: 300 one-shot, 500 harder)")
    parser.add_argument("--override", action="append", default=[], help="extra config override for every training")
    parser.add_argument("--coverage", action="store_true",
                        help="where BC alone succeeds: success against the object's start position, per task (seed 0)")
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    return runner_options(parser)


def main(args: list[str]) -> None:
    opts = parse_args(build_parser(), args)
    tasks, arms, seeds = opts.tasks.split(","), opts.arms.split(","), seeds_of(opts.seeds)
    for task in tasks:
        if task not in DEMOS:
            raise ConfigError(f"--tasks: unknown task '{task}' (valid: {', '.join(DEMOS)})")
    for arm in arms:
        if arm not in ARMS:
            raise ConfigError(f"--arms: unknown arm '{arm}' (valid: {', '.join(ARMS)})")
    if opts.rollouts is not None and opts.rollouts < EVAL_EVERY:
        raise ConfigError(f"--rollouts: {opts.rollouts} must be >= {EVAL_EVERY} (one evaluation)")
    folder = results_dir() / "demos"
    folder.mkdir(parents=True, exist_ok=True)
    if opts.coverage:
        for task in tasks:
            path = folder / f"coverage__{task}.json"
            if not path.exists():
                write_json(path, bc_coverage(task), indent=1)
            plot_coverage(json.loads(path.read_text()), folder)
    elif not opts.report:
        jobs = []
        for task in tasks:
            demo_file(task)   # recorded here, once, before jobs that read it run in parallel
            rollouts = opts.rollouts or BUDGET[task]
            for arm in arms:
                model = model_file(task, arm)
                needed = 0 if is_bc(arm) else rollouts * HORIZON
                jobs += [Job(f"{task} {arm} seed {seed}", run_one,
                             dict(task=task, arm=arm, seed=seed, rollouts=rollouts, model=model and model.as_posix(),
                                  extra=opts.override),
                             folder / f"{task}__{arm}__s{seed}.json", lambda r, n=needed: r.get("steps", 0) >= n)
                         for seed in seeds]
        run_bench("demos", opts, jobs)
    print(report())
