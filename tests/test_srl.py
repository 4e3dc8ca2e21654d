"""Sequence RL: action sequences, the learned model, temporal recall, learning at a slow decision rate."""

import numpy as np
import pytest
import torch

from robo_rl.agents.srl import SRL
from robo_rl.envs import env_config, make_env
from robo_rl.replay import ReplayBuffer

CONFIG = {"sequence_length": 4, "net_arch": [64, 64], "gru_hidden": 64, "batch_size": 64,
          "learning_rate": 1e-3, "model_learning_rate": 1e-3}


def make_agent(env, **overrides):
    return SRL(env.observation_space, env.action_space, {**CONFIG, **overrides}, seed=0)


def test_sequences_have_the_right_shape_and_bounds():
    env = make_env(env_config("mujoco", "Hopper-v5"), seed=0)
    agent = make_agent(env, sequence_length=5)
    obs, _ = env.reset(seed=0)
    for length in (1, 5, 16):   # the GRU unrolls to any length
        seq = agent.act_sequence(obs * 100.0, length, deterministic=False)
        assert seq.shape == (length, 3) and np.all(np.abs(seq) <= 1.0)
    # Inside the loop the agent decides every 5 steps: the next 4 actions ignore the observation.
    agent.begin_episode()
    first = agent.act(obs, deterministic=True)
    planned = agent.act_sequence(obs, 5, deterministic=True)
    assert np.allclose(first, planned[0])
    rest = [agent.act(np.random.default_rng(i).normal(size=obs.shape).astype(np.float32), deterministic=True) for i in range(4)]
    assert np.allclose(rest, planned[1:], atol=1e-6)
    fresh = agent.act(obs + 1.0, deterministic=True)   # a new decision from the new observation
    assert np.allclose(fresh, agent.act_sequence(obs + 1.0, 1)[0], atol=1e-6)


def real_transitions(env, n, seed=0):
    replay = ReplayBuffer(env.observation_space.shape, env.action_space.shape[0], n, seed=seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(n):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, reward, next_obs, terminated)
        obs = next_obs if not (terminated or truncated) else env.reset()[0]
    return replay


def test_model_prediction_loss_falls_on_real_transitions():
    env = make_env(env_config("mujoco", "HalfCheetah-v5"), seed=0)
    agent = make_agent(env)
    replay = real_transitions(env, 3000)
    held_out = replay.gather(np.arange(2500, 3000))
    with torch.no_grad():
        before = float(agent.model_loss(held_out))
    for _ in range(300):
        agent.other_losses(replay.gather(replay.rng.integers(0, 2500, size=64)))  # the model's own update
    with torch.no_grad():
        after = float(agent.model_loss(held_out))
    assert after < 0.5 * before, (before, after)


def test_temporal_recall_scores_actions_at_model_states_and_moves_only_the_actor():
    env = make_env(env_config("mujoco", "Hopper-v5"), seed=0)
    agent = make_agent(env)
    batch = real_transitions(env, 256).sample(64)
    obs = batch["obs"].float()
    alpha = torch.tensor(0.1)
    torch.manual_seed(0)
    loss_a, _ = agent.policy_loss(obs, alpha)
    with torch.no_grad():   # a different model changes the states the later actions are scored at
        for p in agent.model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    torch.manual_seed(0)
    loss_b, _ = agent.policy_loss(obs, alpha)
    assert not torch.isclose(loss_a, loss_b)
    one_step = make_agent(env, sequence_length=1)
    one_step.actor.load_state_dict(agent.actor.state_dict())
    one_step.critic.load_state_dict(agent.critic.state_dict())
    torch.manual_seed(0)
    loss_c, _ = one_step.policy_loss(obs, alpha)
    with torch.no_grad():   # with J = 1 the model plays no part
        for p in one_step.model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    torch.manual_seed(0)
    assert torch.isclose(loss_c, one_step.policy_loss(obs, alpha)[0])
    # The actor's loss reaches the actor (through the GRU), never the critic's weights.
    agent.critic_params.zero_grad()
    agent.actor_params.zero_grad()
    loss_a.backward()
    assert float(agent.critic_params.grad.abs().sum()) == 0.0
    assert sum(float(p.grad.abs().sum()) for p in agent.actor.gru.parameters()) > 0


def test_recall_on_a_subsample_of_positions_is_the_full_recall_in_expectation_at_its_share_of_the_cost(monkeypatch):
    """recall_positions = k: k of the J positions scored per update. Averaged over every k-subset, the loss is
    the full temporal recall's (exactly: the same sampled actions); the critic sees k * B pairs, not J * B."""
    from itertools import combinations

    env = make_env(env_config("mujoco", "Hopper-v5"), seed=0)
    agent = make_agent(env, sequence_length=6, recall_positions=2)
    obs = real_transitions(env, 256).sample(32)["obs"].float()
    alpha = torch.tensor(0.1)
    seen = []
    q_min = agent.q_min
    monkeypatch.setattr(agent, "q_min", lambda o, a, **kw: seen.append(len(o)) or q_min(o, a, **kw))

    def loss_at(positions):
        monkeypatch.setattr(agent, "recall_positions_now", lambda: list(positions))
        torch.manual_seed(0)   # the same sampled sequence every time
        return agent.policy_loss(obs, alpha)[0]

    full = loss_at(range(6))
    subsets = [loss_at(c) for c in combinations(range(6), 2)]
    assert torch.isclose(torch.stack(subsets).mean(), full, atol=1e-6)
    assert seen[0] == 6 * 32 and set(seen[1:]) == {2 * 32}
    assert len({round(float(x), 5) for x in subsets}) > 5   # the subsets do score different positions
    monkeypatch.undo()
    drawn = [agent.recall_positions_now() for _ in range(300)]
    assert all(len(d) == 2 and d[0] < d[1] for d in drawn)
    counts = np.bincount([j for d in drawn for j in d], minlength=6)
    assert counts.min() > 60   # every position is drawn, about 100 times each
    with pytest.raises(ValueError, match="recall_positions"):
        make_agent(env, recall_positions=0)


def test_split_recall_scores_each_row_at_one_position_with_the_full_recalls_states_at_the_cost_of_b_pairs(monkeypatch):
    """recall_split: row r of block j (the batch cut into J blocks) is scored at position j, at the state and
    with the action the full recall gives that row there; the critic sees B pairs whatever J is."""
    import robo_rl.agents.srl as srl
    from robo_rl.agents.sac import squashed_gaussian

    # Without sampling noise both recalls draw the same sequence for a row, so they can be compared exactly.
    monkeypatch.setattr(srl, "squashed_gaussian", lambda mean, log_std, deterministic=False: squashed_gaussian(mean, log_std, True))
    env = make_env(env_config("mujoco", "Hopper-v5"), seed=0)
    obs = real_transitions(env, 256).sample(30)["obs"].float()   # 30 rows, J = 4: blocks of 7, 8, 7, 8
    alpha = torch.tensor(0.1)
    agent = make_agent(env, recall_split=True)
    seen = []
    q_min = agent.q_min
    monkeypatch.setattr(agent, "q_min", lambda o, a, **kw: seen.append(len(o)) or q_min(o, a, **kw))
    loss, log_prob = agent.policy_loss(obs, alpha)
    with torch.no_grad():   # the reference: the full recall's sequence and states for every row
        actions, log_probs = agent.actor(obs, 4, deterministic=True)
        states = [obs]
        for action in actions[:3]:
            states.append(agent.model(states[-1], action))
        ends = [0, 7, 15, 22, 30]
        block = [slice(ends[j], ends[j + 1]) for j in range(4)]
        scored_log_prob = torch.cat([log_probs[j][block[j]] for j in range(4)])
        q = q_min(torch.cat([states[j][block[j]] for j in range(4)]), torch.cat([actions[j][block[j]] for j in range(4)]))
    assert seen == [30]
    assert torch.allclose(log_prob, scored_log_prob, atol=1e-6)
    assert torch.isclose(loss, alpha * scored_log_prob.mean() - q.mean(), atol=1e-6)
    # Every position is scored (a model that moves changes the later blocks' states), and only the actor learns.
    assert not torch.allclose(states[3][block[3]], obs[block[3]])
    agent.critic_params.zero_grad()
    agent.actor_params.zero_grad()
    loss.backward()
    assert float(agent.critic_params.grad.abs().sum()) == 0.0
    assert sum(float(p.grad.abs().sum()) for p in agent.actor.gru.parameters()) > 0
    # At J = 16 the critic still scores B pairs (the full recall: 16 B).
    seen.clear()
    long = make_agent(env, sequence_length=16, recall_split=True)
    monkeypatch.setattr(long, "q_min", lambda o, a, **kw: seen.append(len(o)) or q_min(o, a, **kw))
    long.policy_loss(obs, alpha)
    assert seen == [30]
    with pytest.raises(ValueError, match="recall_split and agent.recall_positions"):
        make_agent(env, recall_split=True, recall_positions=2)
    with pytest.raises(ValueError, match="agent.recall_split expects bool, got 'false'"):
        make_agent(env, recall_split="false")


def test_save_load_round_trip(tmp_path):
    env = make_env(env_config("mujoco", "Hopper-v5"), seed=0)
    agent = make_agent(env)
    obs, _ = env.reset(seed=0)
    path = agent.save(tmp_path / "srl.safetensors")
    again = SRL.load(path)
    assert np.allclose(agent.act_sequence(obs, 6), again.act_sequence(obs, 6))


@pytest.mark.slow
def test_srl_learns_at_a_slow_decision_rate():
    """Pendulum-v1 deciding only every 4th step (open loop in between): zero action about -1285, random
    about -1250, solved about -150; measured -126 after 5000 steps. The FAS evaluation plays the same
    policy as sequences of 4 and must agree."""
    import gymnasium as gym

    from robo_rl.evaluate import evaluate
    from robo_rl.fas import evaluate_at_interval

    env, eval_env = gym.make("Pendulum-v1"), gym.make("Pendulum-v1")
    agent = SRL(env.observation_space, env.action_space,
                {**CONFIG, "batch_size": 128, "learning_starts": 1000, "replay_size": 10_000}, seed=0)
    agent.learn(5000, env, progress=False)
    trained = evaluate(agent, eval_env, 5, seed=100)["mean_return"]  # a decision every 4 steps, as trained
    print(f"srl {trained:.1f}")
    assert trained > -500, trained
    at_4 = evaluate_at_interval(agent, eval_env, 4, 3, seed=100)["mean_return"]
    assert at_4 > -500, at_4
