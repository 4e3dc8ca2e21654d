"""Sequence Reinforcement Learning (SRL): act at a slow decision rate with sequences of actions.

After Patel & Siegelmann, "Overcoming Slow Decision Frequencies in Continuous Control: Model-Based
Sequence Reinforcement Learning for Model-Free Control" (ICLR 2025, arXiv 2410.08979). SAC-based:

- Actor: an encoder turns the observed state into the initial state of a GRU, which is unrolled
  J steps; each step emits a tanh-Gaussian primitive action (its previous action is the GRU's
  input). One decision = one observation -> J actions, played open loop.
- Model m(s, a) -> s': an MLP predicting the change of state, trained by regression on real
  primitive transitions.
- Critic: SAC's twin Q at the primitive time scale, trained on real primitive transitions only;
  its bootstrap action is the first action of the sequence the actor emits from s'.
- Temporal recall (the actor's loss): s^_0 = s, s^_{j+1} = m(s^_j, a_j); every action a_j of the
  sequence is scored by the critic at its own (predicted) state:
      L_pi = (1/J) sum_j E[ alpha * log pi(a_j) - min(Q1, Q2)(s^_j, a_j) ]
  with one entropy temperature alpha tuned toward -|A| per primitive action.
- After training only the actor is needed: model-free control at 1/J of the env's rate; the GRU
  unrolls to any length, so the policy can be played at other decision intervals too (FAS).

Choices the paper text available here did not settle (recorded in the README): no gradient flows
through the model into earlier actions (predicted states are treated as inputs), the per-step terms
are averaged without discounting, and the model predicts state deltas with an MSE loss.

Inside the suite's one training loop the agent decides every J primitive steps: `act` returns the
next action of the current sequence and plans a new one when it runs out (or a new episode starts).
Every primitive transition goes into the replay store.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robo_rl.agents.base import Agent

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class SequenceActor(nn.Module):
    """State -> GRU initial state; the GRU emits one tanh-Gaussian action per step."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int, gru_hidden: int) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.encoder = nn.Sequential(mlp(obs_dim, hidden, gru_hidden), nn.Tanh())
        self.gru = nn.GRUCell(action_dim, gru_hidden)
        self.head = nn.Linear(gru_hidden, 2 * action_dim)

    def forward(self, obs: torch.Tensor, length: int, deterministic: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`length` actions (each (B, A)) and their log-probabilities (each (B,)) from one observation."""
        h = self.encoder(obs)
        previous = torch.zeros(obs.shape[0], self.action_dim, dtype=obs.dtype)
        actions, log_probs = [], []
        for _ in range(length):
            h = self.gru(previous, h)
            mean, log_std = self.head(h).chunk(2, dim=-1)
            log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
            if deterministic:
                pre_tanh = mean
            else:
                pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
            action = torch.tanh(pre_tanh)
            # log N(pre_tanh; mean, std) minus the tanh change of variables, summed over action dims
            gauss = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
            log_probs.append((gauss - torch.log1p(-action.pow(2) + 1e-6)).sum(-1))
            actions.append(action)
            previous = action.detach()
        return actions, log_probs


class TwinCritic(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1, self.q2 = mlp(obs_dim + action_dim, hidden, 1), mlp(obs_dim + action_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x), self.q2(x)


class DynamicsModel(nn.Module):
    """m(s, a) = s + f(s, a): the next primitive state."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.f = mlp(obs_dim + action_dim, hidden, obs_dim)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + self.f(torch.cat([obs, action], dim=-1))


class SRL(Agent):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__(observation_space, action_space, config, seed)
        c = self.config
        obs_dim = int(np.prod(self.observation_space.shape))
        if len(self.observation_space.shape) != 1:
            raise ValueError(f"SRL needs flat state observations, got shape {self.observation_space.shape}")
        self.sequence_length = int(c.get("sequence_length", 4))
        if self.sequence_length < 1:
            raise ValueError(f"agent.sequence_length must be >= 1, got {self.sequence_length}")
        hidden = int(c.get("hidden", 256))
        self.batch_size = int(c.get("batch_size", 256))
        self.gamma, self.tau = float(c.get("gamma", 0.99)), float(c.get("tau", 0.005))
        lr = float(c.get("learning_rate", 3e-4))
        torch.manual_seed(self.seed)
        self.actor = SequenceActor(obs_dim, self.action_dim, hidden, int(c.get("gru_hidden", hidden)))
        self.critic = TwinCritic(obs_dim, self.action_dim, hidden)
        self.target_critic = TwinCritic(obs_dim, self.action_dim, hidden)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.model = DynamicsModel(obs_dim, self.action_dim, int(c.get("model_hidden", hidden)))
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.target_entropy = -float(self.action_dim)   # per primitive action
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.model_opt = torch.optim.Adam(self.model.parameters(), lr=float(c.get("model_learning_rate", lr)))
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.updates = 0
        self._queue: list[np.ndarray] = []

    # --- acting -------------------------------------------------------------------------------------
    @torch.no_grad()
    def act_sequence(self, obs: np.ndarray, length: int, deterministic: bool = True) -> np.ndarray:
        """`length` primitive actions (length, A) in [-1, 1] from one observation."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32).view(1, -1)
        actions, _ = self.actor(obs_t, int(length), deterministic=deterministic)
        return torch.stack(actions, dim=1)[0].numpy()

    def begin_episode(self) -> None:
        self._queue = []

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The next action of the current sequence; a new decision every `sequence_length` steps."""
        if not self._queue:
            self._queue = list(self.act_sequence(obs, self.sequence_length, deterministic))
        return self._queue.pop(0).astype(np.float32)

    # --- learning -----------------------------------------------------------------------------------
    def model_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One-step prediction error on real primitive transitions."""
        return F.mse_loss(self.model(batch["obs"].float(), batch["action"].float()), batch["next_obs"].float())

    def critic_loss(self, batch: Mapping[str, torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        obs, next_obs = batch["obs"].float(), batch["next_obs"].float()
        with torch.no_grad():
            next_actions, next_log_probs = self.actor(next_obs, 1)
            q1_t, q2_t = self.target_critic(next_obs, next_actions[0])
            soft_value = torch.min(q1_t, q2_t) - alpha * next_log_probs[0].unsqueeze(-1)
            target = batch["reward"].float() + self.gamma * (1.0 - batch["terminated"].float()) * soft_value
        q1, q2 = self.critic(obs, batch["action"].float())
        return F.mse_loss(q1, target) + F.mse_loss(q2, target)

    def actor_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal recall: every action of the sequence is scored at the model's estimate of its
        state. Returns the loss and the mean log-probability per primitive action."""
        actions, log_probs = self.actor(obs, self.sequence_length)
        state, terms = obs, []
        for a_j, logp_j in zip(actions, log_probs):
            q1_j, q2_j = self.critic(state, a_j)
            terms.append((alpha * logp_j - torch.min(q1_j, q2_j).squeeze(-1)).mean())
            with torch.no_grad():
                state = self.model(state, a_j)
        return torch.stack(terms).mean(), torch.stack(log_probs).mean().detach()

    def train_step(self, replay: Any) -> dict[str, float]:
        batch = replay.sample(self.batch_size)
        alpha = self.log_alpha.exp().detach()
        model_loss = self.model_loss(batch)
        self.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        self.model_opt.step()
        critic_loss = self.critic_loss(batch, alpha)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.critic.requires_grad_(False)   # the actor's loss moves the actor only
        actor_loss, mean_log_prob = self.actor_loss(batch["obs"].float(), alpha)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.critic.requires_grad_(True)
        alpha_loss = -(self.log_alpha * (mean_log_prob + self.target_entropy)).squeeze()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target_critic.parameters()):
                tp.lerp_(p, self.tau)
        self.updates += 1
        return {"model_loss": model_loss.item(), "critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "alpha": float(alpha)}

    # --- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(), "model": self.model.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "model_opt": self.model_opt.state_dict(), "alpha_opt": self.alpha_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in ("actor", "critic", "target_critic", "model"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(torch.as_tensor(state["log_alpha"]))
        for name in ("actor_opt", "critic_opt", "model_opt", "alpha_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.updates = int(state["updates"])
        self._queue = []
