"""CrossQ (agents/crossq.py): BatchRenorm against a plain reference, the joint forward, no target network,
learning, and checkpoints."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from robo_rl.agents.crossq import BatchRenorm, CrossQ
from robo_rl.replay import ReplayBuffer

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = {"net_arch": [16, 16], "critic_width": 32, "batch_size": 8}


class ReferenceRenorm:
    """Batch renormalisation (Ioffe 2017) as the official CrossQ code computes it, one head, in numpy."""

    def __init__(self, features, momentum=0.99, eps=1e-3, warmup=2, r_max=3.0, d_max=5.0):
        self.mean, self.var = np.zeros(features), np.ones(features)
        self.momentum, self.eps, self.warmup, self.r_max, self.d_max, self.steps = momentum, eps, warmup, r_max, d_max, 0

    def train(self, x):
        mean, var = x.mean(0), x.var(0)
        std, running_std = np.sqrt(var + self.eps), np.sqrt(self.var + self.eps)
        r, d = np.ones_like(mean), np.zeros_like(mean)
        if self.steps >= self.warmup:
            r = np.clip(std / running_std, 1 / self.r_max, self.r_max)
            d = np.clip((mean - self.mean) / running_std, -self.d_max, self.d_max)
        self.mean = self.momentum * self.mean + (1 - self.momentum) * mean
        self.var = self.momentum * self.var + (1 - self.momentum) * var
        self.steps += 1
        return (x - mean) / std * r + d

    def eval(self, x):
        return (x - self.mean) / np.sqrt(self.var + self.eps)


def test_batch_renorm_matches_a_reference_in_training_and_eval_mode():
    """Running statistics, the warm-up switch (plain batch norm for the first 2 steps) and the r/d
    clipping after it (batches far from the running statistics, so that both clips act)."""
    rng = np.random.default_rng(0)
    layer, reference = BatchRenorm(1, 4, warmup=2, momentum=0.9), ReferenceRenorm(4, warmup=2, momentum=0.9)
    clipped = False
    for step in range(6):
        x = rng.normal(loc=3.0 * step, scale=0.2 + step, size=(32, 4))
        layer.train()
        out = layer(torch.tensor(x[None], dtype=torch.float32))[0].detach().numpy()
        expected = reference.train(x)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.running_mean[0, 0].numpy(), reference.mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.running_var[0, 0].numpy(), reference.var, rtol=1e-4, atol=1e-5)
        if step < 2:   # the warm-up: exactly batch normalisation
            np.testing.assert_allclose(out, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-4, atol=1e-4)
        else:
            clipped |= bool(np.any(np.abs(expected - (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)) > 1.0))
        layer.eval()
        probe = rng.normal(size=(7, 4))
        np.testing.assert_allclose(layer(torch.tensor(probe[None], dtype=torch.float32))[0].detach().numpy(),
                                   reference.eval(probe), rtol=1e-4, atol=1e-4)
    assert clipped and int(layer.steps) == 6   # eval-mode calls do not count


def autograd_renorm(x, weight, bias, r, d, eps=1e-3):
    """BatchRenorm's training-mode output written plainly, for autograd to differentiate (r, d constants)."""
    mean, var = x.mean(-2, keepdim=True), x.var(-2, unbiased=False, keepdim=True)
    return ((x - mean) / torch.sqrt(var + eps) * r + d) * weight + bias


@pytest.mark.parametrize("warmup", [0, 100])   # 0: r and d act from the first batch; 100: plain batch norm
def test_batch_renorm_gradients_equal_autograd_through_the_plain_formula(warmup):
    """The closed-form backward (agents/crossq._Renorm) against autograd, for the input, weight and bias."""
    torch.manual_seed(0)
    layer = BatchRenorm(2, 5, warmup=warmup).double()
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 2.0, 10).view(2, 1, 5))
        layer.bias.fill_(0.3)
        layer.running_mean.fill_(1.5)
        layer.running_var.fill_(0.2)   # far from the batch's: r and d clip when they act
    x = (torch.randn(2, 16, 5, dtype=torch.double) * 2 + 1).requires_grad_()
    upstream = torch.randn(2, 16, 5, dtype=torch.double)
    running_std = torch.sqrt(layer.running_var + 1e-3)
    mean, var = x.detach().mean(-2, keepdim=True), x.detach().var(-2, unbiased=False, keepdim=True)
    r, d = torch.ones_like(mean), torch.zeros_like(mean)
    if warmup == 0:
        r = (torch.sqrt(var + 1e-3) / running_std).clamp(1 / 3, 3)
        d = ((mean - layer.running_mean) / running_std).clamp(-5, 5)
        assert not torch.allclose(r, torch.ones_like(r))
    weight, bias = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    (layer(x) * upstream).sum().backward()
    (autograd_renorm(x_ref, weight, bias, r, d) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, weight.grad)
    torch.testing.assert_close(layer.bias.grad, bias.grad)
    assert x.grad.abs().max() > 1e-3


def test_the_joint_forward_equals_separate_forwards_in_eval_mode():
    agent = CrossQ(OBS, ACT, SMALL, seed=0)
    obs, action, next_obs, next_action = (torch.randn(8, 5), torch.rand(8, 2) * 2 - 1, torch.randn(8, 5),
                                          torch.rand(8, 2) * 2 - 1)
    agent.critic.eval()
    q, q_next = agent.joint_q(obs, action, next_obs, next_action)
    torch.testing.assert_close(q, agent.critic(torch.cat([obs, action], -1)).squeeze(-1))
    torch.testing.assert_close(q_next, agent.critic(torch.cat([next_obs, next_action], -1)).squeeze(-1))


def test_crossq_has_no_target_network_and_keeps_its_networks_in_eval_mode_outside_updates():
    agent = CrossQ(OBS, ACT, SMALL, seed=0)
    state = agent.state_dict()
    assert agent.critic_target is None and agent.target_params is None
    assert set(agent.networks()) == {"actor", "critic"} and "critic_target" not in state
    n_params = sum(p.numel() for p in agent.actor.parameters()) + sum(p.numel() for p in agent.critic.parameters())
    assert n_params == len(agent.actor_params) + len(agent.critic_params)   # every parameter is trained: none is a copy
    assert all(g["betas"][0] == 0.5 for g in agent.critic_opt.param_groups)
    replay = ReplayBuffer((5,), 2, 64, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(64):
        replay.add(rng.normal(size=5), rng.uniform(-1, 1, 2), rng.normal(), rng.normal(size=5), False)
    before = agent.critic.norms[0].running_mean.clone()
    actor_steps = []
    for _ in range(6):
        agent.train_step(replay)
        assert not agent.actor.training and not agent.critic.training
        actor_steps.append(agent.actor_opt.state_dict()["state"][0]["step"].item())
    assert actor_steps == [1, 1, 1, 2, 2, 2]   # policy delay 3
    assert not torch.equal(before, agent.critic.norms[0].running_mean)   # the statistics moved with training


def test_crossq_learns_inverted_pendulum_far_above_a_zero_action_policy():
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.evaluate import evaluate
    from robo_rl.runs import RandomAgent

    env = make_env(env_config("mujoco", "InvertedPendulum-v5"), seed=0)
    eval_env = make_env(env_config("mujoco", "InvertedPendulum-v5"), seed=100)
    agent = CrossQ(env.observation_space, env.action_space, {"critic_width": 128, "learning_starts": 500}, seed=0)
    agent.learn(2000, env, progress=False, eval_every=0)
    trained = evaluate(agent, eval_env, 5, seed=7)["mean_return"]

    class Zero(RandomAgent):
        def act(self, obs, deterministic=False):
            return np.zeros(self.action_dim, np.float32)

    zero = evaluate(Zero(env.observation_space, env.action_space, {}, 0), eval_env, 5, seed=7)["mean_return"]
    random = evaluate(RandomAgent(env.observation_space, env.action_space, {}, 0), eval_env, 5, seed=7)["mean_return"]
    assert trained >= 500 and trained > 10 * max(zero, random), (trained, zero, random)


def test_sb3_contrib_crossq_runs_in_the_suites_loop_and_learns_inverted_pendulum_too():
    """The parity arm (agent=sb3_crossq): sb3-contrib's CrossQ on robo-rl's replay store, with the same budget
    as the test above; it acts with its running statistics (eval mode) outside its updates."""
    from robo_rl.agents.sb3 import SB3Agent
    from robo_rl.config import compose, to_container
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.evaluate import evaluate

    env = make_env(env_config("mujoco", "InvertedPendulum-v5"), seed=0)
    eval_env = make_env(env_config("mujoco", "InvertedPendulum-v5"), seed=100)
    config = to_container(compose(["agent=sb3_crossq"]).agent)
    config["learning_starts"] = 500
    config["hyperparams"]["net_arch"]["qf"] = [128, 128]
    agent = SB3Agent(env.observation_space, env.action_space, config, seed=0)
    assert type(agent.model).__name__ == "CrossQ" and agent.model.policy_delay == 3
    agent.learn(2000, env, progress=False, eval_every=0)
    assert not agent.model.policy.training
    trained = evaluate(agent, eval_env, 5, seed=7)["mean_return"]
    assert trained >= 500, trained


@pytest.mark.parametrize("bad", [{"critic_width": 0}, {"policy_delay": 0}, {"adam_beta1": 1.0}, {"temperature_beta1": -0.1}])
def test_bad_crossq_settings_name_the_key(bad):
    with pytest.raises(ValueError, match="critic_width|policy_delay|adam_beta1|temperature_beta1"):
        CrossQ(OBS, ACT, {**SMALL, **bad})


def _copy_sb3_mlp(layers, ours, head):
    """sb3-contrib's [BatchRenorm1d, Linear, ReLU, ...] into head `head` of a BRNMLP (weights stored (in, out))."""
    norms = [m for m in layers if type(m).__name__ == "BatchRenorm1d"]
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    for i, norm in enumerate(norms):
        ours.norms[i].weight.data[head, 0] = norm.scale.data
        ours.norms[i].bias.data[head, 0] = norm.bias.data
    for i, linear in enumerate(linears):
        ours.weights[i].data[head] = linear.weight.data.T
        ours.biases[i].data[head, 0] = linear.bias.data


def test_one_critic_update_matches_sb3_contrib_crossq_from_the_same_weights():
    """sb3-contrib's CrossQ and ours, given the same weights and batch (near-deterministic next actions, alpha
    ~ 0): equal critics in eval mode before (layer order, BatchRenorm in eval mode), and after one critic update
    within 5% of how far it moved them (measured: 1%, from sb3-contrib's unbiased batch variance; ours is biased,
    as the official code). Adam's first step moves each weight by about lr along its gradient's sign, so this
    checks the update's direction weight by weight (a target without terminal masking is off by 10%)."""
    from types import SimpleNamespace

    from sb3_contrib import CrossQ as SB3CrossQ
    from stable_baselines3.common.logger import configure

    torch.manual_seed(0)
    env = gym.make("InvertedPendulum-v5")
    width, batch_size = 32, 64
    theirs = SB3CrossQ("MlpPolicy", env, learning_rate=1e-3, batch_size=batch_size, learning_starts=0, seed=0,
                       policy_kwargs={"net_arch": {"pi": [width, width], "qf": [width, width]}}, device="cpu")
    theirs.set_logger(configure(None, []))
    ours = CrossQ(env.observation_space, env.action_space,
                  {"net_arch": [width, width], "critic_width": width, "batch_size": batch_size, "learning_rate": 1e-3}, seed=0)
    for head, layers in enumerate([theirs.critic.qf0, theirs.critic.qf1]):
        _copy_sb3_mlp(layers, ours.critic, head)
    actor = theirs.actor
    _copy_sb3_mlp(actor.latent_pi, ours.actor.net, 0)
    ours.actor.net.weights[2].data[0] = torch.cat([actor.mu.weight.data, actor.log_std.weight.data]).T
    ours.actor.net.biases[2].data[0, 0] = torch.cat([actor.mu.bias.data, actor.log_std.bias.data])
    with torch.no_grad():   # next actions ~ tanh(mean) and no entropy term: both targets are deterministic
        actor.log_std.bias.fill_(-20.0)
        ours.actor.net.biases[2][0, 0, env.action_space.shape[0]:] = -20.0
        theirs.log_ent_coef.fill_(-30.0)
        ours.log_alpha.fill_(-30.0)

    generator = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(batch_size, 4, generator=generator), torch.randn(batch_size, 4, generator=generator)
    action = torch.rand(batch_size, 1, generator=generator) * 2 - 1
    reward, terminated = torch.randn(batch_size, generator=generator), (torch.arange(batch_size) % 10 == 0).float()

    def critics():
        theirs.critic.set_bn_training_mode(False)
        return torch.cat(theirs.critic(obs, action), 1), ours.critic(torch.cat([obs, action], -1)).squeeze(-1).T

    before_theirs, before_ours = critics()
    assert torch.allclose(before_theirs, before_ours, atol=1e-6)
    theirs.replay_buffer.sample = lambda *args, **kwargs: SimpleNamespace(
        observations=obs, actions=action, next_observations=next_obs, rewards=reward.view(-1, 1),
        dones=terminated.view(-1, 1), discounts=None)
    theirs._n_updates = 1   # its actor waits for update 3: one critic update only, as ours below
    theirs.train(gradient_steps=1, batch_size=batch_size)
    ours.update(obs, action, reward, next_obs, terminated, update_actor=False)
    after_theirs, after_ours = critics()
    moved = (after_theirs - before_theirs).abs().mean()
    assert moved > 1e-3
    assert (after_theirs - after_ours).abs().mean() < 0.05 * moved, ((after_theirs - after_ours).abs().mean(), moved)
