"""Soft Actor-Critic (Haarnoja et al., 2018, "Soft Actor-Critic Algorithms and Applications",
arXiv 1812.05905), with automatic entropy tuning toward a target entropy of -|A|.

Readable top to bottom, and fast on a CPU. The maths is Stable-Baselines3's SAC (the suite's baseline),
update for update:
  critic:  y = r + gamma (1 - terminated) [min_i Q'_i(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s')
           L_Q = 1/2 sum_i mean (Q_i(s, a) - y)^2
  actor:   L_pi = mean [alpha log pi(a~|s) - min_i Q_i(s, a~)],  a~ ~ pi(.|s), with the critic just updated
  entropy: L_alpha = -mean [log alpha (log pi(a~|s) + target_entropy)],  alpha = exp(log alpha)
  target:  Q' <- (1 - tau) Q' + tau Q after every update
with a tanh-squashed diagonal Gaussian policy (log std clamped to [-20, 2]) and ReLU MLPs.

What makes it fast (same maths, fewer and larger ops; measured in `robo-rl bench throughput`):
  * the twin critics are one `BatchedMLP`: one batched matmul per layer for both;
  * the actor's loss goes through the critic with its weights detached, so backward skips the
    critic's weight gradients it would throw away;
  * each network's parameters live in one flat buffer: one fused Adam step and one `lerp_` for the
    Polyak update, instead of a few ops per parameter tensor;
  * batches are gathered from the replay store straight into preallocated arrays;
  * metrics stay tensors (no host synchronisation per update): they become numbers only when logged.
torch.compile was measured on this update on CPUs and made it slower (graph breaks at backward and the
optimiser steps; compiling the losses alone gained nothing), so it is not used; precision is fp32.

Options for learning from few samples or from demonstrations (RLPD, Ball et al. 2023), all off by default,
so that the defaults are the update above exactly (tested):
  critics: E critic heads (2: the twin critics); target_critics: the target is the min over a random
    subset of that many heads, drawn anew each update (RLPD: E = 10, subset 2);
  layer_norm: LayerNorm after every hidden layer of the critic (RLPD);
  utd: critic updates per env step, each on a fresh batch, the actor and the temperature once per env
    step after the last of them;
  backup_entropy: false drops -alpha log pi(a'|s') from the critic's target (the entropy stays in the actor's loss);
  target_bounds: [low, high] clips the critic's target into the range the returns can take (null: off). With a
    0/1 success reward that ends the episode, every policy's value lies in [0, 1], and values above 1 are
    overestimation the bootstrap would otherwise feed back; HER's DDPG clips its targets to its reward's
    return range the same way (Plappert et al. 2018, "Multi-Goal Reinforcement Learning", `clip_return`).

SRL (agents/srl.py) builds on this class: it keeps the critic, entropy tuning, target update and
update order, and replaces the actor and the actor's loss. The demo-seeded learner (agents/demo_sac.py)
keeps all of it and adds demonstrations.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from robo_rl.agents.base import Agent, option
from robo_rl.agents.nets import BatchedMLP, FlatParameters, resolve_device

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def squashed_gaussian(mean: torch.Tensor, log_std: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u ~ N(mean, exp(log_std)); returns a and log pi(a), summed over action dims.

    The tanh change of variables is log(1 - tanh(u)^2 + 1e-6), as in SB3."""
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    noise = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
    pre_tanh = mean + log_std.exp() * noise
    action = torch.tanh(pre_tanh)
    log_prob = -0.5 * noise.pow(2) - log_std - HALF_LOG_2PI - torch.log1p(-action.pow(2) + 1e-6)
    return action, log_prob.sum(-1)


class Actor(nn.Module):
    """obs -> ReLU MLP -> (mean, log std) -> tanh-squashed Gaussian action in [-1, 1]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.net = BatchedMLP(1, obs_dim, hidden, 2 * action_dim)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs)[0].chunk(2, dim=-1)
        return squashed_gaussian(mean, log_std, deterministic)


class SAC(Agent):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__(observation_space, action_space, config, seed)
        c = self.config
        if len(self.observation_space.shape) != 1:
            raise ValueError(f"{type(self).__name__} takes flat state observations, got shape {self.observation_space.shape}")
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self.hidden = [int(h) for h in c.get("net_arch", [256, 256])]
        self.batch_size = option(c, "batch_size", int, 256)
        self.gamma, self.tau = option(c, "gamma", float, 0.99), option(c, "tau", float, 0.005)
        self.learning_rate = option(c, "learning_rate", float, 3e-4)
        self.target_entropy = -float(self.action_dim) if c.get("target_entropy", "auto") == "auto" \
            else option(c, "target_entropy", float, -self.action_dim)
        if self.batch_size < 1 or not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"agent.batch_size and agent.net_arch must be positive, got {self.batch_size}, {self.hidden}")
        self.device = resolve_device(str(c.get("device", "cpu")))
        self.n_critics, self.target_critics = option(c, "critics", int, 2), option(c, "target_critics", int, 2)
        self.layer_norm = bool(c.get("layer_norm", False))
        self.utd = option(c, "utd", int, 1)
        self.backup_entropy = bool(c.get("backup_entropy", True))
        self.target_bounds = self.bounds(c.get("target_bounds"))
        if not 1 <= self.target_critics <= self.n_critics:
            raise ValueError(f"agent.target_critics must be in 1..agent.critics ({self.n_critics}), got {self.target_critics}")
        if self.utd < 1:
            raise ValueError(f"agent.utd must be >= 1, got {self.utd}")

        torch.manual_seed(self.seed)  # built on the CPU, then moved: the same seed gives the same weights anywhere
        self.actor = self.build_actor().to(self.device)
        self.critic = self.build_critic().to(self.device)
        self.critic_target = self.build_target()
        # alpha starts at `initial_alpha` (1, as SB3's ent_coef "auto"; SB3's "auto_0.1" is initial_alpha 0.1)
        initial_alpha = option(c, "initial_alpha", float, 1.0)
        if initial_alpha <= 0:
            raise ValueError(f"agent.initial_alpha must be > 0, got {initial_alpha}")
        self.log_alpha = torch.full((1,), math.log(initial_alpha), device=self.device, requires_grad=True)
        self.build_optimizers()
        self._batch: dict[str, np.ndarray] | None = None
        self.updates = 0

    # --- pieces a subclass replaces (SRL) -------------------------------------------------------
    def build_actor(self) -> nn.Module:
        return Actor(self.obs_dim, self.action_dim, self.hidden)

    def build_critic(self) -> nn.Module:
        return BatchedMLP(self.n_critics, self.obs_dim + self.action_dim, self.hidden, 1, layer_norm=self.layer_norm)

    def build_target(self) -> nn.Module | None:
        """The Polyak-averaged target critic (None: an agent without one, CrossQ)."""
        return copy.deepcopy(self.critic).requires_grad_(False)

    def policy_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's loss and the log-probabilities the entropy temperature is tuned on."""
        action, log_prob = self.actor(obs)
        q = self.q_min(obs, action, detach_weights=True)
        return (alpha * log_prob - q).mean(), log_prob.detach()

    def next_action(self, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bootstrap action a' ~ pi(.|s') and its log-probability."""
        return self.actor(next_obs)

    def other_losses(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Extra learners updated from the same batch before the critic (SRL's model)."""
        return {}

    def build_optimizers(self) -> None:
        """One flat buffer and one fused Adam per learner."""
        self.actor_params, self.actor_opt = self.flat_adam(self.actor, self.learning_rate)
        self.critic_params, self.critic_opt = self.flat_adam(self.critic, self.learning_rate)
        self.target_params = FlatParameters(list(self.critic_target.parameters())) if self.critic_target is not None else None
        self.log_alpha.grad = torch.zeros_like(self.log_alpha)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=self.learning_rate, fused=True)

    @staticmethod
    def flat_adam(module: nn.Module, lr: float) -> tuple[FlatParameters, torch.optim.Optimizer]:
        """A module's parameters in one flat buffer, and a fused Adam stepping that buffer."""
        params = FlatParameters(list(module.parameters()))
        return params, torch.optim.Adam([params.flat], lr=lr, fused=True)

    # --- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).view(1, -1)
        action, _ = self.actor(obs_t, deterministic=deterministic)
        return action[0].cpu().numpy()

    # --- learning -------------------------------------------------------------------------------
    def q_min(self, obs: torch.Tensor, action: torch.Tensor, detach_weights: bool = False, target: bool = False,
              heads: torch.Tensor | None = None) -> torch.Tensor:
        """The min over the critic heads (the actor's view), or over the target's chosen heads (`heads`, or a
        random subset drawn here)."""
        critic = self.critic_target if target else self.critic
        q = critic(torch.cat([obs, action], dim=-1), detach_weights=detach_weights)
        if target and self.target_critics < self.n_critics:
            q = q[self.target_heads() if heads is None else heads]
        return q.min(dim=0).values.squeeze(-1)

    def target_heads(self) -> torch.Tensor:
        """A random subset of `target_critics` heads for one target (torch's RNG: checkpointed with the run)."""
        return torch.randperm(self.n_critics)[: self.target_critics].to(self.device)

    @staticmethod
    def _step(loss: torch.Tensor, params: Any, optimizer: torch.optim.Optimizer) -> None:
        params.zero_grad()
        loss.backward()
        optimizer.step()

    @staticmethod
    def bounds(value: Any) -> tuple[float, float] | None:
        """agent.target_bounds: null, or [low, high] with low < high."""
        if value is None:
            return None
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"agent.target_bounds must be null or [low, high], got {value!r}") from None
        if not low < high:
            raise ValueError(f"agent.target_bounds must be [low, high] with low < high, got {value!r}")
        return low, high

    def critic_target_value(self, reward: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor,
                            alpha: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - terminated) [min Q'(s', a') - alpha log pi(a'|s')] (the entropy term optional),
        clipped into `target_bounds` when set."""
        with torch.no_grad():
            next_action, next_log_prob = self.next_action(next_obs)
            value = self.q_min(next_obs, next_action, target=True)
            if self.backup_entropy:
                value = value - alpha * next_log_prob
            target = reward + self.gamma * (1.0 - terminated) * value
            if self.target_bounds is not None:
                target = target.clamp(*self.target_bounds)
            return target

    def update(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
               terminated: torch.Tensor, update_actor: bool = True) -> dict[str, torch.Tensor]:
        """One SAC update on a batch (rewards and terminated flags as (B,) vectors); `update_actor` false:
        the critic and its target only (the first utd - 1 updates of an env step)."""
        metrics = self.other_losses({"obs": obs, "action": action, "next_obs": next_obs})
        alpha = self.log_alpha.exp().detach()
        target = self.critic_target_value(reward, next_obs, terminated, alpha)
        q = self.critic(torch.cat([obs, action], dim=-1)).squeeze(-1)  # (E, B)
        critic_loss = (q - target).pow(2).mean()  # = 1/2 (mse_1 + mse_2) for twins: every head sees B samples
        self._step(critic_loss, self.critic_params, self.critic_opt)

        if update_actor:
            metrics.update(self.actor_and_temperature_step(obs, alpha))

        with torch.no_grad():
            self.target_params.flat.lerp_(self.critic_params.flat, self.tau)
        metrics.update(critic_loss=critic_loss.detach(), alpha=alpha[0])
        return metrics

    def actor_and_temperature_step(self, obs: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """The actor's step against the critic just updated, then the entropy temperature's."""
        actor_loss, log_prob = self.policy_loss(obs, alpha)
        self._step(actor_loss, self.actor_params, self.actor_opt)
        alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
        self.log_alpha.grad.zero_()
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": actor_loss.detach(), "entropy": -log_prob.mean()}

    def sample(self, replay: Any) -> dict[str, torch.Tensor]:
        """A uniform batch gathered into preallocated arrays (one copy, no new tensors per update)."""
        if self._batch is None:
            self._batch = replay.batch_buffers(self.batch_size)
            self._batch_tensors = {k: torch.from_numpy(v) for k, v in self._batch.items()}
        replay.gather_into(replay.sample_indices(self.batch_size), self._batch)
        batch = self._batch_tensors
        if self.device.type != "cpu":
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch

    def train_step(self, replay: Any) -> dict[str, torch.Tensor]:
        for i in range(self.utd):
            b = self.sample(replay)
            metrics = self.update(b["obs"].float(), b["action"], b["reward"].view(-1), b["next_obs"].float(),
                                  b["terminated"].view(-1), update_actor=i == self.utd - 1)
        self.updates += 1
        return metrics

    # --- checkpoints ----------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor_opt": self.actor_opt, "critic_opt": self.critic_opt, "alpha_opt": self.alpha_opt}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: net.state_dict() for name, net in self.networks().items()}
        state.update({name: opt.state_dict() for name, opt in self.optimizers().items()})
        state.update(log_alpha=self.log_alpha.detach().clone(), updates=self.updates)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, net in self.networks().items():
            net.load_state_dict(state[name])  # copies into the flat buffers' views
        for name, opt in self.optimizers().items():
            opt.load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(torch.as_tensor(state["log_alpha"]))
        self.updates = int(state["updates"])
