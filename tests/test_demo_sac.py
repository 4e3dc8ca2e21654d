"""The demo-seeded learner (agents/demo_sac.py) and the SAC options it rests on (E heads, LayerNorm, UTD)."""
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_png_shows, built_once, run_process, spawn
from test_resume import assert_same_state, sigkill_mid_run

from robo_rl.agents.demo_sac import DemoSAC
from robo_rl.agents.nets import BatchedMLP
from robo_rl.agents.sac import SAC
from robo_rl.checkpoint import load_checkpoint
from robo_rl.envs.factory import env_config, make_env
from robo_rl.evaluate import evaluate
from robo_rl.replay import ReplayBuffer
from robo_rl.rewards.demos import DemoError, collect_demos, demo_transitions, load_demos, save_demos
from robo_rl.rewards.learned import SparseSuccess

TASK = "drawer-open-v3"
OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = {"net_arch": [16, 16], "batch_size": 8, "learning_rate": 1e-2}


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    """Five scripted-expert demos of drawer-open-v3, states and actions only (no frames: a few seconds)."""
    return built_once(tmp_path_factory, f"{TASK}_state_demos.h5", lambda path: save_demos(
        path, collect_demos(TASK, 5, cameras=(), seed=0, progress=False, max_steps=200), TASK))


def sparse_env(seed=0):
    return SparseSuccess(make_env(env_config("metaworld", TASK, max_episode_steps=200), seed=seed))


def filled_replay(n=64, seed=0, reward=None):
    replay = ReplayBuffer((5,), 2, n, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        replay.add(rng.normal(size=5), rng.uniform(-1, 1, 2), rng.normal() if reward is None else reward,
                   rng.normal(size=5), rng.random() < 0.2)
    return replay


def transitions_of(replay):
    return {name: getattr(replay, name)[: replay.size].copy() for name in ("obs", "action", "reward", "next_obs", "terminated")}


# --- the SAC options ------------------------------------------------------------------------------
def test_layer_norm_heads_equal_separate_torch_layer_norm_mlps():
    torch.manual_seed(0)
    critics = BatchedMLP(4, 7, [32, 16], 1, layer_norm=True)
    with torch.no_grad():   # gains and shifts away from their 1/0 start, so that they are really used
        for g, s in zip(critics.norm_gains, critics.norm_shifts):
            g.uniform_(0.5, 1.5)
            s.uniform_(-0.5, 0.5)
    x = torch.randn(11, 7)
    out = critics(x)
    for k in range(4):
        head = critics.head(k)
        assert any(isinstance(m, torch.nn.LayerNorm) for m in head)
        torch.testing.assert_close(out[k], head(x), rtol=1e-5, atol=1e-5)


def test_the_target_is_the_min_over_the_chosen_heads(monkeypatch):
    agent = SAC(OBS, ACT, {**SMALL, "critics": 5, "target_critics": 2, "layer_norm": True}, seed=0)
    obs, action = torch.randn(9, 5), torch.rand(9, 2) * 2 - 1
    heads = [agent.critic_target.head(k) for k in range(5)]
    x = torch.cat([obs, action], dim=-1)
    per_head = torch.stack([h(x).squeeze(-1) for h in heads])
    monkeypatch.setattr(agent, "target_heads", lambda: torch.tensor([3, 1]))
    torch.testing.assert_close(agent.q_min(obs, action, target=True), torch.minimum(per_head[3], per_head[1]))
    monkeypatch.undo()
    # drawn anew each time: two distinct heads, and over many draws every head is chosen
    draws = [agent.target_heads().tolist() for _ in range(200)]
    assert all(len(set(d)) == 2 for d in draws) and set(sum(draws, [])) == set(range(5))
    # the actor's view stays the min over all heads
    online = torch.stack([agent.critic.head(k)(x).squeeze(-1) for k in range(5)]).min(0).values
    torch.testing.assert_close(agent.q_min(obs, action), online)


def test_target_bounds_clip_the_critics_target_into_the_returns_range():
    """With target_bounds the target is the unclipped one clipped (values in range untouched); without, unclipped."""
    obs, next_obs, terminated = torch.randn(64, 5), torch.randn(64, 5), (torch.rand(64) < 0.3).float()
    reward = torch.linspace(-2.0, 3.0, 64)
    free = SAC(OBS, ACT, SMALL, seed=0)
    bounded = SAC(OBS, ACT, {**SMALL, "target_bounds": [0.0, 1.0]}, seed=0)
    alpha = free.log_alpha.exp().detach()
    torch.manual_seed(1)
    y_free = free.critic_target_value(reward, next_obs, terminated, alpha)
    torch.manual_seed(1)
    y_bounded = bounded.critic_target_value(reward, next_obs, terminated, alpha)
    torch.testing.assert_close(y_bounded, y_free.clamp(0.0, 1.0))
    assert (y_free < 0).any() and (y_free > 1).any() and ((y_free > 0) & (y_free < 1)).any()
    for bad in ([1.0, 0.0], [0.0], "high"):
        with pytest.raises(ValueError, match="agent.target_bounds"):
            SAC(OBS, ACT, {**SMALL, "target_bounds": bad})


def test_utd_makes_that_many_critic_updates_and_one_actor_update():
    agent = SAC(OBS, ACT, {**SMALL, "utd": 3}, seed=0)
    replay = filled_replay()
    critic_before, actor_before = agent.critic_opt.state_dict(), agent.actor_opt.state_dict()
    agent.train_step(replay)
    assert agent.critic_opt.state_dict()["state"][0]["step"].item() == 3
    assert agent.actor_opt.state_dict()["state"][0]["step"].item() == 1
    assert critic_before != agent.critic_opt.state_dict() and actor_before != agent.actor_opt.state_dict()


def test_the_demo_seeded_learner_with_its_extras_off_is_sac_update_for_update():
    """E = 2, UTD = 1, demo ratio 0, no BC, no LayerNorm: every parameter as SAC's after the same updates."""
    off = {**SMALL, "critics": 2, "utd": 1, "layer_norm": False, "backup_entropy": True, "demo_ratio": 0.0,
           "bc_weight": 0.0, "bc_updates": 0, "critic_warmup": 0, "demos": "unused.h5"}
    sac, demo = SAC(OBS, ACT, SMALL, seed=4), DemoSAC(OBS, ACT, off, seed=4)
    demo.set_demonstrations(transitions_of(filled_replay(16, seed=9, reward=1.0)))
    replay_a, replay_b = filled_replay(seed=1), filled_replay(seed=1)
    torch.manual_seed(0)
    for _ in range(5):
        sac.train_step(replay_a)
    torch.manual_seed(0)
    for _ in range(5):
        demo.train_step(replay_b)
    for name, net in sac.networks().items():
        for a, b in zip(net.parameters(), demo.networks()[name].parameters()):
            assert torch.equal(a, b), name
    assert torch.equal(sac.log_alpha, demo.log_alpha)


# --- demos as data --------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio,final", [(0.5, None), (0.25, None), (0.5, 0.25)])
def test_the_demo_store_is_sampled_at_the_configured_ratio(ratio, final):
    """Online rows carry reward 0, demo rows reward 1: the share of 1s over many batches is the ratio
    (annealed linearly over demo_ratio_steps when demo_ratio_final is set)."""
    config = {**SMALL, "batch_size": 64, "demos": "x.h5", "demo_ratio": ratio, "demo_ratio_final": final,
              "demo_ratio_steps": 100 if final is not None else 0}
    agent = DemoSAC(OBS, ACT, config, seed=0)
    agent.set_demonstrations(transitions_of(filled_replay(32, seed=2, reward=1.0)))
    replay = filled_replay(256, seed=3, reward=0.0)
    shares = []
    for step in range(0, 201, 50):
        agent.updates = step
        shares.append(np.mean([agent.sample(replay)["reward"].numpy().mean() for _ in range(200)]))
    expected = [ratio if final is None else ratio + min(s / 100, 1) * (final - ratio) for s in range(0, 201, 50)]
    np.testing.assert_allclose(shares, expected, atol=1 / 64)


def test_demo_transitions_are_rewarded_as_the_env_rewards_its_own_steps(demo_file):
    """Under the sparse success reward (ending at success) a demo pays 1 on its first successful step, where
    it terminates, and 0 before; its actions and states line up with the file's."""
    demos = load_demos(demo_file, need_frames=False, need_states=True)
    data = demo_transitions(sparse_env(), demo_file)
    firsts = [int(np.flatnonzero(d.success)[0]) + 1 for d in demos]
    assert len(data["obs"]) == sum(firsts)
    ends = np.cumsum(firsts) - 1
    assert np.all(data["reward"][ends] == 1) and data["reward"].sum() == len(demos)
    assert np.all(data["terminated"][ends] == 1) and data["terminated"].sum() == len(demos)
    np.testing.assert_allclose(data["action"][: firsts[0]], demos[0].actions[: firsts[0]], atol=1e-6)
    np.testing.assert_allclose(data["next_obs"][: firsts[0]], demos[0].states[1 : firsts[0] + 1])
    # the env's own reward when no wrapper relabels: the recorded rewards, never terminal
    raw = demo_transitions(make_env(env_config("metaworld", TASK, max_episode_steps=200)), demo_file, limit=1)
    np.testing.assert_allclose(raw["reward"], demos[0].rewards, rtol=1e-6)
    assert raw["terminated"].sum() == 0


def test_a_demo_file_without_actions_is_refused_in_one_line(tmp_path, demo_file, cli):
    demo = load_demos(demo_file, need_frames=False, need_states=True, limit=1)[0]
    demo.actions = None
    bare = save_demos(tmp_path / "bare.h5", [demo], TASK)
    with pytest.raises(DemoError, match="no 'actions'"):
        demo_transitions(sparse_env(), bare)
    result = cli("train", "agent=demo_sac", f"agent.demos={bare}", "env=metaworld", f"env.id={TASK}", "reward=sparse",
                 "train=smoke", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert str(bare) in line and "no 'actions'" in line and "observation-only" in line


# --- BC and learning --------------------------------------------------------------------------------
def test_bc_pretraining_alone_solves_what_a_random_policy_cannot(demo_file):
    env, eval_env = sparse_env(0), make_env(env_config("metaworld", TASK, max_episode_steps=200), seed=100)
    agent = DemoSAC(env.observation_space, env.action_space, {"demos": str(demo_file), "bc_updates": 1500}, seed=0)
    agent.prepare(env)
    bc = evaluate(agent, eval_env, 6, seed=500)["success_rate"]
    from robo_rl.runs import RandomAgent

    random = evaluate(RandomAgent(env.observation_space, env.action_space, {}, 0), eval_env, 6, seed=500)["success_rate"]
    assert bc >= 0.66 and random == 0.0, (bc, random)
    # the frozen BC copy (IBRL's proposer, the warm-up policy) is the pre-trained actor
    for a, b in zip(agent.actor.parameters(), agent.bc_actor.parameters()):
        assert torch.equal(a, b)


ARGS = ["train", "agent=demo_sac", "env=metaworld", f"env.id={TASK}", "env.max_episode_steps=100", "reward=sparse",
        "train=smoke", "train.steps=500", "train.checkpoint_every=120", "train.eval_every=250", "train.eval_episodes=2",
        "agent.learning_starts=150", "agent.critic_warmup=50", "agent.bc_updates=100", "agent.net_arch=[32,32]",
        "agent.batch_size=32", "agent.utd=2", "threads=1", "seed=2"]


def test_sigkill_then_resume_keeps_the_demo_store_bc_state_and_counters(tmp_path, demo_file):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*ARGS, f"agent.demos={demo_file}", "agent.demo_episodes=2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    cli = [sys.executable, "-m", "robo_rl.cli"]
    done = run_process([*cli, *args, f"hydra.run.dir={straight}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    proc = spawn([*cli, *args, f"hydra.run.dir={killed}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoint.safetensors"
    sigkill_mid_run(proc, checkpoint, 240, 500)
    resumed = run_process([*cli, "train", f"resume={killed}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, _ = load_checkpoint(straight / "checkpoint.safetensors")
    b, _ = load_checkpoint(checkpoint)
    assert_same_state(a["agent"], b["agent"])
    assert_same_state(a["replay"], b["replay"])
    store = a["agent"]["demo_store"]
    assert int(store["size"]) == len(demo_transitions(sparse_env(), demo_file, limit=2)["obs"])
    assert a["agent"]["updates"] == 500 - 150 + 1   # one train_step per env step from learning_starts on
    # save/load of the agent alone keeps the store and the frozen BC policy
    agent = DemoSAC.load(straight / "checkpoint.safetensors")
    assert agent.demo_store.size == int(store["size"]) and agent.updates == a["agent"]["updates"]
    assert_same_state(agent.bc_actor.state_dict(), a["agent"]["bc_actor"])


def test_successful_episodes_join_the_demo_store_row_for_row_and_failures_do_not():
    """promote_successes: the episode's rows, read back from the replay ring (wrapped around here), are
    appended to the demo store; a failed episode, or the option off, leaves the store as it was."""
    agent = DemoSAC(OBS, ACT, {**SMALL, "demos": "x.h5", "promote_successes": True}, seed=0)
    agent.set_demonstrations(transitions_of(filled_replay(8, seed=2, reward=1.0)))
    replay = filled_replay(20, seed=3)
    for _ in range(7):   # 27 rows added to a ring of 20: the last episode (7 rows) wraps around its end
        replay.add(np.ones(5), np.zeros(2), 0.5, np.ones(5), False)
    agent.end_episode(replay, 7, success=False)
    assert agent.demo_store.size == 8 and agent.promoted == 0
    agent.end_episode(replay, 7, success=True)
    assert agent.demo_store.size == 15 and agent.promoted == 1 and agent.demo_store.capacity >= 15
    np.testing.assert_array_equal(agent.demo_store.obs[8:15], np.ones((7, 5)))
    np.testing.assert_array_equal(agent.demo_store.reward[8:15, 0], np.full(7, 0.5))
    np.testing.assert_array_equal(agent.demo_store.obs[:8], filled_replay(8, seed=2, reward=1.0).obs)   # the demos stay
    off = DemoSAC(OBS, ACT, {**SMALL, "demos": "x.h5"}, seed=0)
    off.set_demonstrations(transitions_of(filled_replay(8, seed=2, reward=1.0)))
    off.end_episode(replay, 7, success=True)
    assert off.demo_store.size == 8 and off.promoted == 0


def test_training_promotes_exactly_the_successful_episodes(tmp_path, demo_file):
    """The loop tells the agent each episode's end: after a BC-played warm-up, the demo store holds the demos
    plus every successful episode of episodes.csv, and the count is in the checkpoint."""
    import csv

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*ARGS, f"agent.demos={demo_file}", "agent.demo_episodes=5", "agent.promote_successes=true",
            "train.steps=700", "agent.learning_starts=700", "agent.bc_updates=1500", "agent.net_arch=[256,256]",
            "agent.batch_size=256", f"hydra.run.dir={tmp_path / 'run'}"]
    done = run_process([sys.executable, "-m", "robo_rl.cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    episodes = list(csv.DictReader((tmp_path / "run" / "episodes.csv").open()))
    won = [int(e["length"]) for e in episodes if e["success"] == "1"]
    assert len(won) >= 2   # the BC policy from 5 demos succeeds in some of its 200-step episodes
    state, _ = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    demos = len(demo_transitions(sparse_env(), demo_file, limit=5)["obs"])
    assert int(state["agent"]["promoted"]) == len(won)
    assert int(state["agent"]["demo_store"]["size"]) == demos + sum(won)


# --- the benchmark's report ---------------------------------------------------------------------------
def test_bench_demos_report_reads_budgets_and_thresholds_from_the_result_files(tmp_path, monkeypatch):
    """Success at 100/150/300 rollouts, rollouts to 80%/95% per seed, and the IQM with its interval at 5 seeds
    at the last evaluation all seeds reached, all from the result files (a curve every 25 rollouts); BC is a flat line."""
    import json

    from robo_rl.bench import demos as bench

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "benchmarks" / "results" / "demos"
    folder.mkdir(parents=True)
    to80, to95 = [75, 50, 50, 25, 200], [100, 75, 50, 50, None]   # per seed; seed 4 never reaches 95%
    for seed in range(5):
        levels = [0.5 if r < to80[seed] else 0.85 if to95[seed] is None or r < to95[seed] else 1.0 for r in range(25, 325, 25)]
        curve = [{"rollouts": r, "step": r * 200, "success_rate": s, "wall_s": r * 10.0} for r, s in zip(range(25, 325, 25), levels)]
        (folder / f"drawer-open-v3__demo_sparse__s{seed}.json").write_text(json.dumps(
            {"task": "drawer-open-v3", "arm": "demo_sparse", "seed": seed, "steps": 60000, "curve": curve, "env_steps_per_s": 20.0}))
        (folder / f"drawer-open-v3__bc__s{seed}.json").write_text(json.dumps(
            {"task": "drawer-open-v3", "arm": "bc", "seed": seed, "steps": 0, "success_rate": 0.3}))
        short = [{**p, "success_rate": 0.2 + 0.2 * seed} for p in curve[: 4 + seed]]   # runs stopped at 100-200 rollouts
        (folder / f"drawer-open-v3__demo_hand_clip__s{seed}.json").write_text(json.dumps(
            {"task": "drawer-open-v3", "arm": "demo_hand_clip", "seed": seed, "steps": 20000, "curve": short}))
    table = bench.report()
    row = next(line for line in table.splitlines() if "| demo_sparse |" in line)
    cells = [c.strip() for c in row.split("|")]
    assert cells[5] == "1.00, 1.00, 1.00, 1.00, 0.50"     # @100
    assert cells[6] == "1.00, 1.00, 1.00, 1.00, 0.50" and cells[7] == "1.00, 1.00, 1.00, 1.00, 0.85" and cells[8] == ""
    assert cells[10] == "75, 50, 50, 25, 200" and cells[11] == "100, 75, 50, 50, -"   # the first point at or above 80% / 95%
    assert cells[9].startswith("1.00 [") and cells[9].endswith("] @ 300")   # IQM at 300: the middle three seeds, all at 1.00
    assert cells[12] == "20" and cells[13] == "1.00 (300), 1.00 (300), 1.00 (300), 1.00 (300), 0.85 (300)"
    # runs of unequal length: the IQM at the last evaluation all reached (100), of 0.2, 0.4, ..., 1.0
    short = [c.strip() for c in next(line for line in table.splitlines() if "| demo_hand_clip |" in line).split("|")]
    assert short[9].startswith("0.60 [") and short[9].endswith("] @ 100") and short[6] == "-, -, 0.60, 0.80, 1.00"
    bc = [c.strip() for c in next(line for line in table.splitlines() if "| bc |" in line).split("|")]
    assert bc[6] == "0.30, 0.30, 0.30, 0.30, 0.30" and bc[10] == "-, -, -, -, -" and bc[9].endswith("] @ 300")
    assert (folder / "success.png").is_file() and (folder / "summary.md").read_text().strip() == table.strip()


def test_bench_demos_coverage_bins_bc_success_by_the_distance_from_the_demo(tmp_path, monkeypatch):
    """--coverage's table: success of BC by the distance of the object's start from the nearest demo's (x, y),
    and its scatter plot."""
    import json

    from robo_rl.bench import demos as bench

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "benchmarks" / "results" / "demos"
    folder.mkdir(parents=True)
    episodes = ([{"object": [0.02, 0.7, 0.09], "success": True}] * 3 + [{"object": [0.07, 0.7, 0.09], "success": False}]
                + [{"object": [0.06, 0.7, 0.09], "success": True}] + [{"object": [0.2, 0.5, 0.09], "success": False}] * 2)
    coverage = {"task": "drawer-open-v3", "seed": 0, "demos": 1, "episodes": episodes, "demo_objects": [[0.0, 0.7, 0.09]]}
    (folder / "coverage__drawer-open-v3.json").write_text(json.dumps(coverage))
    bench.plot_coverage(coverage, folder)
    assert_png_shows(folder / "coverage__drawer-open-v3.png", "C2", "C3")
    row = next(line for line in bench.report().splitlines() if line.startswith("| drawer-open-v3 | 1 | "))
    assert row == "| drawer-open-v3 | 1 | 1.00 (3 episodes) | 0.50 (2 episodes) | 0.00 (2 episodes) |"


def test_ibrl_takes_per_sample_the_action_the_critic_values_higher():
    agent = DemoSAC(OBS, ACT, {**SMALL, "demos": "x.h5", "ibrl": True, "critics": 4, "target_critics": 2}, seed=1)
    obs = torch.randn(32, 5)
    mine, proposal = torch.rand(32, 2) * 2 - 1, torch.rand(32, 2) * 2 - 1
    chosen = agent.higher_q(obs, mine, proposal)
    prefer = agent.q_min(obs, proposal) > agent.q_min(obs, mine)
    assert 0 < int(prefer.sum()) < 32   # a real mix, so the test sees both cases
    torch.testing.assert_close(chosen, torch.where(prefer.unsqueeze(-1), proposal, mine))
    # the target's choice compares both actions on the same random subset of heads
    torch.manual_seed(3)
    heads = agent.target_heads()
    torch.manual_seed(3)
    chosen = agent.higher_q(obs, mine, proposal, target=True)
    prefer = agent.q_min(obs, proposal, target=True, heads=heads) > agent.q_min(obs, mine, target=True, heads=heads)
    torch.testing.assert_close(chosen, torch.where(prefer.unsqueeze(-1), proposal, mine))


def test_every_bench_demos_arm_composes_into_the_config_it_names(tmp_path, monkeypatch):
    """Each arm's overrides compose (an arm whose keys are not in its agent's config fails here, not an hour into
    a grid); the headline learner observes in the hand's frame with its target clipped, the ADS arms read at
    least 2 demos' observations (the progress recognizer's minimum) and no arm without demos is handed any."""
    from pathlib import Path

    from robo_rl.bench import demos as bench
    from robo_rl.config import compose

    monkeypatch.setattr(bench, "demo_file", lambda task: tmp_path / f"{task}.h5")
    for arm in bench.ARMS:
        if bench.is_bc(arm):
            continue
        model = Path("model.safetensors") if bench.learned_reward(arm) else None
        cfg = compose(bench.arm_overrides("drawer-open-v3", arm, 0, 25, model))
        assert cfg.env.id == "drawer-open-v3" and cfg.train.steps == 25 * bench.HORIZON, arm
        assert (cfg.agent.name == "demo_sac") == arm.startswith("demo_"), arm
        if arm.startswith("ads_"):
            assert cfg.reward.name == "ads" and cfg.reward.max_demos == 2 and cfg.reward.demos.endswith("drawer-open-v3.h5")
    hand_clip = compose(bench.arm_overrides("pick-place-v3", "demo_hand_clip", 1, 25, None))
    assert hand_clip.env.hand_frame is True and list(hand_clip.agent.target_bounds) == [0, 1]
    assert hand_clip.agent.demo_episodes == 5 and hand_clip.seed == 1
    process = compose(bench.arm_overrides("drawer-open-v3", "demo_hand_process", 0, 25, Path("p.safetensors")))
    assert list(process.agent.target_bounds) == [-1, 1] and process.reward.model == "p.safetensors"
    perceptual = compose(bench.arm_overrides("drawer-open-v3", "demo_hand_perceptual", 0, 25, Path("r.safetensors")))
    assert perceptual.reward.name == "perceptual" and perceptual.reward.plain is False and perceptual.reward.base == "sparse"
    assert perceptual.reward.terminate_on_success is True and list(perceptual.agent.target_bounds) == [-1, 1]
    progress = compose(bench.arm_overrides("drawer-open-v3", "demo_hand_progress", 0, 25, Path("p.safetensors")))
    assert progress.reward.plain is True and progress.env.hand_frame is True and list(progress.agent.target_bounds) == [0, 200]
    assert bench.demos_of("drawer-open-v3", "sac_sparse") == 0 and bench.demos_of("assembly-v3", "ads_critic") == 5
    assert set(bench.HEADLINE) <= set(bench.ARMS)
