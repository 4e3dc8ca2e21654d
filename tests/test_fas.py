"""Decision-interval wrapper arithmetic and the Frequency-Averaged Score."""
import json

import gymnasium as gym
import numpy as np
import pytest
import yaml
from conftest import assert_png_shows, run_cli_batch

from robo_rl.envs.decision import DecisionInterval
from robo_rl.fas import fas_score


class Counter(gym.Env):
    """Reward = the action's value at every step; terminates when the step count hits `stop_at`."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)

    def __init__(self, stop_at=None, limit=None):
        self.stop_at, self.limit, self.t = stop_at, limit, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.stop_at is not None and self.t >= self.stop_at
        truncated = self.limit is not None and self.t >= self.limit
        return np.array([self.t], np.float32), float(np.asarray(action).ravel()[0]), terminated, truncated, {"t": self.t}


def test_repeat_sums_rewards_over_the_interval():
    env = DecisionInterval(Counter(), 3, "repeat")
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([2.0]))
    assert reward == 6.0 and obs[0] == 3 and info["primitive_steps"] == 3 and not (terminated or truncated)


def test_sequence_plays_each_action_in_order():
    env = DecisionInterval(Counter(), 4, "sequence")
    assert env.action_space.shape == (4, 1)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([[1.0], [2.0], [3.0], [4.0]]))
    assert reward == 10.0 and info["primitive_rewards"] == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="needs 4 actions"):
        env.step(np.zeros((3, 1)))


def test_termination_inside_an_interval_stops_it_exactly():
    env = DecisionInterval(Counter(stop_at=5), 3, "sequence")
    env.reset(seed=0)
    _, r1, term1, _, _ = env.step(np.array([[1.0], [1.0], [1.0]]))
    obs, r2, term2, trunc2, info = env.step(np.array([[10.0], [20.0], [30.0]]))
    # Steps 4 and 5 run; step 5 terminates, so the third action (30) is never executed.
    assert (r1, term1) == (3.0, False) and r2 == 30.0 and term2 and not trunc2
    assert info["primitive_steps"] == 2 and obs[0] == 5 and info["t"] == 5


def test_truncation_inside_an_interval_is_kept_apart():
    env = DecisionInterval(Counter(limit=4), 3, "repeat")
    env.reset(seed=0)
    env.step(np.array([1.0]))
    _, reward, terminated, truncated, info = env.step(np.array([1.0]))
    assert reward == 1.0 and truncated and not terminated and info["primitive_steps"] == 1


def test_fas_of_known_returns_matches_hand_computation():
    # n = (1.0, 0.8, 0.4) at f = (1, 1/2, 1/4): area = 0.25*(0.4+0.8)/2 + 0.5*(0.8+1.0)/2 = 0.6; / 0.75 = 0.8
    assert fas_score([1, 2, 4], [100.0, 80.0, 40.0], random_return=0.0, reference_return=100.0) == pytest.approx(0.8)
    # Normalisation: shifting every return and the random return by the same amount changes nothing.
    assert fas_score([1, 2, 4], [90.0, 70.0, 30.0], -10.0, 90.0) == pytest.approx(0.8)
    # As good as the reference everywhere -> 1; as bad as random everywhere -> 0.
    assert fas_score([1, 2, 8, 16], [5.0] * 4, 1.0, 5.0) == pytest.approx(1.0)
    assert fas_score([1, 2, 8, 16], [1.0] * 4, 1.0, 5.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="two distinct"):
        fas_score([1], [1.0], 0.0, 1.0)


def test_fas_cli_on_a_saved_agent(cli, tmp_path):
    result = cli("train", "agent=sb3_sac", "env=inverted_pendulum", "env.action_repeat=2", "train=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    result = cli("fas", f"run={tmp_path / 'run'}", "intervals=1,2,4", "episodes=2")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "run" / "fas.json").read_text())
    assert data["intervals"] == [1, 2, 4] and data["mode"] == "repeat" and len(data["per_interval"]) == 3
    assert data["action_repeat"] == 2  # the run's own repeat: interval 4 is 8 env steps per decision
    assert data["fas"] == pytest.approx(fas_score([1, 2, 4], [p["mean_return"] for p in data["per_interval"]],
                                                  data["random_return"], data["reference_return"]))
    assert_png_shows(tmp_path / "run" / "fas.png", "C0")
    bad = cli("fas", f"run={tmp_path / 'run'}", "intervals=1,x")
    assert bad.returncode == 2 and "intervals" in bad.stderr


@pytest.mark.slow
def test_bench_fas_quick_gives_every_arm_the_same_warmup_and_replaces_stale_results(cli, tmp_path):
    args = ["bench", "fas", "--tasks", "InvertedPendulum-v5", "--agents", "srl,sb3_sac,sb3_sac_repeat2", "--seeds", "0",
            "--steps", "600", "--warmup", "300", "--intervals", "1,2,4", "--episodes", "1",
            "--override", "train.progress=false", "--no-ray"]   # the job runner's Ray path: tests/test_jobs.py
    result = cli(*args, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "benchmarks" / "results" / "fas"
    runs = {arm: json.loads((folder / f"InvertedPendulum-v5__{arm}__s0.json").read_text())
            for arm in ("srl", "sb3_sac", "sb3_sac_repeat2")}
    assert {(r["steps"], r["warmup"]) for r in runs.values()} == {(600, 300)}
    assert runs["srl"]["config"]["learning_starts"] == runs["sb3_sac"]["config"]["learning_starts"] == 300
    # the frame-skip arm: 300 decisions of 2 env steps, warm-up 150 of them; it decides every 2 steps at best
    skip = runs["sb3_sac_repeat2"]
    assert skip["config"]["learning_starts"] == 150 and skip["action_repeat"] == 2 and skip["intervals"] == [2, 4]
    assert runs["srl"]["mode"] == "sequence" and [p["interval"] for p in runs["srl"]["per_interval"]] == [1, 2, 4]
    # one torch thread per run unless overridden: two benchmark processes share two cores
    config = yaml.safe_load((tmp_path / "runs" / "bench" / "fas" / "InvertedPendulum-v5__srl__s0__600__w300" / "config.yaml").read_text())
    assert config["threads"] == 1
    summary = (folder / "summary.md").read_text()
    assert "| InvertedPendulum-v5 | srl (sequence) | 1 | 600 | 300 |" in summary
    assert_png_shows(folder / "InvertedPendulum-v5.png", "C0", "C1")
    # a result made under another warm-up is not kept beside the new ones: it is run again and replaced
    stale = json.loads((folder / "InvertedPendulum-v5__sb3_sac__s0.json").read_text())
    stale["warmup"] = 10_000
    (folder / "InvertedPendulum-v5__sb3_sac__s0.json").write_text(json.dumps(stale))
    again = cli(*args, timeout=600)
    assert again.returncode == 0 and "bench fas: 3 job(s), 2 done already, 1 to run" in again.stdout, again.stdout[-2000:]
    assert "[3/3] InvertedPendulum-v5 sb3_sac seed 0: done" in again.stdout
    assert json.loads((folder / "InvertedPendulum-v5__sb3_sac__s0.json").read_text())["warmup"] == 300


def test_bench_fas_arms_and_bad_options_are_checked_before_any_run(tmp_path):
    from robo_rl.bench.fas import arm_spec

    assert arm_spec("srl_j8") == ("srl", ["agent.sequence_length=8"], 1)
    assert arm_spec("srl_split_j16") == ("srl_split", ["agent.sequence_length=16"], 1)
    assert arm_spec("srl_recall4_j16") == ("srl_recall4", ["agent.sequence_length=16"], 1)
    assert arm_spec("sb3_sac_repeat4") == ("sb3_sac", ["env.action_repeat=4"], 4)
    assert arm_spec("sb3_sac") == ("sb3_sac", [], 1)
    bad = run_cli_batch([["bench", "fas", "--agents", "srl,sacc"], ["bench", "fas", "--agents", "sb3_sac_j8"],
                         ["bench", "fas", "--warmup", "30000"], ["bench", "fas", "--intervals", "2,4"],
                         ["bench", "fas", "--tasks", "Reacher-v5,Hoper-v5"], ["bench", "fas", "--steps", "0"]], cwd=tmp_path)
    for result, word in zip(bad, ("sacc", "sb3_sac_j8", "30000", "2,4", "Hoper-v5", "--steps")):
        assert result.returncode == 2 and word in result.stderr and len(result.stderr.strip().splitlines()) == 1, result
    assert not (tmp_path / "runs").exists()


def test_own_normalised_fas_is_undefined_for_a_run_that_did_not_learn():
    from robo_rl.bench.fas import own_fas

    def run(*returns):
        return {"per_interval": [{"interval": t, "mean_return": r} for t, r in zip((1, 2, 4), returns)]}

    # SAC's reference 1000, random 6: a run at 5 (below random) would otherwise score (2-6)/(5-6) = 4 at slow rates
    assert own_fas(run(5.0, 2.0, 2.0), random_return=6.0, sac_reference=1000.0) is None
    assert own_fas(run(40.0, 2.0, 2.0), 6.0, 1000.0) is None   # under 5% of SAC's gap above random
    assert own_fas(run(500.0, 500.0, 6.0), 6.0, 1000.0) == pytest.approx(fas_score([1, 2, 4], [500, 500, 6], 6, 500))


def test_fas_report_compares_arms_only_under_one_budget_and_warmup(tmp_path, monkeypatch):
    """A task's runs at another budget form their own block with their own SAC reference, and a run at
    one budget does not hide another task's rows (each task keeps its own budget)."""
    from robo_rl.bench.fas import TASK_STEPS, report

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "benchmarks" / "results" / "fas"
    folder.mkdir(parents=True)

    def result(task, arm, steps, returns, warmup=5000):
        run = {"task": task, "agent": arm, "seed": 0, "steps": steps, "warmup": warmup, "action_repeat": 1,
               "intervals": [1, 2], "mode": "sequence" if arm == "srl" else "repeat", "random_return": 6.0,
               "per_interval": [{"interval": t, "mean_return": r} for t, r in zip((1, 2), returns)]}
        (folder / f"{task}__{arm}__{steps}__s0.json").write_text(json.dumps(run))

    result("InvertedPendulum-v5", "sb3_sac", 20_000, (1000.0, 6.0))
    result("InvertedPendulum-v5", "srl", 20_000, (1000.0, 1000.0))
    result("InvertedPendulum-v5", "sb3_sac", 50_000, (500.0, 6.0))
    result("InvertedPendulum-v5", "srl", 50_000, (250.0, 250.0))
    result("Hopper-v5", "sb3_sac", TASK_STEPS["Hopper-v5"], (3000.0, 1000.0))
    old = {"task": "Reacher-v5", "agent": "sb3_sac", "seed": 0, "steps": 20_000, "per_interval": []}   # no warm-up recorded
    (folder / "Reacher-v5__sb3_sac__s0.json").write_text(json.dumps(old))
    text = report()
    # srl against SAC's 1000 at 20k: 1.00; against SAC's 500 at 50k: (250 - 6) / (500 - 6) = 0.49 at both rates
    assert "| InvertedPendulum-v5 | srl (sequence) | 1 | 20000 | 5000 | 1.00 |" in text
    assert "| InvertedPendulum-v5 | srl (sequence) | 1 | 50000 | 5000 | 0.49 |" in text
    assert f"| Hopper-v5 | sb3_sac (repeat) | 1 | {TASK_STEPS['Hopper-v5']} | 5000 |" in text
    assert "Reacher-v5" not in text.split("Return at each")[0] and "1 result file(s) made before" in text
    assert (folder / "InvertedPendulum-v5__20000.png").is_file() and (folder / "InvertedPendulum-v5__50000.png").is_file()
    assert (folder / "Hopper-v5.png").is_file()
