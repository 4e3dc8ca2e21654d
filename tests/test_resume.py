"""A run killed with SIGKILL and resumed reaches exactly the parameters of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import run_process, spawn

from robo_rl.checkpoint import load_checkpoint, read_info

COMMON = ["train", "train=smoke", "train.steps=600", "train.checkpoint_every=150", "train.eval_every=300",
          "env.max_episode_steps=100", "threads=1", "seed=3"]
AGENTS = {
    "sac": ["agent=sac", "agent.learning_starts=200", "agent.batch_size=64", "agent.net_arch=[64,64]"],
    "sb3_sac": ["agent=sb3_sac", "agent.learning_starts=200", "agent.hyperparams.batch_size=64",
                "agent.hyperparams.net_arch=[64,64]"],
    "crossq": ["agent=crossq", "agent.learning_starts=200", "agent.batch_size=64", "agent.net_arch=[64,64]",
               "agent.critic_width=64"],
    "symphony_cpu": ["agent=symphony_cpu", "agent.explore_steps=200", "agent.times=5", "agent.hidden=64",
                     "agent.batch_size=64"],
}


def cli(*args, cwd):
    return [sys.executable, "-m", "robo_rl.cli", *args]


def sigkill_mid_run(proc, checkpoint, low: int, high: int, timeout: float = 300) -> int:
    """SIGKILL a training process once its checkpoint holds a step in [low, high); returns that step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if low <= read_info(checkpoint)["step"] < high:
                break
        except Exception:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run must be killed mid-way for this test to mean anything"
    killed_at = read_info(checkpoint)["step"]
    assert low <= killed_at < high
    return killed_at


def assert_same_state(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}/{i}")
    elif hasattr(a, "shape"):
        assert (a == b).all(), path
    else:
        assert a == b, path


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, agent):
    ARGS = COMMON + AGENTS[agent]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = run_process(cli(*ARGS, f"hydra.run.dir={straight}", cwd=tmp_path), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = spawn(cli(*ARGS, f"hydra.run.dir={killed}", cwd=tmp_path), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.safetensors"
    killed_at = sigkill_mid_run(proc, checkpoint, 300, 600)

    resumed = run_process(cli("train", f"resume={killed}", cwd=tmp_path), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {killed} at step {killed_at}" in resumed.stdout

    a, info_a = load_checkpoint(straight / "checkpoint.safetensors")
    b, info_b = load_checkpoint(checkpoint)
    assert info_a["step"] == info_b["step"] == 600
    assert_same_state(a["agent"], b["agent"])
    assert_same_state(a["replay"], b["replay"])
    assert [e["mean_return"] for e in a["evaluations"]] == [e["mean_return"] for e in b["evaluations"]]
    # the episode log has one row per episode, no duplicates from the killed stretch
    rows = (killed / "episodes.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == [str(i) for i in range(1, 7)]


def test_sigterm_saves_at_the_episode_end_and_the_run_continues(tmp_path):
    """A polite stop (SIGTERM, as a scheduler sends) finishes the episode, saves there and exits 130.

    No timing race: the run is frozen (SIGSTOP) once a checkpoint has appeared, signalled, then thawed,
    and its budget is far longer than the stop can take to land."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    args = [*COMMON, *AGENTS["sb3_sac"], "train.steps=20000"]
    log = open(tmp_path / "stderr.txt", "w")  # a file, not a pipe: a full pipe would stall the run
    proc = spawn(cli(*args, f"hydra.run.dir={run}", cwd=tmp_path), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    checkpoint = run / "checkpoint.safetensors"
    deadline, seen = time.time() + 300, 0
    while time.time() < deadline and seen < 150 and proc.poll() is None:
        try:
            seen = read_info(checkpoint)["step"]
        except Exception:
            time.sleep(0.02)
    assert seen >= 150, "no checkpoint appeared"
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    proc.wait(timeout=300)
    log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, stderr[-2000:]
    stopped_at = read_info(checkpoint)["step"]
    # at the end of the episode the signal arrived in (the one just checkpointed, or a later one)
    assert seen <= stopped_at < 20000
    assert stopped_at % 100 == 0, "the checkpoint must be written at an episode end (episodes are 100 steps)"
    assert f"stopped at step {stopped_at} of 20000" in stderr
    assert "Traceback" not in stderr

    resumed = run_process(cli("train", f"resume={run}", "train.steps=1000", cwd=tmp_path), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {run} at step {stopped_at}" in resumed.stdout
    assert read_info(checkpoint)["step"] == max(1000, stopped_at)


SMALL = {
    "sac": ["agent=sac", "agent.learning_starts=100", "agent.batch_size=32", "agent.net_arch=[32,32]"],
    "sb3_sac": ["agent=sb3_sac", "agent.learning_starts=100", "agent.hyperparams.batch_size=32",
                "agent.hyperparams.net_arch=[32,32]"],
    "sb3_td3": ["agent=sb3_td3", "agent.learning_starts=100", "agent.hyperparams.batch_size=32",
                "agent.hyperparams.net_arch=[32,32]"],
    "srl": ["agent=srl", "agent.learning_starts=100", "agent.batch_size=32", "agent.net_arch=[32,32]", "agent.gru_hidden=16"],
    "crossq": ["agent=crossq", "agent.learning_starts=200", "agent.batch_size=64", "agent.net_arch=[64,64]",
               "agent.critic_width=64"],
    "symphony_cpu": ["agent=symphony_cpu", "agent.explore_steps=100", "agent.times=3", "agent.hidden=32", "agent.batch_size=32"],
}


@pytest.mark.parametrize("agent", sorted(SMALL))
def test_resume_with_a_larger_budget_grows_the_store_and_trains_to_it(tmp_path, agent):
    """`robo-rl train resume=<run> train.steps=<larger>`: the replay store keeps what it held, in order,
    and the run goes on to the new budget."""
    from robo_rl.config import compose
    from robo_rl.runs import load_run_config, train_run

    run = tmp_path / "run"
    cfg = compose(["train=smoke", "train.steps=300", "train.eval_every=300", "train.checkpoint_every=100",
                   "env=inverted_pendulum", "env.max_episode_steps=50", "seed=1", *SMALL[agent]])
    train_run(cfg, run)
    before, _ = load_checkpoint(run / "checkpoint.safetensors")
    cfg = load_run_config(run)
    cfg.train.steps = 450
    train_run(cfg, run, resume=True)
    after, info = load_checkpoint(run / "checkpoint.safetensors")
    assert info["step"] == 450 and after["loop"]["step"] == 450
    old, new = before["replay"], after["replay"]
    assert new["added"] == 450 and new["capacity"] >= old["capacity"]
    if old["size"] < old["capacity"]:  # nothing was overwritten: the first transitions are where they were
        for field in ("obs", "action", "reward", "terminated"):
            np.testing.assert_array_equal(new[field][: old["size"]], old[field])
    updates_before = before["agent"].get("updates", before["agent"].get("n_updates"))
    updates_after = after["agent"].get("updates", after["agent"].get("n_updates"))
    assert updates_after > updates_before  # it trained on after the resume


def test_resume_with_a_larger_budget_through_the_cli(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    args = ["train", "train=smoke", "train.steps=300", "env=inverted_pendulum", "threads=1", *SMALL["sac"]]
    first = run_process(cli(*args, f"hydra.run.dir={run}", cwd=tmp_path), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    more = run_process(cli("train", f"resume={run}", "train.steps=500", cwd=tmp_path), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert more.returncode == 0 and "Traceback" not in more.stderr, more.stderr[-2000:]
    assert read_info(run / "checkpoint.safetensors")["step"] == 500
