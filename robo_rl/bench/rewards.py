"""`robo-rl bench rewards`: how good are the learned rewards, and do they help an agent learn?

Inputs are made once and kept under runs/bench/rewards/ (skipped when present): expert demos per task
(two cameras, 84 px), a feature net pre-trained time-contrastively on the training demos of all tasks,
and the fitted reward files.

Part `quality` (one file per task, benchmarks/results/rewards/quality__<task>.json): Spearman rank
correlation between each learned signal and true progress (0 at the start, 1 at first success,
linear in time) on held-out demos: the perceptual reward (one camera), the same with its failure class
fitted against the expert's failed attempts under strong action noise (as many as the fitting demos,
seeds of their own), the process model with one view, with two views, with two views but one missing
at test time, zero-shot from the other tasks, and after one-shot adaptation to one demo of the task.

Part `robustness` (robustness__<task>.json): the same signals on evaluation sets that are not the
expert's demos (rewards/robustness.py: noisy experts, regressions, random and trained-agent rollouts,
an occluded camera), against the simulator's true progress: rank correlations, pairwise end-state
accuracy and exploitability, and one plot of a regression trajectory per task.

Part `learn` (one file per run, learn__<task>__<reward>__s<seed>.json): SB3 SAC on the task's state,
trained with `reward=sparse` (success only), `reward=process` (sparse + potential-based shaping),
`reward=perceptual` or the perceptual reward with failure negatives (arm `perceptual_failures`: the
noisy expert's failed attempts; arm `perceptual_agent_negatives`: the failed rollouts of the seed-0
perceptual-reward agent, a second round against the pose the first reward let it settle in), same env
steps; success rate of deterministic evaluations over training, and the number of training rollouts
before the first evaluation at >= 95% success.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.bench import (FINAL_NOTE, RUN_DEFAULTS, SEEDS_NOTE, final_point, final_return, has_steps, parse_args, per_seed,
                           results_dir, run_bench, runner_options, seeds_of, write_summary)
from robo_rl.jobs import Job
from robo_rl.config import ConfigError
from robo_rl.logger import write_json

WORK = Path("runs") / "bench" / "rewards"
CAMERAS = ["corner", "corner2"]
DEFAULT_TASKS = "drawer-open-v3,button-press-topdown-v3,door-open-v3"
REWARDS = ("sparse", "process", "perceptual", "perceptual_failures", "perceptual_agent_negatives")
# perceptual_failures: the perceptual reward with its failure class, fitted against the expert's failed
# attempts under strong action noise (other seeds than the robustness sets'). perceptual_agent_negatives:
# the same class fitted against the failed rollouts of the seed-0 perceptual-reward agent (round 2: the
# poses the first reward let an agent exploit). Both are trained as reward=perceptual.
REWARD_CONFIG = {"perceptual_failures": "perceptual", "perceptual_agent_negatives": "perceptual"}
FAILURE_NOISE, FAILURE_SEED = 2.0, 5000   # as many failed attempts are recorded as demos are fitted
AGENT_NEGATIVE_SEED = 7000                # the round-1 agent's negatives; the robustness sets play seeds 3000+


def demo_file(task: str, episodes: int) -> Path:
    from robo_rl.rewards.demos import collect_demos, save_demos

    path = WORK / "demos" / f"{task}.h5"
    if not path.exists():
        print(f"bench rewards: recording {episodes} expert demos of {task}", flush=True)
        save_demos(path, collect_demos(task, episodes, CAMERAS, 84, seed=1000), task)
    return path


def failures_file(task: str, episodes: int) -> Path | None:
    """The expert's failed attempts under strong action noise: the perceptual reward's hard negatives
    (None where the noisy expert still succeeds too often to give that many: button-press-topdown)."""
    from robo_rl.envs.experts import ExpertError
    from robo_rl.rewards.demos import collect_demos, save_demos

    path = WORK / "failures" / f"{task}__{episodes}.h5"
    if not path.exists():
        print(f"bench rewards: recording {episodes} failed attempts of {task} (action noise {FAILURE_NOISE})", flush=True)
        try:
            failed = collect_demos(task, episodes, CAMERAS, 84, seed=FAILURE_SEED, max_steps=200,
                                   action_noise=FAILURE_NOISE, keep="failed")
        except ExpertError as exc:
            print(f"bench rewards: no failure negatives on {task}: {exc}", flush=True)
            return None
        save_demos(path, failed, task, source="metaworld-expert-failed")
    return path


def agent_negatives_file(task: str, opts: argparse.Namespace, features: Path) -> Path:
    """Round 2 of the perceptual reward: the seed-0 perceptual-reward agent (trained here if missing)
    plays each of its snapshots on seeds of its own, as many rollouts as demos are fitted; its failed
    rollouts become the failure class of the next fit."""
    from robo_rl.rewards.demos import save_demos
    from robo_rl.rewards.robustness import as_demo, failed_rollouts

    path = WORK / "agent_negatives" / f"{task}__{opts.train_demos}.h5"
    if not path.exists():
        (snapshots,) = agent_policies([agent_run(task, "perceptual", opts, features)]).values()
        policies = [snapshots[i % len(snapshots)] for i in range(opts.train_demos)]
        print(f"bench rewards: recording the perceptual-reward agent's failed rollouts on {task}", flush=True)
        failed = failed_rollouts(task, CAMERAS, 84, policies, seed=AGENT_NEGATIVE_SEED)
        if not failed:
            raise ConfigError(f"no perceptual_agent_negatives arm on {task}: the perceptual-reward agent succeeds in every rollout")
        save_demos(path, [as_demo(t) for t in failed], task, source="robo-rl-agent-failed")
    return path


def feature_file(tasks: list[str], episodes: int, train_demos: int, steps: int) -> Path:
    from robo_rl.rewards.demos import load_demos
    from robo_rl.rewards.features import pretrain_tcn, save_feature_net

    path = WORK / "features.safetensors"
    if not path.exists():
        frames = [d.frames for t in tasks for d in load_demos(demo_file(t, episodes), limit=train_demos)]
        net, losses = pretrain_tcn(frames, steps=steps, seed=0)
        save_feature_net(net, path, {"tasks": tasks, "train_demos": train_demos, "steps": steps,
                                     "loss_start": float(np.mean(losses[:50])), "loss_end": float(np.mean(losses[-50:]))})
    return path


def fit_signals(task: str, tasks: list[str], episodes: int, train_demos: int, features: Path, steps: int,
                agent_negatives: Path | None = None) -> tuple[dict[str, Any], list, list, Any]:
    """Every learned signal of a task, fitted on its training demos: name -> function of (T+1, V, D)
    features -> values; also the held-out demos' features and true progress, and the feature net.
    `agent_negatives`: a file of an agent's failed rollouts, for one more perceptual row."""
    from robo_rl.rewards.demos import load_demos, progress_labels
    from robo_rl.rewards.features import load_feature_net
    from robo_rl.rewards.perceptual import fit_perceptual_reward
    from robo_rl.rewards.pipeline import demo_features
    from robo_rl.rewards.process import ProcessRewardModel

    net = load_feature_net(features)

    def feats_of(t: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        demos = [d.observation_only() for d in load_demos(demo_file(t, episodes))]
        return demo_features(demos, net, CAMERAS), [progress_labels(d) for d in demos]

    feats, labels = feats_of(task)
    train, test, truth = feats[:train_demos], feats[train_demos:], labels[train_demos:]
    goal = train[-1][-1]
    perceptual, _ = fit_perceptual_reward([f[:, 0] for f in train])
    single = ProcessRewardModel(train[0].shape[-1], CAMERAS[:1], seed=0)
    single.fit([f[:, :1] for f in train], steps=steps)
    multi = ProcessRewardModel(train[0].shape[-1], CAMERAS, seed=0)
    multi.fit(train, steps=steps)
    one_view = np.array([1.0, 0.0], np.float32)
    signals: dict[str, Any] = {
        "perceptual (corner)": lambda f: perceptual(f[:, 0]),
        "process, 1 view (corner)": lambda f: single.progress(f[:, :1], f[0, :1], goal[:1]),
        "process, 2 views": lambda f: multi.progress(f, f[0], goal),
        "process, 2 views, corner2 missing": lambda f: multi.progress(f, f[0], goal, mask=one_view),
    }
    negatives = {"failure negatives": failures_file(task, train_demos), "agent negatives": agent_negatives}
    for label, path in negatives.items():
        if path is not None:
            failed = demo_features([d.observation_only() for d in load_demos(path, cameras=CAMERAS[:1])], net, CAMERAS[:1])
            hardened, _ = fit_perceptual_reward([f[:, 0] for f in train], failures=[f[:, 0] for f in failed])
            signals[f"perceptual (corner), {label}"] = lambda f, r=hardened: r(f[:, 0])
    others = [f for t in tasks if t != task for f in feats_of(t)[0][:train_demos]]
    if others:
        zero = ProcessRewardModel(train[0].shape[-1], CAMERAS, seed=0)
        zero.fit(others, steps=steps)
        adapted = zero.adapt(train[0], steps=steps // 4)
        signals["process, other tasks only (zero-shot)"] = lambda f: zero.progress(f, f[0], train[0][-1])
        signals["process, other tasks + one-shot adaptation"] = lambda f: adapted.progress(f, f[0], train[0][-1])
    return signals, test, truth, net


def quality(task: str, tasks: list[str], episodes: int, train_demos: int, features: Path, steps: int) -> dict[str, Any]:
    from scipy.stats import spearmanr

    signals, test, truth, _ = fit_signals(task, tasks, episodes, train_demos, features, steps)
    out: dict[str, Any] = {"task": task, "train_demos": train_demos, "test_demos": len(test), "process_steps": steps}
    for name, signal in signals.items():
        r = [float(spearmanr(signal(f), t).correlation) for f, t in zip(test, truth)]
        out[name] = {"mean": float(np.mean(r)), "min": float(np.min(r)), "per_demo": r}
    return out


def robustness(task: str, tasks: list[str], episodes: int, train_demos: int, features: Path, steps: int,
               set_episodes: int, agent_runs: list[Path], agent_negatives: Path | None = None) -> dict[str, Any]:
    """Every signal on the task's evaluation sets off the expert's demos (rewards/robustness.py)."""
    from robo_rl.rewards.robustness import make_sets, occluded, score_signal

    signals, test, _, net = fit_signals(task, tasks, episodes, train_demos, features, steps, agent_negatives)
    sets = make_sets(task, CAMERAS, 84, set_episodes, seed=3000, agents=agent_policies(agent_runs))
    sets["regression, corner2 occluded"] = [occluded(t, CAMERAS[1]) for t in sets["regression"]]
    feats = {name: [np.stack([net.features(t.frames[c]) for c in CAMERAS], axis=1) for t in trajs] for name, trajs in sets.items()}
    out: dict[str, Any] = {"task": task, "sets": {n: {"trajectories": len(t), "successes": sum(x.succeeded for x in t)} for n, t in sets.items()},
                           "signals": {}, "regression_example": {"true": sets["regression"][0].progress.tolist()}}
    everything = [t for name, trajs in sets.items() if "occluded" not in name for t in trajs]
    for name, signal in signals.items():
        success_value = float(np.mean([signal(f)[-1] for f in test]))   # held-out demos end at their first success
        per_set = {set_name: score_signal([signal(f) for f in feats[set_name]], sets[set_name], success_value) for set_name in sets}
        per_set["all sets"] = score_signal([signal(f) for n in sets if "occluded" not in n for f in feats[n]], everything, success_value)
        out["signals"][name] = per_set
        out["regression_example"][name] = signal(feats["regression"][0]).tolist()
    return out


def run_folder(task: str, reward: str, seed: int, steps: int) -> Path:
    return WORK / "runs" / f"{task}__{reward}__s{seed}__{steps}"


def agent_policies(runs: list[Path]) -> dict[str, list[Any]]:
    """Per RL run of part `learn`, its policy at every snapshot (train.snapshot_every), in order of training:
    rollouts of agents trained with each learned reward, early and late; where they settled is what the
    reward let them exploit."""
    from robo_rl.runs import SNAPSHOTS, load_agent

    policies = {}
    for run in runs:
        snapshots = sorted((run / SNAPSHOTS).glob("step_*.safetensors"), key=lambda p: int(p.stem.split("_")[1]))
        agents = [load_agent(p)[0] for p in snapshots or [run]]
        reward, seed = run.name.split("__")[1], run.name.split("__")[2]
        policies[f"agent {reward} {seed}"] = [lambda obs, a=a: a.act(obs, deterministic=True) for a in agents]
    return policies


def reward_file(task: str, kind: str, opts: argparse.Namespace, features: Path) -> Path:
    from robo_rl.rewards.pipeline import fit_perceptual_file, fit_process_file

    path = WORK / f"{kind}__{task}.safetensors"
    if not path.exists():
        demos = demo_file(task, opts.demos)
        if kind == "process":
            fit_process_file([demos], features, path, CAMERAS, steps=opts.model_steps, limit=opts.train_demos)
        elif kind == "perceptual":
            fit_perceptual_file(demos, features, path, CAMERAS[0], limit=opts.train_demos)
        elif kind == "perceptual_failures":
            failures = failures_file(task, opts.train_demos)
            if failures is None:
                raise ConfigError(f"no perceptual_failures arm on {task}: the noisy expert does not fail often enough")
            fit_perceptual_file(demos, features, path, CAMERAS[0], limit=opts.train_demos, failures_file=failures)
        else:   # perceptual_agent_negatives
            fit_perceptual_file(demos, features, path, CAMERAS[0], limit=opts.train_demos,
                                failures_file=agent_negatives_file(task, opts, features))
    return path


def learn(task: str, reward: str, seed: int, steps: int, model: Path | None, extra: list[str]) -> dict[str, Any]:
    import csv

    from robo_rl.config import compose, to_container
    from robo_rl.runs import load_run_config, train_run

    run_dir = run_folder(task, reward, seed, steps)
    resume = (run_dir / "checkpoint.safetensors").exists()
    overrides = ["agent=sb3_sac", "env=metaworld", f"env.id={task}", "env.max_episode_steps=200", f"reward={REWARD_CONFIG.get(reward, reward)}",
                 f"seed={seed}", f"train.steps={steps}", f"train.eval_every={min(max(steps // 10, 1000), steps)}", "train.eval_episodes=10",
                 f"train.checkpoint_every={max(steps // 5, 1000)}", f"train.snapshot_every={max(steps // 5, 1000)}",
                 *RUN_DEFAULTS, "agent.learning_starts=2000"]
    if model is not None:
        overrides.append(f"reward.model={model.as_posix()}")  # relative: the run folder resumes in any checkout
    if reward == "process":
        # Potential differences sum to at most Phi's range (1) per episode: scaled by 10 they are not lost
        # under SAC's entropy bonus. Any scale leaves the optimal policy unchanged.
        overrides.append("reward.scale=10")
    cfg = load_run_config(run_dir) if resume else compose(overrides + extra)
    final = train_run(cfg, run_dir, resume=resume)
    evaluations_file = run_dir / "evaluations.json"
    evaluations = json.loads(evaluations_file.read_text()) if evaluations_file.exists() else []
    with open(run_dir / "episodes.csv") as f:
        ends = [int(row["step"]) for row in csv.DictReader(f)]
    curve = [{"step": e["step"], "success_rate": e.get("success_rate", 0.0), "return": e["mean_return"],
              "rollouts": sum(1 for s in ends if s <= e["step"])} for e in evaluations]
    reached = next((p["rollouts"] for p in curve if p["success_rate"] >= 0.95), None)
    return {"task": task, "reward": reward, "seed": seed, "steps": steps, "curve": curve, "rollouts_to_95": reached,
            "closing_eval": {"success_rate": float(final.get("success_rate", 0.0)), "mean_return": float(final["mean_return"])}, "config": to_container(cfg.reward)}


def quality_plot(folder: Path) -> None:
    """Grouped bars: mean rank correlation of every signal on every task (whiskers down to the worst demo)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(p.read_text()) for p in sorted(folder.glob("quality__*.json"))]
    if not results:
        return
    signals = [k for k, v in results[0].items() if isinstance(v, dict)]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / len(signals)
    for i, signal in enumerate(signals):
        means = [r[signal]["mean"] if signal in r else np.nan for r in results]
        lows = [r[signal]["mean"] - r[signal]["min"] if signal in r else 0 for r in results]
        x = np.arange(len(results)) + (i - (len(signals) - 1) / 2) * width
        ax.bar(x, means, width, yerr=[lows, [0] * len(results)], label=signal, capsize=2)
    ax.set_xticks(np.arange(len(results)), [r["task"] for r in results])
    ax.set_ylabel("Spearman rho with true progress")
    ax.axhline(0.9, color="k", lw=0.8, ls="--")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("learned rewards on held-out expert demos (bar: mean, whisker: worst demo)")
    fig.tight_layout()
    fig.savefig(folder / "quality.png", dpi=110)
    plt.close(fig)


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def robustness_lines(folder: Path) -> list[str]:
    """The robustness table (beside the held-out-demo rho) and one regression plot per task."""
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("robustness__*.json"))]
    if not results:
        return []
    lines = ["", "Off the expert's demos (`--part robustness`; rewards/robustness.py): rho with true progress over every "
             "frame of all sets (noisy experts, regressions, random and agent rollouts), on the regression set alone, and "
             "with corner2 occluded there; rho with time on the sets' successful trajectories; pairwise end-state accuracy "
             "(failed below successful); exploitability (best value of a non-succeeding frame / the demos' value at success; "
             "> 1: a policy can score more without succeeding), over agent rollouts where there are any, else over all sets.", "",
             "| task | signal | held-out demos rho | all sets rho | regression rho | regression, corner2 occluded | rho with time (successes) | pairwise end | exploitability |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    per_agent = []   # an agent trained against a hardened reward: is that reward exploited as well?
    for r in results:
        quality_path = folder / f"quality__{r['task']}.json"
        held = json.loads(quality_path.read_text()) if quality_path.is_file() else {}
        agents = [n for n in r["sets"] if n.startswith("agent ")]
        for name, per_set in r["signals"].items():
            exploit = max((per_set[n]["exploitability"] for n in agents if per_set[n]["exploitability"] is not None), default=None) \
                if agents else per_set["all sets"]["exploitability"]
            lines.append(f"| {r['task']} | {name} | {_metric(held.get(name, {}).get('mean'))} | {_metric(per_set['all sets']['rho_progress'])} | "
                         f"{_metric(per_set['regression']['rho_progress'])} | {_metric(per_set['regression, corner2 occluded']['rho_progress'])} | "
                         f"{_metric(per_set['all sets']['rho_time_successful'])} | {_metric(per_set['all sets']['pairwise_end'])} | "
                         f"{_metric(exploit)}{'' if agents else ' (no agents)'} |")
        regression_plot(r, folder / f"regression__{r['task']}.png")
        if len(agents) > 1:
            per_agent += ["", f"Exploitability on {r['task']}, per agent's rollouts:", "",
                          "| signal | " + " | ".join(agents) + " |", "|---|" + "---:|" * len(agents)]
            per_agent += [f"| {name} | " + " | ".join(_metric(per_set[n]["exploitability"]) for n in agents) + " |"
                          for name, per_set in r["signals"].items()]
    lines += per_agent
    lines.append("")
    for r in results:
        lines.append(f"Sets of {r['task']}: " + ", ".join(f"{n} ({v['successes']}/{v['trajectories']} succeed)"
                                                    for n, v in r["sets"].items() if "occluded" not in n) + ".")
    return lines


def regression_plot(result: dict[str, Any], path: Path) -> None:
    """Learned progress against true progress along one regression trajectory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    example = result["regression_example"]
    ax.plot(example["true"], color="k", lw=2.2, label="true progress (simulator)")
    for name, values in example.items():
        if name != "true":
            ax.plot(values, lw=1, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("progress")
    ax.set_title(f"{result['task']}: regression trajectory")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report() -> str:
    from robo_rl.evaluate import aggregate
    from robo_rl.report import plot_curves

    folder = results_dir() / "rewards"
    lines = ["Reward quality: Spearman rank correlation with true progress on held-out expert demos (mean, worst demo).", "",
             "| task | signal | mean rho | min rho |", "|---|---|---:|---:|"]
    for path in sorted(folder.glob("quality__*.json")):
        q = json.loads(path.read_text())
        for key, value in q.items():
            if isinstance(value, dict):
                lines.append(f"| {q['task']} | {key} | {value['mean']:.3f} | {value['min']:.3f} |")
    quality_plot(folder)
    lines += robustness_lines(folder)
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("learn__*.json"))]
    if runs:
        lines += ["", f"{FINAL_NOTE} {SEEDS_NOTE}", "", "Policy learning (SB3 SAC, state observations): final success rate over seeds, rollouts to 95% success, "
                  "and the task's own dense return (evaluation; not what the agents were trained on).", "",
                  "| task | reward | seeds | env steps | final success (mean) | IQM | per seed | rollouts to 95% | final task return (mean) |",
                  "|---|---|---:|---:|---:|---:|---|---|---:|"]
        for task in sorted({r["task"] for r in runs}):
            curves, returns = {}, {}
            for reward in REWARDS:
                mine = [r for r in runs if r["task"] == task and r["reward"] == reward]
                if not mine:
                    continue
                successes = [final_point(r)["success_rate"] for r in mine]
                agg = aggregate(successes)
                reach = ", ".join(str(r["rollouts_to_95"]) if r["rollouts_to_95"] is not None else "-" for r in mine)
                task_return = np.mean([final_return(r) for r in mine])
                lines.append(f"| {task} | {reward} | {len(mine)} | {mine[0]['steps']} | {agg['mean']:.2f} | {agg['iqm']:.2f} | {per_seed(successes, '{:.1f}')} | {reach} "
                             f"| {task_return:.0f} |")
                curves[reward] = [[(p["step"], p["success_rate"]) for p in r["curve"]] for r in mine]
                if all("return" in p for r in mine for p in r["curve"]):
                    returns[reward] = [[(p["step"], p["return"]) for p in r["curve"]] for r in mine]
            plot_curves(curves, folder / f"learn__{task}.png", title=f"{task}: success rate, mean (band min-max)",
                        ylabel="eval success rate", ylim=(-0.03, 1.03))
            if returns:
                plot_curves(returns, folder / f"learn_return__{task}.png", ylabel="eval task return (dense)",
                            title=f"{task}: task's own return, mean (band min-max)")
    return write_summary("rewards", folder, lines)


def check_rewards(names: str, option: str) -> list[str]:
    rewards = names.split(",")
    for reward in rewards:
        if reward not in REWARDS:
            raise ConfigError(f"{option}: unknown reward '{reward}' (valid: {', '.join(REWARDS)})")
    return rewards


def agent_run(task: str, reward: str, opts: argparse.Namespace, features: Path) -> Path:
    """The seed-0 run of part `learn` with this reward, trained (or finished) here if it is not done; its
    result file is written if part `learn` has none yet."""
    run_dir = run_folder(task, reward, 0, opts.steps)
    if not (run_dir / "eval.json").is_file():
        model = None if reward == "sparse" else reward_file(task, reward, opts, features)
        print(f"bench rewards: training the {reward}-reward agent on {task} for its rollouts", flush=True)
        result = learn(task, reward, 0, opts.steps, model, opts.override)
        learn_file = results_dir() / "rewards" / f"learn__{task}__{reward}__s0.json"
        if not learn_file.exists():
            write_json(learn_file, result, indent=1)
    return run_dir


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench rewards` (the docs' commands are checked against them)."""
    parser = argparse.ArgumentParser(prog="robo-rl bench rewards")
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--only", default=None, help="the tasks whose pieces this process runs (default: all of --tasks; the rest "
                        "still feed the feature net and the zero-shot signal): two processes can share one benchmark")
    parser.add_argument("--part", choices=("quality", "learn", "robustness", "all"), default="all",
                        help="all: quality and learn; robustness is run on its own")
    parser.add_argument("--set-episodes", type=int, default=4, help="robustness: trajectories per evaluation set")
    parser.add_argument("--agents", default="perceptual,perceptual_failures",
                        help="robustness: rewards whose seed-0 RL run (part learn, trained here if missing) is rolled out "
                             "at each of its snapshots; 'none' for no agent rollouts")
    parser.add_argument("--demos", type=int, default=15, help="expert demos recorded per task")
    parser.add_argument("--train-demos", type=int, default=10, help="demos the rewards are fitted on; the rest are held out")
    parser.add_argument("--feature-steps", type=int, default=1000)
    parser.add_argument("--model-steps", type=int, default=1500)
    parser.add_argument("--rewards", default="sparse,process,perceptual", help=f"part learn: the arms (valid: {', '.join(REWARDS)})")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--override", action="append", default=[])
    parser.add_argument("--report", action="store_true")
    return runner_options(parser)


def main(args: list[str]) -> None:
    opts = parse_args(build_parser(), args)
    from robo_rl.envs.factory import metaworld_tasks

    tasks = opts.tasks.split(",")
    bad = [t for t in tasks if t not in metaworld_tasks()]
    if bad:
        raise ConfigError(f"unknown Meta-World task(s) {bad}")
    mine = tasks if opts.only is None else opts.only.split(",")
    if not set(mine) <= set(tasks):
        raise ConfigError(f"--only {opts.only}: not among --tasks {opts.tasks}")
    agent_rewards = [] if opts.agents == "none" else check_rewards(opts.agents, "--agents")
    learn_rewards = check_rewards(opts.rewards, "--rewards")
    folder = results_dir() / "rewards"
    folder.mkdir(parents=True, exist_ok=True)
    if not opts.report:
        features = feature_file(tasks, opts.demos, opts.train_demos, opts.feature_steps)
        jobs = []
        if opts.part in ("quality", "all"):
            jobs += [Job(f"reward quality on {task}", quality,
                         dict(task=task, tasks=tasks, episodes=opts.demos, train_demos=opts.train_demos, features=features,
                              steps=opts.model_steps), folder / f"quality__{task}.json") for task in mine]
        if opts.part == "robustness":   # not part of "all": it needs tasks with an articulated object
            for task in mine:
                if (folder / f"robustness__{task}.json").exists():
                    continue   # its agent runs are not needed either
                jobs.append(Job(f"robustness of the learned rewards on {task}", robustness, dict(
                    task=task, tasks=tasks, episodes=opts.demos, train_demos=opts.train_demos, features=features,
                    steps=opts.model_steps, set_episodes=opts.set_episodes,
                    agent_runs=[agent_run(task, reward, opts, features) for reward in agent_rewards],
                    agent_negatives=agent_negatives_file(task, opts, features) if "perceptual_agent_negatives" in agent_rewards else None),
                    folder / f"robustness__{task}.json"))
        if opts.part in ("learn", "all"):
            for task in mine:
                for reward in learn_rewards:
                    model = None if reward == "sparse" else reward_file(task, reward, opts, features)
                    jobs += [Job(f"{task} {reward} seed {seed}", learn,
                                 dict(task=task, reward=reward, seed=seed, steps=opts.steps, model=model, extra=opts.override),
                                 folder / f"learn__{task}__{reward}__s{seed}.json", has_steps(opts.steps))
                             for seed in seeds_of(opts.seeds)]
        run_bench("rewards", opts, jobs)
    print(report())
