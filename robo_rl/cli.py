"""robo-rl command line.

  robo-rl train [key=value ...] [-m]     train (Hydra overrides; -m/--multirun sweeps, e.g. seed=0,1,2)
  robo-rl train resume=<run dir>         continue a run from its last checkpoint
  robo-rl eval run=<run dir> [episodes=10] [seed=20000] [video=true] [env=<env> env.id=<task> ...]
                                         writes eval_s<seed>_<episodes>ep.json beside the run's eval.json
                                         (env=... plays the policy on another task than the one it learned)
  robo-rl deploy checkpoint=<run dir> [robot=sim_arm] [transport=rospy|rosbridge] [dry_run=true] [key=value ...]
                                         run a trained policy on a ROS arm behind the safety layer
  robo-rl fas run=<run dir> [intervals=1,2,4,8,16] [episodes=5] [reference=<return>]
                                         Frequency-Averaged Score: returns at slower decision rates
  robo-rl demos collect task=<metaworld task> episodes=10 out=<file.h5> [cameras=corner,corner2] [size=84] [seed=0]
                    [noise=0] [keep=success|failed]   keep=failed with noise=2: near misses (a reward's negatives)
  robo-rl demos show file=<file.h5>      validate a demo file and summarise it
  robo-rl demos features demos=<a.h5,b.h5> out=<net.safetensors> [steps=2000]
                                         pre-train the frozen image features (time-contrastive)
  robo-rl demos fit kind=perceptual|process demos=<a.h5[,b.h5]> features=<net> out=<reward>
                    [cameras=corner,corner2] [adapt=<new-task.h5>] [steps=1500] [failures=<failed.h5>]
                                         fit a learned reward; use it with reward=<kind> reward.model=<reward>
  robo-rl datasets collect tasks=<task,task,...> [episodes=40] [noise=0.1] [root=<minari root>] [seed=0]
                                         Minari datasets of Meta-World's scripted experts, one per task
  robo-rl datasets show task=<task> [root=<minari root>]
  robo-rl pretrain [tasks=[...]] [updates=10000] [key=value ...]
                                         pre-train L2M's decision transformer on several tasks' datasets
  robo-rl finetune pretrained=<run dir> method=full|lora|l2m|l2m_oracle [sequence=cw5|cw10] [key=value ...]
                                         learn a sequence of tasks one after another (continual protocol)
  robo-rl mbtl family=<name> budget=K [seed=0] [gap=linear|linear_estimated] [launcher.address=<head>:6379]
                                         model-based transfer: which K contexts to train on (Ray jobs),
                                         and which trained policy to deploy on every context
  robo-rl bench <name> [options]         benchmarks: throughput, learn, ros, fas, rewards, ads, mbtl, l2m
                                         (robo-rl bench <name> --help lists a benchmark's options)
  robo-rl options <group>                list the choices of a config group (agent, env, reward, train, robot, family, sequence)

Bad input prints one line naming the bad key or value and exits with code 2.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import robo_rl  # noqa: F401  (sets MUJOCO_GL before anything imports mujoco)

USAGE = __doc__.strip()
EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    pass


def _fail(message: str) -> int:
    print(f"robo-rl: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _boolean(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ValueError(raw)


def _key_values(args: list[str], allowed: dict[str, type]) -> dict[str, object]:
    values: dict[str, object] = {}
    for arg in args:
        key, sep, raw = arg.partition("=")
        if not sep or key not in allowed:
            raise UsageError(f"unknown argument '{arg}' (valid: {', '.join(k + '=' for k in allowed)})")
        kind = allowed[key]
        try:
            values[key] = _boolean(raw) if kind is bool else kind(raw)
        except ValueError:
            expected = "true or false" if kind is bool else kind.__name__
            raise UsageError(f"argument '{key}' expects {expected}, got '{raw}'") from None
    return values


# The key=value arguments of the commands that are not Hydra configs.
EVAL_KEYS = {"run": str, "episodes": int, "video": bool, "seed": int}
FAS_KEYS = {"run": str, "intervals": str, "episodes": int, "seed": int, "reference": float}
DEMOS_KEYS = {
    "collect": {"task": str, "episodes": int, "out": str, "cameras": str, "size": int, "seed": int, "max_steps": int,
                "noise": float, "keep": str},
    "show": {"file": str},
    "features": {"demos": str, "out": str, "steps": int, "seed": int, "width": int},
    "fit": {"kind": str, "demos": str, "features": str, "out": str, "cameras": str, "adapt": str, "steps": int,
            "n_steps": int, "seed": int, "failures": str},
}
DATASETS_KEYS = {"collect": {"tasks": str, "episodes": int, "noise": float, "root": str, "seed": int},
                 "show": {"task": str, "root": str}}


def cmd_train(args: list[str]) -> int:
    from robo_rl.runs import load_run_config, train_run

    resume = [a for a in args if a.startswith("resume=")]
    if resume:
        run_dir = Path(resume[0].split("=", 1)[1])
        extra = [a for a in args if not a.startswith("resume=")]
        cfg = load_run_config(run_dir)
        steps = _key_values(extra, {"train.steps": int}).get("train.steps")
        if steps is not None:
            cfg.train.steps = steps
        train_run(cfg, run_dir, resume=True)
        print(f"robo-rl: run folder {run_dir}")
        return 0
    check_command(["train", *args])   # every combination of a sweep, before any job starts
    _hydra_train(args)
    return 0


def ray_launcher_args(args: list[str]) -> list[str]:
    """`launcher.address=<head>:6379` also reaches Hydra's Ray launcher (its own key is deeper down)."""
    address = [a.split("=", 1)[1] for a in args if a.startswith("launcher.address=")]
    if address and address[-1] not in ("null", "") and "hydra/launcher=ray" in args:
        return [*args, f"hydra.launcher.ray.init.address={address[-1]}"]
    return list(args)


def _hydra_train(args: list[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path="pkg://robo_rl.configs", config_name="config", version_base="1.3")
    def task(cfg: DictConfig) -> float:
        from robo_rl.checkpoint import CheckpointError
        from robo_rl.config import ConfigError
        from robo_rl.runs import train_run
        from robo_rl.train import TrainingInterrupted

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            result = train_run(cfg, run_dir)
        except (ConfigError, CheckpointError) as exc:  # one line, not Hydra's traceback
            sys.exit(_fail(str(exc)))
        except TrainingInterrupted as exc:
            print(f"robo-rl: {exc} (continue with: robo-rl train resume={run_dir})", file=sys.stderr)
            sys.exit(130)
        print(f"robo-rl: eval return {result['mean_return']:.1f} +- {result['std_return']:.1f} "
              f"(random policy {result['random_policy']['mean_return']:.1f})")
        print(f"robo-rl: run folder {run_dir}  (config.yaml, checkpoint.safetensors, tb/, eval.json, "
              f"learning_curve.png{', policy.mp4' if (run_dir / 'policy.mp4').is_file() else ''})")
        return float(result["mean_return"])

    # Ray starts its workers at niceness 15, so that next to any other busy process a training job
    # (the work itself) gets a few percent of a core: measured 286 s against 37 s for the same two
    # small jobs with one other process busy. Jobs launched from here run at normal priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    argv = sys.argv
    sys.argv = ["robo-rl train", *ray_launcher_args(args)]
    try:
        task()
    finally:
        sys.argv = argv


def cmd_eval(args: list[str]) -> int:
    from robo_rl.config import compose, to_container, validate_overrides
    from robo_rl.runs import eval_run

    env_args = [a for a in args if a.split("=", 1)[0] == "env" or a.startswith("env.")]
    opts = _key_values([a for a in args if a not in env_args], EVAL_KEYS)
    if "run" not in opts:
        raise UsageError("eval needs run=<run folder or checkpoint file>")
    env_cfg = None
    if env_args:
        validate_overrides(env_args)
        env_cfg = to_container(compose(env_args).env)
    result = eval_run(opts["run"], int(opts.get("episodes", 10)), int(opts.get("seed", 20_000)), bool(opts.get("video", False)),
                      env_cfg)
    line = f"robo-rl: eval return {result['mean_return']:.1f} +- {result['std_return']:.1f} over {result['episodes']} episodes"
    if "success_rate" in result:
        line += f", success {100 * result['success_rate']:.0f}%"
    print(line)
    return 0


def cmd_bench(args: list[str]) -> int:
    from robo_rl.bench import BENCHMARKS, run_benchmark

    if not args or args[0] not in BENCHMARKS:
        raise UsageError(f"bench needs a benchmark name (valid: {', '.join(BENCHMARKS)})")
    run_benchmark(args[0], args[1:])
    return 0


def cmd_deploy(args: list[str]) -> int:
    from omegaconf import OmegaConf

    from robo_rl.config import DEPLOY_GROUPS, compose, validate_overrides
    from robo_rl.real_robot.deploy import EXIT_WATCHDOG, deploy

    validate_overrides(args, "deploy", DEPLOY_GROUPS)
    cfg = compose(args, "deploy")
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise UsageError("deploy needs checkpoint=<run folder or checkpoint file>")
    summary = deploy(cfg)
    lat = summary["latency_ms"]
    print(f"robo-rl: deploy {summary['status']} after {summary['steps']} steps over {summary['transport']}"
          f"{' (dry run)' if summary['dry_run'] else ''}; holds {summary['holds']}, bad states {summary['bad_states']}"
          + (f", latency p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms" if lat else "")
          + (f", goal distance {summary['final_goal_distance']:.3f}" if summary["final_goal_distance"] is not None else ""))
    print(f"robo-rl: commands logged in {summary['out']}/commands.csv")
    if summary["status"] == "done":
        return 0
    print(f"robo-rl: {summary['message']}", file=sys.stderr)
    return EXIT_WATCHDOG if summary["status"] == "watchdog" else 130 if summary["status"] == "interrupted" else 1


def cmd_fas(args: list[str]) -> int:
    from robo_rl.fas import DEFAULT_INTERVALS, fas_run

    opts = _key_values(args, FAS_KEYS)
    if "run" not in opts:
        raise UsageError("fas needs run=<run folder or checkpoint file>")
    try:
        intervals = [int(k) for k in str(opts.get("intervals", ",".join(map(str, DEFAULT_INTERVALS)))).split(",")]
    except ValueError:
        raise UsageError(f"argument 'intervals' expects whole numbers separated by commas, got '{opts['intervals']}'") from None
    if any(k < 1 for k in intervals) or len(set(intervals)) < 2:
        raise UsageError(f"argument 'intervals' needs at least two distinct values >= 1, got {intervals}")
    if int(opts.get("episodes", 5)) < 1:
        raise UsageError(f"argument 'episodes' must be >= 1, got {opts['episodes']}")
    try:
        result = fas_run(opts["run"], intervals, int(opts.get("episodes", 5)), int(opts.get("seed", 30_000)), opts.get("reference"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    shown = ", ".join(f"{p['interval']}: {p['mean_return']:.1f}" for p in result["per_interval"])
    print(f"robo-rl: FAS {result['fas']:.3f} ({result['mode']}; returns by interval {shown}; random {result['random_return']:.1f})")
    print(f"robo-rl: wrote fas.json and fas.png in {Path(opts['run']) if Path(opts['run']).is_dir() else Path(opts['run']).parent}")
    return 0


def cmd_demos(args: list[str]) -> int:
    import warnings

    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")  # metaworld's scripted experts
    sub = args[0] if args else None
    if sub == "collect":
        from robo_rl.envs.factory import metaworld_tasks
        from robo_rl.rewards.demos import collect_demos, save_demos

        opts = _key_values(args[1:], DEMOS_KEYS["collect"])
        if "task" not in opts or "out" not in opts:
            raise UsageError("demos collect needs task=<metaworld task> and out=<file.h5>")
        if opts["task"] not in metaworld_tasks():
            raise UsageError(f"argument 'task': '{opts['task']}' is not a Meta-World v3 task")
        keep = str(opts.get("keep", "success"))
        if keep not in ("success", "failed"):
            raise UsageError(f"argument 'keep' must be success or failed, got '{keep}'")
        if float(opts.get("noise", 0.0)) < 0:
            raise UsageError(f"argument 'noise' must be >= 0, got {opts['noise']}")
        cameras = str(opts.get("cameras", "corner,corner2")).split(",")
        demos = collect_demos(opts["task"], int(opts.get("episodes", 10)), cameras, int(opts.get("size", 84)),
                              int(opts.get("seed", 0)), int(opts.get("max_steps", 500)), action_noise=float(opts.get("noise", 0.0)),
                              keep=keep)
        path = save_demos(opts["out"], demos, opts["task"], source="metaworld-expert" if keep == "success" else "metaworld-expert-failed")
        print(f"robo-rl: {len(demos)} {'demos' if keep == 'success' else 'failed episodes'} of {opts['task']} ({', '.join(cameras)}) written to {path}")
        return 0
    if sub == "show":
        from robo_rl.rewards.demos import load_demos

        opts = _key_values(args[1:], DEMOS_KEYS["show"])
        demos = load_demos(opts.get("file", ""))
        cams = ", ".join(f"{c} {v.shape[1]}x{v.shape[2]}" for c, v in demos[0].frames.items())
        lengths = [d.length - 1 for d in demos]
        print(f"robo-rl: {len(demos)} episodes, steps {min(lengths)}-{max(lengths)}, cameras {cams}, "
              f"states {'yes' if demos[0].states is not None else 'no'}, actions {'yes' if demos[0].actions is not None else 'no'}")
        return 0
    if sub == "features":
        from robo_rl.rewards.pipeline import pretrain_features

        opts = _key_values(args[1:], DEMOS_KEYS["features"])
        if "demos" not in opts or "out" not in opts:
            raise UsageError("demos features needs demos=<a.h5[,b.h5]> and out=<net.safetensors>")
        path, losses = pretrain_features(str(opts["demos"]).split(","), opts["out"], int(opts.get("steps", 2000)),
                                         int(opts.get("width", 32)), int(opts.get("seed", 0)))
        print(f"robo-rl: feature net written to {path} (triplet loss {losses[0]:.3f} -> {sum(losses[-50:]) / len(losses[-50:]):.3f})")
        return 0
    if sub == "fit":
        from robo_rl.rewards.pipeline import fit_perceptual_file, fit_process_file

        opts = _key_values(args[1:], DEMOS_KEYS["fit"])
        for key in ("kind", "demos", "features", "out"):
            if key not in opts:
                raise UsageError(f"demos fit needs {key}=<value>")
        files = str(opts["demos"]).split(",")
        if opts["kind"] == "perceptual":
            camera = str(opts.get("cameras", "corner")).split(",")[0]
            path = fit_perceptual_file(files[0], opts["features"], opts["out"], camera, int(opts.get("n_steps", 5)),
                                       failures_file=opts.get("failures"))
        elif "failures" in opts:
            raise UsageError("argument 'failures' is for kind=perceptual (the final step's hard negatives)")
        elif opts["kind"] == "process":
            cameras = str(opts.get("cameras", "corner,corner2")).split(",")
            path = fit_process_file(files, opts["features"], opts["out"], cameras, int(opts.get("steps", 1500)),
                                    opts.get("adapt"), n_stages=int(opts.get("n_steps", 3)), seed=int(opts.get("seed", 0)))
        else:
            raise UsageError(f"argument 'kind' must be perceptual or process, got '{opts['kind']}'")
        print(f"robo-rl: {opts['kind']} reward written to {path}; train with reward={opts['kind']} reward.model={path}")
        return 0
    raise UsageError("demos needs a subcommand: collect, show, features, fit")


def cmd_datasets(args: list[str]) -> int:
    from robo_rl.datasets import ACTION_NOISE, collect_dataset, dataset_id, load_task_dataset

    sub = args[0] if args else None
    if sub == "collect":
        opts = _key_values(args[1:], DATASETS_KEYS["collect"])
        if "tasks" not in opts:
            raise UsageError("datasets collect needs tasks=<metaworld task[,task...]>")
        for task in str(opts["tasks"]).split(","):
            path = collect_dataset(task, int(opts.get("episodes", 40)), opts.get("root"), int(opts.get("seed", 0)),
                                   float(opts.get("noise", ACTION_NOISE)))
            print(f"robo-rl: dataset {dataset_id(task)} written to {path} (minari.load_dataset('{dataset_id(task)}'))")
        return 0
    if sub == "show":
        opts = _key_values(args[1:], DATASETS_KEYS["show"])
        if "task" not in opts:
            raise UsageError("datasets show needs task=<metaworld task>")
        episodes = load_task_dataset(opts["task"], opts.get("root"))
        returns = [float(e.rewards.sum()) for e in episodes]
        print(f"robo-rl: {dataset_id(opts['task'])}: {len(episodes)} episodes, {sum(len(e.rewards) for e in episodes)} steps, "
              f"success {100 * sum(bool(e.success.any()) for e in episodes) / len(episodes):.0f}%, return {min(returns):.0f}-{max(returns):.0f}")
        return 0
    raise UsageError("datasets needs a subcommand: collect, show")


def _offline_command(args: list[str], name: str, groups: tuple[str, ...]):
    from robo_rl.config import compose, validate_overrides

    validate_overrides(args, name, groups)
    return compose(args, name)


def cmd_pretrain(args: list[str]) -> int:
    from robo_rl.config import PRETRAIN_GROUPS
    from robo_rl.continual import run_pretrain

    cfg = _offline_command(args, "pretrain", PRETRAIN_GROUPS)
    out = Path(cfg.out) if cfg.out else Path("runs") / "pretrain" / f"s{cfg.seed}"
    summary = run_pretrain(cfg, out)
    shown = ", ".join(f"{t} {100 * r['success']:.0f}%" for t, r in summary["evaluation"].items())
    print(f"robo-rl: pre-trained on {len(summary['tasks'])} tasks; success {shown}")
    print(f"robo-rl: run folder {out}  (pretrain.json, checkpoint.safetensors); fine-tune with: robo-rl finetune pretrained={out}")
    return 0


def cmd_finetune(args: list[str]) -> int:
    from robo_rl.config import FINETUNE_GROUPS
    from robo_rl.continual import run_finetune

    cfg = _offline_command(args, "finetune", FINETUNE_GROUPS)
    if "pretrained=" not in " ".join(args):
        raise UsageError("finetune needs pretrained=<a robo-rl pretrain run folder>")
    out = Path(cfg.out) if cfg.out else Path("runs") / "finetune" / str(cfg.method) / f"s{cfg.seed}"
    record = run_finetune(cfg, out)
    m = record["metrics"]
    pretraining = (f", pre-training tasks {m['pretrain_before_success']:.2f} -> {m['pretrain_after_success']:.2f}"
                   if "pretrain_after_success" in m else "")
    print(f"robo-rl: {cfg.method} on {cfg.sequence.name}: average success {m['average_success']:.2f}, "
          f"average forgetting {m['average_forgetting']:.2f}{pretraining}")
    print(f"robo-rl: run folder {out}  (continual.json, success.png, checkpoint.safetensors)")
    return 0


def cmd_mbtl(args: list[str]) -> int:
    from robo_rl.config import MBTL_GROUPS, compose, validate_overrides
    from robo_rl.mbtl import run_mbtl

    validate_overrides(args, "mbtl", MBTL_GROUPS)
    cfg = compose(args, "mbtl")
    out = Path(cfg.out) if cfg.out else Path("runs") / "mbtl" / str(cfg.family.name) / f"s{cfg.seed}"
    summary = run_mbtl(cfg, out)  # a failed job: JobsFailed, one line and exit 1 (main)
    chosen = ", ".join(f"{v:g}" for v in summary["order_contexts"])
    print(f"robo-rl: mbtl trained {cfg.family.key} = {chosen}; generalised performance "
          f"{summary['generalised_performance'][-1]:.3f} (normalised, mean over {len(summary['deployment'])} targets)")
    print(f"robo-rl: run folder {out}  (mbtl.json, deployment.csv, deployment.json, transfer.png, sources/)")
    return 0


def cmd_options(args: list[str]) -> int:
    from robo_rl.config import group_options

    _check_options(args)
    print("\n".join(group_options(args[0])))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "deploy": cmd_deploy, "fas": cmd_fas, "mbtl": cmd_mbtl, "bench": cmd_bench,
            "demos": cmd_demos, "datasets": cmd_datasets, "pretrain": cmd_pretrain, "finetune": cmd_finetune,
            "options": cmd_options}


def check_command(argv: list[str]) -> None:
    """What the CLI checks before a command starts any work, and nothing more: the config composed and
    validated (Hydra groups, keys, types, sweeps), the key=value arguments and a benchmark's options parsed.
    Nothing trains and no file is read, so placeholders such as <run> pass. A bad command raises the
    ConfigError or UsageError the CLI would report in one line."""
    from robo_rl.config import DEPLOY_GROUPS, FINETUNE_GROUPS, MBTL_GROUPS, PRETRAIN_GROUPS, compose, sweep_samples, validate_overrides
    from robo_rl.runs import check_config

    name, args = (argv[0], argv[1:]) if argv else ("", [])
    if name not in COMMANDS:
        raise UsageError(f"unknown command '{name}' (valid: {', '.join(COMMANDS)})")
    if name == "train":
        extra = [a for a in args if not a.startswith("resume=")]
        if len(extra) < len(args):
            _key_values(extra, {"train.steps": int})
            return
        overrides = [a for a in args if a not in ("-m", "--multirun")]
        validate_overrides(overrides)
        for combination in sweep_samples(overrides):
            check_config(compose(combination))
    elif name == "eval":
        env_args = [a for a in args if a.split("=", 1)[0] == "env" or a.startswith("env.")]
        _key_values([a for a in args if a not in env_args], EVAL_KEYS)
        if env_args:
            validate_overrides(env_args)
            compose(env_args)
    elif name == "fas":
        _key_values(args, FAS_KEYS)
    elif name in ("demos", "datasets"):
        keys = DEMOS_KEYS if name == "demos" else DATASETS_KEYS
        if not args or args[0] not in keys:
            raise UsageError(f"{name} needs a subcommand: {', '.join(keys)}")
        _key_values(args[1:], keys[args[0]])
    elif name in ("deploy", "mbtl", "pretrain", "finetune"):
        groups = {"deploy": DEPLOY_GROUPS, "mbtl": MBTL_GROUPS, "pretrain": PRETRAIN_GROUPS, "finetune": FINETUNE_GROUPS}[name]
        validate_overrides(args, name, groups)
        compose(args, name)
    elif name == "bench":
        _check_bench(args)
    else:
        _check_options(args)


def _check_bench(args: list[str]) -> None:
    import importlib

    from robo_rl.bench import BENCHMARKS

    if not args or args[0] not in BENCHMARKS:
        raise UsageError(f"bench needs a benchmark name (valid: {', '.join(BENCHMARKS)})")
    parser = importlib.import_module(BENCHMARKS[args[0]]).build_parser()

    def refuse(message: str) -> None:
        raise UsageError(f"bench {args[0]}: {message}")

    parser.error = refuse   # argparse would print its usage and exit
    if not {"-h", "--help"} & set(args[1:]):   # the help is always there
        parser.parse_args(args[1:])


def _check_options(args: list[str]) -> None:
    from robo_rl.config import DEPLOY_GROUPS, FINETUNE_GROUPS, GROUPS, MBTL_GROUPS

    groups = list(dict.fromkeys(GROUPS + DEPLOY_GROUPS + MBTL_GROUPS + FINETUNE_GROUPS))
    if len(args) != 1 or args[0] not in groups:
        raise UsageError(f"options needs one group (valid: {', '.join(groups)})")


def main(argv: list[str] | None = None) -> int:
    from robo_rl.agents.base import import_plugins
    from robo_rl.checkpoint import CheckpointError
    from robo_rl.config import ConfigError
    from robo_rl.jobs import JobsFailed
    from robo_rl.train import TrainingInterrupted

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        return _fail(f"unknown command '{argv[0]}' (valid: {', '.join(COMMANDS)})")
    try:
        import_plugins(os.environ.get("ROBO_RL_PLUGINS"))  # a user's own agents, registered before anything loads
        return command(argv[1:])
    except (ConfigError, UsageError, CheckpointError) as exc:
        return _fail(str(exc))
    except JobsFailed as exc:
        print(f"robo-rl: {exc} (rerun the same command to retry what is missing)", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"robo-rl: {exc} (continue with robo-rl train resume=<run dir>; a benchmark continues when rerun)", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("robo-rl: interrupted; the last checkpoint is kept (resume with: robo-rl train resume=<run dir>)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
