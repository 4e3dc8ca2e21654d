import json

import pytest
import torch
from conftest import run_cli_batch

from robo_rl.checkpoint import load_checkpoint
from robo_rl.config import ConfigError, compose, group_options, validate_overrides

BAD_INPUTS = [
    (["agent=nope"], "unknown agent 'nope'"),
    (["env=marsrover"], "unknown env 'marsrover'"),
    (["train.stepz=5"], "unknown config key 'train.stepz'"),
    (["train.steps=lots"], "config key 'train.steps' expects int, got 'lots'"),
    (["train.progress=maybe"], "config key 'train.progress' expects bool"),
    (["env.context.wind=3"], "unknown config key 'env.context.wind'"),
    (["seed=1.5"], "config key 'seed' expects int"),
    (["train.steps=-5"], "'train.steps' must be > 0, got -5"),
    (["train.snapshot_every=-1"], "'train.snapshot_every' must be >= 0, got -1"),
    (["env=metaworld", "env.id=fly-v3"], "env.id 'fly-v3' is not a metaworld task"),
    (["-m", "seed=0,1", "agent=sb3_sac,nope"], "unknown agent 'nope'"),
    (["env.pixels.enabled=true", "train=smoke"], "SAC takes flat state observations, got shape (9, 84, 84)"),
    (["agent=symphony", "agent.batch_size=lots", "train=smoke"], "agent.batch_size expects int, got 'lots'"),
    (["agent.device=tpu9", "train=smoke"], "agent.device: unknown device 'tpu9'"),
]


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    """Every BAD_INPUTS case through `robo-rl train`, in one interpreter (they all stop before training)."""
    return run_cli_batch([["train", *args] for args, _ in BAD_INPUTS], cwd=tmp_path_factory.mktemp("bad_input"))


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)), ids=[" ".join(args) for args, _ in BAD_INPUTS])
def test_bad_input_gives_one_line_and_exit_2(bad_input_results, case):
    result, message = bad_input_results[case], BAD_INPUTS[case][1]
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


OFFLINE_BAD_INPUTS = [
    (["pretrain", "updates=lots"], "config key 'updates' expects int, got 'lots'"),
    (["pretrain", "tasks=[fly-v3]", "out=nowhere"], "config key 'tasks': 'fly-v3' is not a Meta-World v3 task"),
    (["pretrain", "agent=sac"], "agent 'sac' learns online (robo-rl train); pretrain takes an offline agent (agent=l2m)"),
    (["finetune", "pretrained=nowhere", "agent=sac"], "agent 'sac' learns online (robo-rl train); finetune takes an offline agent"),
    (["finetune", "method=l2m"], "finetune needs pretrained=<a robo-rl pretrain run folder>"),
    (["finetune", "pretrained=nowhere", "method=magic"], "config key 'method' must be full, lora, l2m or l2m_oracle, got 'magic'"),
    (["finetune", "pretrained=nowhere", "method=l2m"], "pretrained: 'nowhere' is neither a finished pre-training run"),
    (["finetune", "pretrained=nowhere", "sequence=cw99"], "unknown sequence 'cw99' (valid: cw10, cw5)"),
    (["datasets", "collect", "tasks=fly-v3"], "task 'fly-v3' is not a Meta-World v3 task"),
    (["datasets", "collect"], "datasets collect needs tasks=<metaworld task[,task...]>"),
    (["datasets", "show", "task=reach-v3", "root=nowhere"], "dataset 'robo_rl/metaworld-reach-expert-v0' not found under nowhere"),
    (["eval", "run=nowhere", "env.idd=3"], "unknown config key 'env.idd'"),
]


def test_offline_commands_reject_bad_input(tmp_path):
    results = run_cli_batch([args for args, _ in OFFLINE_BAD_INPUTS], cwd=tmp_path)
    for (args, message), result in zip(OFFLINE_BAD_INPUTS, results):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)


def test_other_commands_reject_bad_input(cli, tmp_path):
    assert cli("fly").returncode == 2   # one in a process of its own, as a user runs it
    fly, bench, tasks, missing, video, resume, *deploy = run_cli_batch([
        ["fly"], ["bench", "nope"], ["bench", "learn", "--tasks", "Foo-v5"], ["eval", f"run={tmp_path / 'missing'}"],
        ["eval", f"run={tmp_path / 'missing'}", "video=maybe"], ["train", f"resume={tmp_path}"],
        ["deploy", "checkpoint=nowhere", "robot=ur5"], ["deploy", "robot.limits.velocity=fast", "checkpoint=nowhere"],
        ["deploy", "checkpoint=nowhere"]], cwd=tmp_path)
    assert fly.returncode == 2 and fly.stderr.strip() == ("robo-rl: unknown command 'fly' (valid: train, eval, deploy, fas, mbtl, "
                                                          "bench, demos, datasets, pretrain, finetune, options)")
    assert bench.returncode == 2
    only, arm = run_cli_batch([["bench", "rewards", "--only", "reach-v3", "--report"],
                               ["bench", "rewards", "--part", "robustness", "--agents", "perceptual,shiny", "--report"]], cwd=tmp_path)
    assert only.returncode == 2 and only.stderr.strip() == (
        "robo-rl: --only reach-v3: not among --tasks drawer-open-v3,button-press-topdown-v3,door-open-v3")
    assert arm.returncode == 2 and arm.stderr.strip() == ("robo-rl: --agents: unknown reward 'shiny' (valid: sparse, process, "
                                                          "perceptual, perceptual_failures, perceptual_agent_negatives)")
    assert tasks.returncode == 2 and tasks.stderr.strip() == (
        "robo-rl: --tasks: unknown task 'Foo-v5' (valid: HalfCheetah-v5, Walker2d-v5, Humanoid-v5, Hopper-v5)")
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr
    assert video.returncode == 2 and "argument 'video' expects true or false, got 'maybe'" in video.stderr
    assert resume.returncode == 2 and "config.yaml" in resume.stderr
    robot, velocity, checkpoint = deploy
    assert robot.returncode == 2 and "unknown robot 'ur5'" in robot.stderr
    assert velocity.returncode == 2 and "robot.limits.velocity" in velocity.stderr
    assert checkpoint.returncode == 2 and "nowhere" in checkpoint.stderr
    for result in (fly, bench, tasks, missing, video, resume, *deploy):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_group_options_list_configs():
    assert {"sb3_sac", "sb3_td3"} <= set(group_options("agent"))
    assert {"halfcheetah", "metaworld", "dmc"} <= set(group_options("env"))
    assert "_common" not in group_options("env")


def test_compose_applies_overrides():
    cfg = compose(["agent=sb3_td3", "env=hopper", "train.steps=123", "seed=7"])
    assert cfg.agent.algo == "TD3" and cfg.env.id == "Hopper-v5" and cfg.train.steps == 123 and cfg.seed == 7
    assert cfg.env.pixels.size == 84  # shared env defaults are composed in
    assert compose([]).agent.name == "sac"  # the suite's default agent
    validate_overrides(["agent=sb3_td3", "agent.hyperparams.learning_rate=0.001"])
    with pytest.raises(ConfigError, match="learning_rate"):
        validate_overrides(["agent.hyperparams.learning_rate=fast"])


SMOKE = ["agent=sb3_sac", "train=smoke", "agent.learning_starts=100", "env.max_episode_steps=100", "agent.hyperparams.batch_size=32"]


@pytest.mark.parametrize("agent", ["sb3_sac"])  # TD3 goes the same way (and runs in the resume and ADS tests)
def test_train_then_eval_smoke(cli, tmp_path, agent):
    result = cli("train", *SMOKE, f"agent={agent}", "train.video_steps=20", "train.snapshot_every=300",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoint.safetensors", "eval.json", "evaluations.json", "learning_curve.png",
                 "policy.mp4", "episodes.csv", "metrics.jsonl"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["episodes"] == 2 and "random_policy" in evaluation
    assert [e["step"] for e in json.loads((run / "evaluations.json").read_text())] == [300, 600]
    # snapshots along training: the last one is the final policy, the first one an earlier one
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step_300.safetensors", "step_600.safetensors"]
    final, early, last = (load_checkpoint(p)[0]["agent"]["policy"] for p in (run, run / "snapshots" / "step_300.safetensors",
                                                                   run / "snapshots" / "step_600.safetensors"))
    weights = [k for k, v in final.items() if hasattr(v, "shape") and v.ndim == 2]
    assert weights and all(torch.equal(final[k], last[k]) for k in weights)
    assert not all(torch.equal(final[k], early[k]) for k in weights)
    # then, in one interpreter: `robo-rl eval` (of the run and of a snapshot), and training into the folder
    # again, which holds a run: refused, not silently mixed
    result, snapshot_eval, again_train = run_cli_batch(
        [["eval", f"run={run}", "episodes=2", "seed=7"], ["eval", f"run={run / 'snapshots' / 'step_300.safetensors'}", "episodes=1"],
         ["train", *SMOKE, f"agent={agent}", f"hydra.run.dir={run}"]], cwd=tmp_path)
    assert snapshot_eval.returncode == 0 and "eval return" in snapshot_eval.stdout, snapshot_eval.stderr
    assert result.returncode == 0 and "eval return" in result.stdout
    again = json.loads((run / "eval_s7_2ep.json").read_text())
    assert again["episodes"] == 2 and again["seed"] == 7 and again["random_policy"] == evaluation["random_policy"]
    assert json.loads((run / "eval.json").read_text()) == evaluation  # the closing evaluation is kept
    assert again_train.returncode == 2 and "already holds a run" in again_train.stderr


def test_multirun_sweeps_seeds(cli, tmp_path):
    result = cli("train", "-m", "seed=1,2", *SMOKE, "train.steps=200", "train.eval_every=0",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs == ["0_sb3_sac_halfcheetah_s1", "1_sb3_sac_halfcheetah_s2"]
    for name in runs:
        assert (tmp_path / "sweep" / name / "checkpoint.safetensors").is_file()


@pytest.mark.slow
def test_multirun_on_local_ray(cli, tmp_path):
    # The suite's SAC (lighter to import than SB3) and no Ray dashboard: the jobs are what is tested.
    result = cli("train", "-m", "seed=1,2", "agent=sac", "train=smoke", "agent.learning_starts=100", "agent.batch_size=32",
                 "env.max_episode_steps=100", "train.steps=200", "train.eval_every=0", "train.eval_episodes=1", "threads=1",
                 "hydra/launcher=ray", "+hydra.launcher.ray.init.include_dashboard=false", "+hydra.launcher.ray.init.num_cpus=2",
                 f"hydra.sweep.dir={tmp_path / 'ray'}",
                 env={"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for seed, name in ((1, "0_sac_halfcheetah_s1"), (2, "1_sac_halfcheetah_s2")):
        evaluation = json.loads((tmp_path / "ray" / name / "eval.json").read_text())
        assert evaluation["agent"] == "sac" and evaluation["seed"] == seed and len(evaluation["returns"]) == 1


def test_symphony_trains_through_the_cli(cli, tmp_path):
    result = cli("train", "agent=symphony_cpu", "train=smoke", "agent.explore_steps=200", "agent.times=3",
                 "agent.hidden=32", "agent.batch_size=32", "env.max_episode_steps=100", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert evaluation["agent"] == "symphony_cpu" and len(evaluation["returns"]) == 2


def test_bench_throughput_quick_writes_results_and_skips_done(cli, tmp_path):
    out = tmp_path / "throughput.json"
    result = cli("bench", "throughput", "--quick", "--only", "env/mujoco", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data["entries"]) == {"env/mujoco/HalfCheetah-v5", "env/mujoco/HalfCheetah-v5/pixels"}
    for entry in data["entries"].values():
        assert entry["steps_per_second"] == pytest.approx(entry["steps"] / entry["seconds"])
    assert entry["observation"].startswith("pixels") and entry["steps"] == 100  # quick: 100 pixel steps
    rows = [line for line in result.stdout.splitlines() if line.startswith("| mujoco/HalfCheetah-v5 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["state", "pixels 84x84x3, 3 frames"]
