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

Choices the paper text available here did not settle (recorded in the docs, agents page): no gradient flows
through the model into earlier actions (predicted states are treated as inputs), the per-step terms
are averaged without discounting, and the model predicts state deltas with an MSE loss.

The SAC core is agents/sac.py's, one implementation: SRL subclasses it and keeps its twin critic
(one batched module), entropy tuning, target update, flat-buffer optimisers and update order;
it replaces the actor (the sequence actor), the bootstrap action and the actor's loss (temporal
recall), and adds the model's regression step. Temporal recall scores all J actions (or, with
`recall_positions` = k, k of them drawn at random per update: the critic's cost, which grows with J, is
then that of k, and the loss is the same in expectation) with one batched critic call: the GRU's inputs are its own previous actions, not the states, so the J
actions come first and the J model states after, and the critic sees the (J * B) pairs at once.

Inside the suite's one training loop the agent decides every J primitive steps: `act` returns the
next action of the current sequence and plans a new one when it runs out (or a new episode starts).
Every primitive transition goes into the replay store.
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robo_rl.agents.nets import BatchedMLP
from robo_rl.agents.base import option
from robo_rl.agents.sac import SAC, squashed_gaussian


class SequenceActor(nn.Module):
    """State -> GRU initial state; the GRU emits one tanh-Gaussian action per step."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], gru_hidden: int) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.encoder = BatchedMLP(1, obs_dim, hidden, gru_hidden)
        self.gru = nn.GRUCell(action_dim, gru_hidden)
        self.head = nn.Linear(gru_hidden, 2 * action_dim)

    def start(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The GRU's initial state from the observation, and the 'previous action' (zeros) it starts from."""
        previous = torch.zeros(obs.shape[0], self.action_dim, dtype=obs.dtype, device=obs.device)
        return torch.tanh(self.encoder(obs)[0]), previous

    def step(self, previous: torch.Tensor, h: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One position of the sequence: the new GRU state, the action and its log-probability."""
        h = self.gru(previous, h)
        mean, log_std = self.head(h).chunk(2, dim=-1)
        action, log_prob = squashed_gaussian(mean, log_std, deterministic)
        return h, action, log_prob

    def forward(self, obs: torch.Tensor, length: int, deterministic: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`length` actions (each (B, A)) and their log-probabilities (each (B,)) from one observation."""
        h, previous = self.start(obs)
        actions, log_probs = [], []
        for _ in range(length):
            h, action, log_prob = self.step(previous, h, deterministic)
            actions.append(action)
            log_probs.append(log_prob)
            previous = action.detach()
        return actions, log_probs


class DynamicsModel(nn.Module):
    """m(s, a) = s + f(s, a): the next primitive state."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.f = BatchedMLP(1, obs_dim + action_dim, hidden, obs_dim)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + self.f(torch.cat([obs, action], dim=-1))[0]


class SRL(SAC):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        self.sequence_length = option(config, "sequence_length", int, 4)
        if self.sequence_length < 1:
            raise ValueError(f"agent.sequence_length must be >= 1, got {self.sequence_length}")
        super().__init__(observation_space, action_space, config, seed)
        positions = self.config.get("recall_positions")
        self.recall_positions = self.sequence_length if positions is None else option(self.config, "recall_positions", int, 0)
        if self.recall_positions < 1:
            raise ValueError(f"agent.recall_positions must be >= 1 (or null: all J), got {self.recall_positions}")
        self.recall_split = option(self.config, "recall_split", bool, False)
        if self.recall_split and self.recall_positions < self.sequence_length:
            raise ValueError("agent.recall_split and agent.recall_positions are two ways of thinning the recall: "
                             f"set one (recall_positions={self.recall_positions} with recall_split=true)")
        self.model = DynamicsModel(self.obs_dim, self.action_dim,
                                   [int(h) for h in self.config.get("model_net_arch") or self.hidden]).to(self.device)
        self.model_params, self.model_opt = self.flat_adam(
            self.model, option(self.config, "model_learning_rate", float, self.learning_rate))
        self._queue: list[np.ndarray] = []

    # --- the pieces of SAC that SRL replaces -------------------------------------------------------
    def build_actor(self) -> nn.Module:
        return SequenceActor(self.obs_dim, self.action_dim, self.hidden, option(self.config, "gru_hidden", int, self.hidden[-1]))

    def next_action(self, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The critic is SAC's at the primitive time scale: it bootstraps with the sequence's first action."""
        actions, log_probs = self.actor(next_obs, 1)
        return actions[0], log_probs[0]

    def policy_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal recall: action j of the sequence is scored at the model's estimate of its state,
        s^_0 = s, s^_{j+1} = m(s^_j, a_j) (treated as inputs: no gradient through the model).
        Returns the loss, the mean over j of E[alpha log pi(a_j) - min Q(s^_j, a_j)], and the
        log-probabilities of all J actions (the entropy temperature is tuned per primitive action).
        With `recall_positions` = k < J the critic scores k positions drawn uniformly without replacement
        at each update: the same loss in expectation, at k/J of the critic's cost (the entropy term
        keeps all J actions, which cost nothing more)."""
        if self.recall_split:
            return self.split_recall_loss(obs, alpha)
        actions, log_probs = self.actor(obs, self.sequence_length)
        positions = self.recall_positions_now()
        states = [obs]
        with torch.no_grad():
            for action in actions[: positions[-1]]:
                states.append(self.model(states[-1], action))
        return self.recall_loss([states[j] for j in positions], [actions[j] for j in positions], log_probs, alpha)

    def recall_loss(self, states: list[torch.Tensor], actions: list[torch.Tensor], log_probs: list[torch.Tensor],
                    alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E[alpha log pi - min Q] over the scored (state, action) pairs, in one batched critic call with the
        critic's weights detached; and the log-probabilities for the entropy temperature."""
        log_prob = torch.cat(log_probs)
        q = self.q_min(torch.cat(states), torch.cat(actions), detach_weights=True)
        return alpha * log_prob.mean() - q.mean(), log_prob.detach()

    def split_recall_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal recall with each batch row scoring one position: the batch is cut into J blocks and
        block j is scored at position j. The batch rows are drawn at random from the replay store, so
        this is the full recall's loss in expectation (mean over j of E[alpha log pi(a_j) - min Q(s^_j, a_j)])
        with B/J samples per position instead of B. A row needs nothing past its own position, so the
        GRU and the model unroll on a shrinking suffix of the batch (about (J + 1) / 2 row-steps per row
        instead of J) and the critic scores B pairs at any J, as in SAC's actor update."""
        rows, length = obs.shape[0], self.sequence_length
        ends = [rows * (j + 1) // length for j in range(length)]   # block j: rows ends[j-1]:ends[j]
        h, previous = self.actor.start(obs)
        state, done = obs, 0
        scored_states, scored_actions, log_probs = [], [], []
        for j, end in enumerate(ends):
            finishing = end - done   # rows whose position is j
            h, action, log_prob = self.actor.step(previous, h)
            scored_states.append(state[:finishing])
            scored_actions.append(action[:finishing])
            log_probs.append(log_prob[:finishing])
            done = end
            if done == rows:
                break
            h, previous = h[finishing:], action[finishing:].detach()
            with torch.no_grad():   # predicted states are inputs, as in the full recall
                state = self.model(state[finishing:], previous)
        return self.recall_loss(scored_states, scored_actions, log_probs, alpha)

    def recall_positions_now(self) -> list[int]:
        """The sequence positions the critic scores in this update, in order (all J by default)."""
        if self.recall_positions >= self.sequence_length:
            return list(range(self.sequence_length))
        drawn = torch.randperm(self.sequence_length, device="cpu")[: self.recall_positions]
        return sorted(int(j) for j in drawn)

    def model_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One-step prediction error on real primitive transitions."""
        return F.mse_loss(self.model(batch["obs"].float(), batch["action"].float()), batch["next_obs"].float())

    def other_losses(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.model_loss(batch)
        self._step(loss, self.model_params, self.model_opt)
        return {"model_loss": loss.detach()}

    # --- acting -------------------------------------------------------------------------------------
    @torch.no_grad()
    def act_sequence(self, obs: np.ndarray, length: int, deterministic: bool = True) -> np.ndarray:
        """`length` primitive actions (length, A) in [-1, 1] from one observation."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).view(1, -1)
        actions, _ = self.actor(obs_t, int(length), deterministic=deterministic)
        return torch.stack(actions, dim=1)[0].cpu().numpy()

    def begin_episode(self) -> None:
        self._queue = []

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The next action of the current sequence; a new decision every `sequence_length` steps."""
        if not self._queue:
            self._queue = list(self.act_sequence(obs, self.sequence_length, deterministic))
        return self._queue.pop(0).astype(np.float32)

    # --- checkpoints -------------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return {**super().networks(), "model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "model_opt": self.model_opt}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._queue = []
