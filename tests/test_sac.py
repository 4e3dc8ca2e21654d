"""The suite's SAC: the batched twin critic, one update against a plain reference, save/load, learning."""
import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from robo_rl.agents.nets import BatchedMLP
from robo_rl.agents.sac import SAC
from robo_rl.replay import ReplayBuffer

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = {"net_arch": [16, 16], "batch_size": 8, "learning_rate": 1e-2}


def filled_replay(n=64, seed=0):
    replay = ReplayBuffer((5,), 2, n, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        replay.add(rng.normal(size=5), rng.uniform(-1, 1, 2), rng.normal(), rng.normal(size=5), rng.random() < 0.2)
    return replay


def test_batched_twin_critic_equals_two_separate_critics():
    torch.manual_seed(0)
    twin = BatchedMLP(2, 7, [32, 16], 1)
    x = torch.randn(11, 7, requires_grad=True)
    out = twin(x)
    heads = [twin.head(k) for k in range(2)]
    assert out.shape == (2, 11, 1)
    for k, head in enumerate(heads):
        torch.testing.assert_close(out[k], head(x), rtol=1e-6, atol=1e-6)
    # and the same gradient with respect to the input
    (g_twin,) = torch.autograd.grad(out.sum(), x)
    (g_sep,) = torch.autograd.grad(sum(h(x).sum() for h in heads), x)
    torch.testing.assert_close(g_twin, g_sep, rtol=1e-5, atol=1e-6)


def test_detached_weights_pass_gradients_to_the_input_only():
    twin = BatchedMLP(2, 3, [8], 1)
    x = torch.randn(4, 3, requires_grad=True)
    twin(x, detach_weights=True).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in twin.parameters())


class Reference:
    """SAC's losses and update written plainly (separate critics, nn.Sequential, stock Adam), after
    Haarnoja et al. 2018 and SB3's `SAC.train`."""

    def __init__(self, agent: SAC) -> None:
        self.actor = [copy.deepcopy(agent.actor.net.head(0))]
        self.critics = [agent.critic.head(k) for k in range(2)]
        self.targets = [agent.critic_target.head(k) for k in range(2)]
        self.log_alpha = agent.log_alpha.detach().clone().requires_grad_(True)
        lr = agent.learning_rate
        self.actor_opt = torch.optim.Adam(self.actor[0].parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam([p for c in self.critics for p in c.parameters()], lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.gamma, self.tau, self.target_entropy = agent.gamma, agent.tau, agent.target_entropy

    def sample(self, obs):
        mean, log_std = self.actor[0](obs).chunk(2, dim=-1)
        log_std = log_std.clamp(-20, 2)
        dist = torch.distributions.Normal(mean, log_std.exp())
        u = mean + log_std.exp() * torch.randn_like(mean)  # the reparameterised sample
        a = torch.tanh(u)
        return a, (dist.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)

    def update(self, obs, action, reward, next_obs, terminated):
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_a, next_logp = self.sample(next_obs)
            x = torch.cat([next_obs, next_a], -1)
            q_next = torch.min(self.targets[0](x), self.targets[1](x)).squeeze(-1) - alpha * next_logp
            y = reward + self.gamma * (1 - terminated) * q_next
        x = torch.cat([obs, action], -1)
        critic_loss = 0.5 * sum(F.mse_loss(c(x).squeeze(-1), y) for c in self.critics)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        a, logp = self.sample(obs)
        x = torch.cat([obs, a], -1)
        q = torch.min(self.critics[0](x), self.critics[1](x)).squeeze(-1)
        actor_loss = (alpha * logp - q).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            for c, t in zip(self.critics, self.targets):
                for p, tp in zip(c.parameters(), t.parameters()):
                    tp.lerp_(p, self.tau)
        return critic_loss, actor_loss


def test_one_update_matches_a_plain_reference_implementation():
    agent = SAC(OBS, ACT, SMALL, seed=3)
    reference = Reference(agent)
    batch = filled_replay().sample(8)
    args = (batch["obs"], batch["action"], batch["reward"].view(-1), batch["next_obs"], batch["terminated"].view(-1))
    for step in range(3):  # a few updates: Adam's state and the target average carry over
        torch.manual_seed(100 + step)
        metrics = agent.update(*args)
        torch.manual_seed(100 + step)
        critic_loss, actor_loss = reference.update(*args)
        torch.testing.assert_close(metrics["critic_loss"], critic_loss.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(metrics["actor_loss"], actor_loss.detach(), rtol=1e-5, atol=1e-6)
    for k in range(2):
        for mine, theirs in ((agent.critic.head(k), reference.critics[k]), (agent.critic_target.head(k), reference.targets[k])):
            for p, q in zip(mine.parameters(), theirs.parameters()):
                torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for p, q in zip(agent.actor.net.head(0).parameters(), reference.actor[0].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(agent.log_alpha.detach(), reference.log_alpha.detach())
    assert float(agent.log_alpha.detach()) != 0.0  # the temperature moved


def test_metrics_stay_tensors_until_logged():
    agent = SAC(OBS, ACT, SMALL, seed=0)
    metrics = agent.train_step(filled_replay())
    assert set(metrics) >= {"critic_loss", "actor_loss", "alpha", "entropy"}
    assert all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in metrics.values())


def test_save_load_gives_identical_actions_and_training(tmp_path):
    agent = SAC(OBS, ACT, SMALL, seed=1)
    replay = filled_replay()
    for _ in range(5):
        agent.train_step(replay)
    again = SAC.load(agent.save(tmp_path / "sac.safetensors"))
    obs = np.linspace(-1, 1, 5).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), again.act(obs, deterministic=True))
    torch.manual_seed(7)
    a = agent.act(obs)
    torch.manual_seed(7)
    np.testing.assert_array_equal(a, again.act(obs))
    # the optimisers' state came along: the next update is the same in both
    r1, r2 = filled_replay(seed=5), filled_replay(seed=5)
    torch.manual_seed(9)
    m1 = agent.train_step(r1)
    torch.manual_seed(9)
    m2 = again.train_step(r2)
    assert float(m1["critic_loss"]) == float(m2["critic_loss"])
    torch.testing.assert_close(agent.critic_params.flat, again.critic_params.flat, rtol=0, atol=0)


def test_bad_values_name_their_key():
    with pytest.raises(ValueError, match="agent.batch_size expects int, got 'lots'"):
        SAC(OBS, ACT, {"batch_size": "lots"})
    with pytest.raises(ValueError, match="flat state observations"):
        SAC(gym.spaces.Box(0, 1, (3, 8, 8), np.float32), ACT, {})


@pytest.mark.slow
def test_sac_learns_pendulum_far_above_a_zero_action_policy():
    """Pendulum-v1 (swing up and hold): a zero-action policy scores about -1285 and a random one about
    -1250; solved is about -150. A broken update (wrong sign, no entropy tuning, no target) stays near
    the floor. Measured: -239 after 4000 steps with these settings (-144 after 6000)."""
    from robo_rl.evaluate import evaluate

    env, eval_env = gym.make("Pendulum-v1"), gym.make("Pendulum-v1")
    agent = SAC(env.observation_space, env.action_space,
                {"net_arch": [64, 64], "batch_size": 64, "learning_rate": 1e-3, "learning_starts": 500,
                 "replay_size": 10_000}, seed=0)
    agent.learn(4000, env, progress=False)
    trained = evaluate(agent, eval_env, 5, seed=100)["mean_return"]
    print(f"sac {trained:.1f}")
    assert trained > -400, trained
