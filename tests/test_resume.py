"""A run killed with SIGKILL and resumed reaches exactly the parameters of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robo_rl.checkpoint import load_checkpoint, read_info

COMMON = ["train", "train=smoke", "train.steps=1000", "train.checkpoint_every=200", "train.eval_every=500",
          "env.max_episode_steps=100", "threads=1", "seed=3"]
AGENTS = {
    "sb3_sac": ["agent=sb3_sac", "agent.learning_starts=200", "agent.hyperparams.batch_size=64",
                "agent.hyperparams.net_arch=[64,64]"],
    "symphony_cpu": ["agent=symphony_cpu", "agent.explore_steps=200", "agent.times=5", "agent.hidden=64",
                     "agent.batch_size=64"],
}


def cli(*args, cwd):
    return [sys.executable, "-m", "robo_rl.cli", *args]


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
    done = subprocess.run(cli(*ARGS, f"hydra.run.dir={straight}", cwd=tmp_path), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(cli(*ARGS, f"hydra.run.dir={killed}", cwd=tmp_path), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.safetensors"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if 400 <= read_info(checkpoint)["step"] < 1000:
                break
        except Exception:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run must be killed mid-way for this test to mean anything"
    killed_at = read_info(checkpoint)["step"]
    assert 400 <= killed_at < 1000

    resumed = subprocess.run(cli("train", f"resume={killed}", cwd=tmp_path), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {killed} at step {killed_at}" in resumed.stdout

    a, info_a = load_checkpoint(straight / "checkpoint.safetensors")
    b, info_b = load_checkpoint(checkpoint)
    assert info_a["step"] == info_b["step"] == 1000
    assert_same_state(a["agent"], b["agent"])
    assert_same_state(a["replay"], b["replay"])
    assert [e["mean_return"] for e in a["evaluations"]] == [e["mean_return"] for e in b["evaluations"]]
    # the episode log has one row per episode, no duplicates from the killed stretch
    rows = (killed / "episodes.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == [str(i) for i in range(1, 11)]


def test_sigterm_saves_at_the_episode_end_and_the_run_continues(tmp_path):
    """A polite stop (SIGTERM, as a scheduler sends) finishes the episode, saves there and exits 130."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    args = COMMON + AGENTS["sb3_sac"]
    log = open(tmp_path / "stderr.txt", "w")  # a file, not a pipe: a full pipe would stall the run
    proc = subprocess.Popen(cli(*args, f"hydra.run.dir={run}", cwd=tmp_path), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    checkpoint = run / "checkpoint.safetensors"
    deadline, seen = time.time() + 300, 0
    while time.time() < deadline and seen < 200:
        try:
            seen = read_info(checkpoint)["step"]
        except Exception:
            time.sleep(0.02)
    assert seen >= 200, "no checkpoint appeared"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    log.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 130, stderr[-2000:]
    stopped_at = read_info(checkpoint)["step"]
    assert seen < stopped_at < 1000, "the stop must land after the checkpoint seen and before the run's end"
    assert stopped_at % 100 == 0, "the checkpoint must be written at an episode end (episodes are 100 steps)"
    assert f"stopped at step {stopped_at} of 1000" in stderr
    assert "Traceback" not in stderr

    resumed = subprocess.run(cli("train", f"resume={run}", cwd=tmp_path), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed {run} at step {stopped_at}" in resumed.stdout
    assert read_info(checkpoint)["step"] == 1000
