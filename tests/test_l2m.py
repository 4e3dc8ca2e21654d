"""L2M: the decision transformer, the modulation pool, Minari datasets, the offline loop and the CLI."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from robo_rl.agents.l2m import L2M, tokenize
from robo_rl.datasets import DatasetError, Episode, collect_dataset, dataset_id, load_task_dataset, minari_root
from robo_rl.offline import WindowSampler

OBS = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
TINY = {"width": 32, "layers": 2, "heads": 2, "context": 3, "bins": 16, "dropout": 0.0, "batch_size": 32}


def synthetic_task(task: int, episodes: int = 6, steps: int = 30, seed: int = 0) -> list[Episode]:
    """The expert's action is the sign of state dims 0-3 (each +-2 at random): a task a random transformer
    does not solve. Dims 4-18 are the same for every task; dims 19-38 carry the task's signature (+0.3 for
    task 0, -0.3 for task 1), a small part of the state: random keys do not tell the tasks apart."""
    rng = np.random.default_rng(seed + 10 * task)
    out = []
    for _ in range(episodes):
        states = np.zeros((steps + 1, 39), np.float32)
        states[:, 0:4] = rng.choice([-2.0, 2.0], (steps + 1, 4))
        states[:, 4:19] = rng.normal(1.0, 0.1, (steps + 1, 15))
        states[:, 19:39] = 0.3 * (1 - 2 * task) + rng.normal(0.0, 0.05, (steps + 1, 20))
        actions = np.where(states[:-1, 0:4] > 0, 0.7, -0.7).astype(np.float32)
        out.append(Episode(states, actions, np.ones(steps, np.float32), np.zeros(steps, bool)))
    return out


def sampler_of(agent: L2M, episodes: list[Episode], seed: int = 0) -> WindowSampler:
    return WindowSampler([episodes], agent.context, agent.state_dim, agent.reward_scale, agent.max_timestep, seed)


def action_accuracy(agent: L2M, sampler: WindowSampler) -> float:
    torch.manual_seed(0)
    batch = sampler.sample(256)
    agent.model.eval()
    if agent.pool is not None:
        agent.pool.eval()
    with torch.no_grad():
        tokens = tokenize(batch["actions"], agent.bins)
        emb = agent.model.embed(batch["states"], batch["returns"], tokens, batch["rewards"], batch["timesteps"])
        mods, _, _ = agent._layer_mods(emb, batch["valid"])
        logits = agent.model.action_logits(emb, batch["valid"], mods)
    valid = batch["valid"][..., None].expand_as(tokens)
    return float((logits.argmax(-1) == tokens)[valid].float().mean())


def selections(agent: L2M, sampler: WindowSampler, n: int = 256) -> np.ndarray:
    """The pool entry each of n held-out windows selects (evaluation mode: no count penalty)."""
    agent.pool.eval()
    batch = sampler.sample(n)
    with torch.no_grad():
        emb = agent.model.embed(batch["states"], batch["returns"], tokenize(batch["actions"], agent.bins),
                                batch["rewards"], batch["timesteps"])
        return agent._layer_mods(emb, batch["valid"])[2].numpy()


def train(agent: L2M, sampler: WindowSampler, updates: int) -> list[int]:
    """Updates; returns the entries selected in training (for the pool methods)."""
    chosen = []
    for _ in range(updates):
        agent.update(sampler.sample(agent.batch_size))
        if agent.pool is not None:
            chosen.append(int(agent.pool.counts.argmax()))
    return chosen


@pytest.fixture(scope="module")
def base() -> L2M:
    return L2M(OBS, ACT, {**TINY, "learning_rate": 1e-3}, seed=0)


def test_fresh_pool_is_an_exact_no_op_and_the_frozen_weights_stay_bit_identical(base):
    agent = base.with_method("l2m", ["a", "b"], {"learning_rate": 3e-3})
    sampler = sampler_of(agent, synthetic_task(0))
    batch = sampler.sample(64)
    for model in (base, agent):
        model.model.eval()
    agent.pool.eval()
    with torch.no_grad():
        tokens = tokenize(batch["actions"], agent.bins)
        emb = agent.model.embed(batch["states"], batch["returns"], tokens, batch["rewards"], batch["timesteps"])
        plain = base.model.action_logits(emb, batch["valid"], None)
        modulated = agent.model.action_logits(emb, batch["valid"], agent._layer_mods(emb, batch["valid"])[0])
    assert torch.equal(plain, modulated)
    obs = synthetic_task(0)[0].observations[0]
    base.begin_episode()
    agent.begin_episode()
    assert np.array_equal(base.act(obs), agent.act(obs))

    frozen = {k: v.clone() for k, v in agent.model.state_dict().items()}
    keys_before = agent.pool.keys.detach().clone()
    train(agent, sampler, 30)
    assert all(torch.equal(frozen[k], v) for k, v in agent.model.state_dict().items())
    assert not torch.equal(keys_before, agent.pool.keys)          # the pool did train
    assert agent.pool.lora_b.abs().sum() > 0


def test_a_modulator_learns_a_task_the_frozen_model_cannot(base):
    sampler = sampler_of(base, synthetic_task(0))
    frozen_accuracy = action_accuracy(base, sampler)
    lora = base.with_method("lora", ["a"], {"learning_rate": 3e-2, "rank": 4})
    train(lora, sampler, 300)
    learned = action_accuracy(lora, sampler)
    # 16 bins, of which the expert uses 2 per dimension, each half the time: a constant guess of the
    # right two bins scores 0.5, and the action is read off the state only through the modulators
    assert frozen_accuracy < 0.2, frozen_accuracy
    assert learned > 0.75, (frozen_accuracy, learned)


def two_tasks(agent: L2M, updates: int) -> tuple[list[int], list[int], WindowSampler, WindowSampler]:
    first, second = sampler_of(agent, synthetic_task(0), 1), sampler_of(agent, synthetic_task(1), 2)
    agent.switch_task(0)
    used_first = train(agent, first, updates)
    agent.switch_task(1)
    used_second = train(agent, second, updates)
    return used_first, used_second, first, second


def test_matching_selects_the_entry_trained_for_a_task_and_is_near_chance_without_the_pull(base):
    def accuracy(pull: float) -> float:
        """Fraction of held-out windows of each task that select an entry that task trained."""
        agent = base.with_method("l2m", ["a", "b"], {"learning_rate": 2e-2, "pull_weight": pull, "pool_size": 6})
        owners = []
        for task in (0, 1):
            agent.switch_task(task)
            before = agent.pool.counts * agent.pool.counts_total
            train(agent, sampler_of(agent, synthetic_task(task), 1 + task), 250)
            selected = (agent.pool.counts * agent.pool.counts_total - before).numpy()
            owners.append(set(np.flatnonzero(selected > 0.1 * selected.sum()).tolist()))
        assert owners[0].isdisjoint(owners[1])      # the count penalty at work
        held_out = [sampler_of(agent, synthetic_task(t, seed=99), 7 + t) for t in (0, 1)]
        return float(np.mean([np.isin(selections(agent, held_out[t]), list(owners[t])).mean() for t in (0, 1)]))

    with_pull, without_pull = accuracy(0.5), accuracy(0.0)
    assert with_pull > 0.9, (with_pull, without_pull)
    assert without_pull < 0.7, (with_pull, without_pull)   # chance over two tasks is 0.5


def test_the_count_penalty_steers_a_second_task_to_an_unused_entry(base):
    agent = base.with_method("l2m", ["a", "b"], {"learning_rate": 2e-2, "pool_size": 6})
    used_first, used_second, _, _ = two_tasks(agent, 60)
    assert set(used_first[-10:]).isdisjoint(used_second[-10:]), (used_first[-10:], used_second[-10:])
    # the penalty is a training-time rule: it is refreshed at the switch and uses the counts so far
    assert agent.pool.inv_counts[used_first[-1]] < 1e-3


def test_the_oracle_uses_only_its_tasks_entries(base):
    agent = base.with_method("l2m_oracle", ["a", "b"], {"pool_size": 6})
    sampler = sampler_of(agent, synthetic_task(1), 3)
    agent.play_task(1)
    assert set(selections(agent, sampler).tolist()) <= {3, 4, 5}
    with pytest.raises(ValueError, match="pool_size"):
        base.with_method("l2m_oracle", ["a", "b", "c"], {"pool_size": 2})


def test_state_dict_round_trip_continues_identically(base):
    agent = base.with_method("l2m", ["a", "b"], {"learning_rate": 1e-2})
    sampler = sampler_of(agent, synthetic_task(0))
    train(agent, sampler, 5)
    copy = base.with_method("l2m", ["a", "b"], {"learning_rate": 1e-2})
    copy.load_state_dict(agent.state_dict())
    state = sampler.state()
    torch.manual_seed(1)
    a = float(agent.update(sampler.sample(32))["loss"])
    sampler.load(state)
    torch.manual_seed(1)
    b = float(copy.update(sampler.sample(32))["loss"])
    assert a == b


# --- datasets -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minari_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    collect_dataset("reach-v3", 2, root, progress=False)
    return root


def test_collected_datasets_load_with_minari_and_hold_successful_episodes(minari_folder):
    import minari

    with minari_root(minari_folder):
        dataset = minari.load_dataset(dataset_id("reach-v3"))
        assert dataset.total_episodes == 2 and dataset.total_steps == 400
        episodes = list(dataset.iterate_episodes())
    assert all(e.infos["success"].any() for e in episodes)
    assert all(e.observations.shape == (201, 39) and e.actions.shape == (200, 4) for e in episodes)
    assert all(np.abs(e.actions).max() <= 1.0 for e in episodes)
    loaded = load_task_dataset("reach-v3", minari_folder)
    assert np.array_equal(loaded[0].actions, episodes[0].actions)


def test_a_missing_corrupt_or_mismatched_dataset_is_refused_in_one_line(minari_folder, tmp_path, cli):
    import shutil

    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    with pytest.raises(DatasetError, match="push-expert-v0' not found"):
        load_task_dataset("push-v3", minari_folder)
    broken = tmp_path / "broken"
    shutil.copytree(minari_folder, broken)
    data = broken / dataset_id("reach-v3") / "data" / "main_data.hdf5"
    data.write_bytes(data.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="reach-expert-v0' under .* cannot be read"):
        load_task_dataset("reach-v3", broken)
    wrong = tmp_path / "wrong"
    buffer = EpisodeBuffer(id=0, observations=np.zeros((4, 10), np.float32), actions=np.zeros((3, 2), np.float32),
                           rewards=[0.0] * 3, terminations=[False] * 3, truncations=[False, False, True], infos={"success": np.zeros(3, bool)})
    with minari_root(wrong), pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(dataset_id("push-v3"), [buffer],
                                           observation_space=gym.spaces.Box(-1, 1, (10,), np.float32),
                                           action_space=gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(DatasetError, match=r"has observations \(10,\) .* task 'push-v3' has \(39,\)"):
        load_task_dataset("push-v3", wrong)
    done = cli("datasets", "show", "task=reach-v3", f"root={broken}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot be read" in done.stderr


# --- the CLI, end to end ----------------------------------------------------------------------
def test_pretrain_finetune_and_eval_end_to_end(minari_folder, tmp_path, cli):
    from robo_rl.checkpoint import load_checkpoint

    tiny = ["agent.width=32", "agent.layers=1", "agent.heads=2", "agent.merge_actions=true", "threads=1", "progress=false",
            f"datasets={minari_folder}", "episodes=2", "eval_episodes=1"]
    done = cli("pretrain", "tasks=[reach-v3]", "updates=40", "warmup=5", "checkpoint_every=20", f"out={tmp_path / 'pre'}", *tiny)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "pre" / "pretrain.json").read_text())
    assert summary["tasks"] == ["reach-v3"] and summary["target_return"] > 1000   # the expert's return
    done = cli("finetune", f"pretrained={tmp_path / 'pre'}", "method=l2m", "sequence.tasks=[push-v3,reach-v3]", "updates=20",
               "evals_per_task=2", f"out={tmp_path / 'ft'}", *tiny, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "ft" / "continual.json").read_text())
    assert [p["task"] for p in record["phases"]] == ["push-v3", "reach-v3"]
    assert [c["update"] for c in record["phases"][0]["curve"]] == [10, 20]
    assert set(record["phases"][1]["after"]) == {"push-v3", "reach-v3"}
    assert set(record["metrics"]["forgetting"]) == {"push-v3", "reach-v3"}
    assert record["pretrain_before"]["reach-v3"]["return"] > 0
    pre, _ = load_checkpoint(tmp_path / "pre" / "checkpoint.safetensors")
    fine, _ = load_checkpoint(tmp_path / "ft" / "checkpoint.safetensors")
    assert all(torch.equal(v, fine["agent"]["model"][k]) for k, v in pre["agent"]["model"].items())
    # a fine-tuned model is fine-tuned further from its checkpoint: the same pool continues with new tasks
    done = cli("finetune", f"pretrained={tmp_path / 'ft'}", "method=l2m", "sequence.tasks=[window-close-v3]", "updates=10",
               "evals_per_task=1", f"out={tmp_path / 'ft2'}", *tiny, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    more = json.loads((tmp_path / "ft2" / "continual.json").read_text())
    assert more["previous_sequence"] == ["push-v3", "reach-v3"]
    assert set(more["phases"][0]["after"]) == {"push-v3", "reach-v3", "window-close-v3"}
    wrong = cli("finetune", f"pretrained={tmp_path / 'ft'}", "method=full", "sequence.tasks=[window-close-v3]", f"out={tmp_path / 'x'}", *tiny)
    assert wrong.returncode == 2 and "same method only" in wrong.stderr
    done = cli("eval", f"run={tmp_path / 'ft'}", "env=metaworld", "env.id=push-v3", "env.max_episode_steps=200", "episodes=1")
    assert done.returncode == 0 and "success" in done.stdout, done.stderr[-2000:]
    bad = cli("train", "agent=l2m")
    assert bad.returncode == 2 and "learns from datasets" in bad.stderr


def test_the_offline_loop_resumes_a_stopped_phase_exactly(base, tmp_path):
    import signal

    from robo_rl.offline import OfflineTrainer
    from robo_rl.train import TrainingInterrupted

    def fresh() -> tuple[L2M, WindowSampler]:
        agent = L2M(OBS, ACT, {**TINY, "dropout": 0.1}, seed=3)
        return agent, sampler_of(agent, synthetic_task(0), seed=5)

    agent, sampler = fresh()
    OfflineTrainer(agent, sampler, 60, tmp_path / "whole", "pretrain", checkpoint_every=25, progress=False).run()

    agent, sampler = fresh()
    stopped = OfflineTrainer(agent, sampler, 60, tmp_path / "split", "pretrain", checkpoint_every=25, progress=False)
    draw = sampler.sample

    def stop_at_update_37(batch: int):
        if stopped.done == 37:
            stopped._on_signal(signal.SIGTERM, None)   # what a SIGTERM does: stop after this update, with a checkpoint
        return draw(batch)

    sampler.sample = stop_at_update_37
    with pytest.raises(TrainingInterrupted, match="update 38 of 60"):
        stopped.run()
    agent, sampler = fresh()
    resumed = OfflineTrainer(agent, sampler, 60, tmp_path / "split", "pretrain", checkpoint_every=25, progress=False)
    assert resumed.resume() and resumed.done == 38
    resumed.run()
    from robo_rl.checkpoint import load_checkpoint

    whole, _ = load_checkpoint(tmp_path / "whole" / "checkpoint.safetensors")
    split, _ = load_checkpoint(tmp_path / "split" / "checkpoint.safetensors")
    assert all(torch.equal(v, split["agent"]["model"][k]) for k, v in whole["agent"]["model"].items())
