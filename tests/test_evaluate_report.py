
import numpy as np
import pytest
from conftest import assert_png_shows

from robo_rl.evaluate import aggregate, evaluate
from robo_rl.envs import env_config, make_env
from robo_rl.report import plot_curves
from robo_rl.runs import RandomAgent


def test_aggregate_iqm_and_bootstrap_interval():
    scores = [0.0, 10.0, 20.0, 30.0, 1000.0, -1000.0, 15.0, 25.0]
    out = aggregate(scores, reps=500)
    middle = sorted(scores)[2:6]  # IQM: mean of the middle 50%
    assert abs(out["iqm"] - np.mean(middle)) < 1e-9
    assert out["iqm_ci"][0] <= out["iqm"] <= out["iqm_ci"][1]
    assert out["mean_ci"][0] < out["mean_ci"][1]
    assert aggregate([5.0])["iqm"] == 5.0 and "iqm_ci" not in aggregate([5.0])


class ScriptedReach(RandomAgent):
    """Meta-World's scripted reach expert as an agent (its actions are already in [-1, 1])."""

    def act(self, obs, deterministic=False):
        from metaworld.policies import SawyerReachV3Policy

        return np.clip(SawyerReachV3Policy().get_action(obs), -1.0, 1.0).astype(np.float32)


def test_evaluate_reports_success_for_metaworld_and_is_seeded():
    env = make_env(env_config("metaworld", "reach-v3", max_episode_steps=100), seed=0)
    agent = RandomAgent(env.observation_space, env.action_space, {}, 0)
    a = evaluate(agent, env, episodes=2, seed=5)
    assert a["lengths"] == [100, 100] and a["success_rate"] == 0.0  # flailing never reaches the goal
    agent = RandomAgent(env.observation_space, env.action_space, {}, 0)
    b = evaluate(agent, env, episodes=2, seed=5)
    assert a["returns"] == b["returns"]
    expert = evaluate(ScriptedReach(env.observation_space, env.action_space, {}, 0), env, episodes=2, seed=5)
    assert expert["success_rate"] == 1.0 and min(expert["returns"]) > max(a["returns"])


def test_learning_curve_png(tmp_path):
    path = plot_curves({"a": [[(0, 1.0), (10, 2.0)], [(0, 0.5), (10, 3.0)]], "b": [[(0, 0.0), (10, 1.0)]]},
                       tmp_path / "curve.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_png_shows(path, "C0", "C1")  # both series are drawn


def test_a_benchmark_page_gets_its_tables_plots_hardware_and_command_between_its_markers(tmp_path):
    import json

    from robo_rl.bench import update_page

    folder = tmp_path / "results" / "t"
    folder.mkdir(parents=True)
    (folder / "a__s0.json").write_text(json.dumps({"seed": 0, "machine": "2 vCPUs, EPYC, no GPU, torch 2.13.0"}))
    (folder / "a__s1.json").write_text(json.dumps({"seed": 1, "machine": "2 vCPUs, EPYC, no GPU, torch 2.13.0"}))
    (folder / "old__s0.json").write_text(json.dumps({"seed": 0}))
    for plot in ("curve.png", "extra.png", "prose.png"):
        (folder / plot).write_bytes(b"\x89PNG")
    page = tmp_path / "t.md"
    page.write_text("# T\nprose ![p](results/t/prose.png)\n<!-- t:start -->\nold\n<!-- t:end -->\noutro\n")
    assert update_page("t", "| new |\n\n![c](benchmarks/results/t/curve.png)", folder, page)
    text = page.read_text()
    head, block = text.split("<!-- t:start -->\n")
    block, tail = block.split("<!-- t:end -->")
    assert head == "# T\nprose ![p](results/t/prose.png)\n" and tail == "\noutro\n" and "old" not in block
    assert "`robo-rl bench t --report`" in block and "| new |" in block
    assert "Hardware: 2 vCPUs, EPYC, no GPU, torch 2.13.0 (2 results); 1 result from before result files recorded" in block
    # the table's plot linked as the site serves it; the unlinked plot added; the prose's plot not twice
    assert "](results/t/curve.png)" in block and "](benchmarks/results" not in block
    assert "![extra](results/t/extra.png)" in block and "prose.png" not in block
    # regenerating gives the same page: plots linked in the old block are linked again
    assert update_page("t", "| new |\n\n![c](benchmarks/results/t/curve.png)", folder, page)
    assert page.read_text() == text
    assert not update_page("missing", "x", folder, page)


def test_held_success_needs_more_than_three_success_steps():
    """The ADS paper's Meta-World criterion: success must hold on > 3 steps; any-step success is kept beside it."""
    import gymnasium as gym

    class SuccessOnSomeSteps(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, seed=None, options=None):
            self.t, self.success_steps = 0, 3 + seed % 2  # even reset seeds: 3 success steps, odd: 4
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.t += 1
            return np.zeros(1, np.float32), 0.0, False, self.t == 10, {"success": 10 - self.t < self.success_steps}

    env = SuccessOnSomeSteps()
    result = evaluate(RandomAgent(env.observation_space, env.action_space, {}, 0), env, episodes=4, seed=0)
    assert result["success_rate"] == 1.0 and result["held_success_rate"] == 0.5


def test_progress_off_a_terminal_prints_plain_lines_every_few_thousand_steps():
    import io

    from robo_rl.logger import ProgressBar

    out = io.StringIO()  # not a terminal, like a CI log or `make demo > log`
    bar = ProgressBar(10_000, enabled=True, plain_every=2000, stream=out)
    for step in range(0, 10_001, 100):
        bar.update(step, eval_return=12.5 if step == 4000 else None)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"train: step {s}/10000 (" + f"{s // 100}%)" for s in (2000, 4000, 6000, 8000, 10000, 10000)]
    assert "steps/s" in lines[0] and "ETA" in lines[0] and lines[0].endswith("last eval -")
    assert lines[1].endswith("last eval 12.5")
    silent = io.StringIO()
    ProgressBar(100, enabled=False, stream=silent).update(100)
    assert silent.getvalue() == ""


def test_benchmark_result_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A crash between writing and renaming leaves no result file a rerun would take as finished."""
    import json
    from pathlib import Path

    from robo_rl.jobs import Job, machine, run_jobs

    path = tmp_path / "T__a__s0.json"

    def crash(self, target):
        raise KeyboardInterrupt("killed before the rename")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            run_jobs([Job("T a seed 0", lambda: {"score": 1.0}, {}, path)], inline=True)
    assert not path.exists()
    run_jobs([Job("T a seed 0", lambda: {"score": 2.0}, {}, path)], inline=True)
    assert json.loads(path.read_text()) == {"score": 2.0, "machine": machine()}   # the machine it ran on added


def test_bench_learn_puts_each_throughput_sittings_cost_beside_each_configurations_return(tmp_path, monkeypatch):
    """Each learning configuration (CrossQ by its critic width; SB3 SAC by its own `learn` row) is matched to its
    row of each kept sitting, one table per sitting file naming its machine and the command that timed it; the
    wall-clock ratio is sac's env steps/s over the row's; configurations not timed, or timed in another sitting
    (days before sac's row), are left out."""
    import json

    from robo_rl.bench.learn import sitting_lines

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "benchmarks" / "results"
    folder.mkdir(parents=True)
    row = lambda sps, flops, when: {"steps_per_second": sps, "flops_per_update": flops, "updates_per_step": 1, "measured": when}
    entries = {"train/sac/HalfCheetah-v5/robo_rl_loop": row(150.0, 0.58e9, "2026-12-05 15:00:00"),
               "train/crossq_w256/HalfCheetah-v5/robo_rl_loop": row(100.0, 0.48e9, "2026-12-05 15:01:00"),
               "train/crossq_w512/HalfCheetah-v5/robo_rl_loop": row(50.0, 1.72e9, "2026-12-05 15:03:00"),
               "train/sb3_sac/HalfCheetah-v5/sb3_learn": {"steps_per_second": 120.0, "measured": "2026-12-05 14:59:00"}}
    xeon = {"cpu": "Intel Xeon", "cores": 2, "torch_threads": 2}
    (folder / "throughput_learn.json").write_text(json.dumps({"machine": xeon, "entries": entries}))
    other = {"train/sac/HalfCheetah-v5/robo_rl_loop": row(70.0, 0.58e9, "2026-12-06 19:48:00"),
             "train/crossq_w256/HalfCheetah-v5/robo_rl_loop": row(35.0, 0.48e9, "2026-12-06 19:49:00"),
             "train/sb3_sac/HalfCheetah-v5/sb3_learn": {"steps_per_second": 56.0, "measured": "2026-12-01 10:00:00"}}
    epyc = {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 2}
    (folder / "throughput_learn_epyc.json").write_text(json.dumps({"machine": epyc, "entries": other}))
    run = lambda agent, width, final, seed: {"agent": agent, "tag": "", "seed": seed, "steps": 100_000,
                                             "config": {"critic_width": width}, "curve": [{"step": 100_000, "mean_return": final}]}
    groups = {"sac@100k": [run("sac", None, 5000, s) for s in range(3)],
              "crossq (w256)@100k": [run("crossq", 256, 8000 + s, s) for s in range(3)],
              "crossq@100k": [run("crossq", 512, 7000, 0)],
              "sb3_sac@100k": [run("sb3_sac", None, 4900, 0)]}
    lines = sitting_lines({"HalfCheetah-v5": groups})
    tables = "\n".join(lines).split("\nCost per env step on HalfCheetah-v5, ")[1:]
    assert [t.split(" (")[0] for t in tables] == ["2 vCPUs Intel Xeon, 2 torch threads", "2 vCPUs AMD EPYC, 2 torch threads"]
    assert "--out benchmarks/results/throughput_learn_epyc.json" in tables[1]
    # each table's command names the rows its own file holds: the EPYC sitting timed no width 512, no sb3_crossq
    assert "--only sb3_sac/HalfCheetah-v5/sb3_learn,train/sac/,crossq_w256,crossq_w512 --force" in tables[0]
    assert "--only sb3_sac/HalfCheetah-v5/sb3_learn,train/sac/,crossq_w256 --force" in tables[1]
    rows = [{line.split(" | ")[0].strip("| "): line for line in t.splitlines() if line.startswith("| ") and "GFLOP" not in line}
            for t in tables]
    assert set(rows[0]) == {"sac", "crossq (w256)", "crossq", "sb3_sac"}
    assert rows[0]["crossq (w256)"] == "| crossq (w256) | 0.48 | 100 | 1.50x | 8001 | 3 | 2026-12-05 15:01:00 |"
    assert rows[0]["crossq"] == "| crossq | 1.72 | 50 | 3.00x | 7000 | 1 | 2026-12-05 15:03:00 |"
    assert rows[0]["sac"].startswith("| sac | 0.58 | 150 | 1.00x | 5000 | 3 |")
    assert rows[0]["sb3_sac"].startswith("| sb3_sac | - | 120 | 1.25x | 4900 | 1 |")   # SB3's learn: no FLOP count
    assert set(rows[1]) == {"sac", "crossq (w256)"}   # sb3_sac's row is from another sitting; w512 not timed there
    assert rows[1]["crossq (w256)"].startswith("| crossq (w256) | 0.48 | 35 | 2.00x |")
