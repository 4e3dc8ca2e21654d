"""Demo-seeded SAC: the suite's SAC core (agents/sac.py) learning from a few demonstrations.

The demonstrations are used in three ways at once, as the methods that learn manipulation from a handful
of demos do:
  * as a policy prior: the actor is pre-trained by behaviour cloning (BC) on the demos' actions before any
    env step (MoDem, Hansen et al. 2023; IBRL, Hu et al. 2024), and the first `learning_starts` env steps
    are played by that BC policy plus Gaussian noise (`warmup_noise`) instead of uniform random actions;
  * as data: the demo transitions sit in a store of their own and make up `demo_ratio` of every batch
    (RLPD's symmetric sampling, Ball et al. 2023: 0.5), optionally annealed linearly to `demo_ratio_final`
    over `demo_ratio_steps` env steps (MoDem: 0.5 -> 0.25);
  * as a guard on the actor while the critic is still wrong: `critic_warmup` critic-only updates first
    (the critic learns the value of the BC policy before the actor follows it), then a BC term on the
    demo part of each batch, Q-filtered (Nair et al. 2018): it pulls pi's mean toward a demo action only
    where the critic rates that action above the actor's own, so it fades as the actor improves on the demos:
        L_pi = mean_batch [alpha log pi(a~|s) - min_i Q_i(s, a~)]
               + bc_weight * mean_demos [1{Q(s, a_demo) > Q(s, mu(s))} ||mu(s) - a_demo||^2]
    and optionally IBRL's proposal (`ibrl: true`): a frozen copy of the BC policy proposes an action next
    to the actor's, when acting and in the critic's target, and whichever has the higher Q is taken.
  * and, optionally (`promote_successes`), the agent's own successful episodes join the demos: each one
    that ends in success is copied into the demo store, so the demo share of every batch and the BC term
    also cover the new starts and goals it solved (self-imitation, Oh et al. 2018, with success as the
    filter). One demo covers one goal; these cover the goals the policy has already reached.
The critic (E heads with LayerNorm, a target over a random subset of 2, `utd` updates per env step, the
entropy term in the backup optional), the entropy tuning and the target update are SAC's own (sac.py).

Demo transitions get the reward the agent trains on: the training env's reward wrapper relabels them
(`demo_transitions` in rewards/demos.py: the sparse success flag, a potential-shaped learned reward, ...),
so demos and online data agree. A demo file without actions (observation-only) is refused here.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch

from robo_rl.agents.base import option
from robo_rl.agents.sac import SAC, squashed_gaussian
from robo_rl.replay import FIELDS, ReplayBuffer

BC_BATCH = 256
BC_MIN_STD = 0.05   # BC fits the policy's std too, floored here: a std of ~0 on one demo is not a policy to explore with


class DemoSAC(SAC):
    random_warmup = False   # the loop calls act() from the first step: the BC policy plus noise plays the warm-up

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__(observation_space, action_space, config, seed)
        c = self.config
        self.demos = c.get("demos")
        if not self.demos:
            raise ValueError("agent.demos: give a demo file with actions (robo-rl demos collect ... out=<file>)")
        self.demo_episodes = None if c.get("demo_episodes") is None else option(c, "demo_episodes", int, 1)
        self.demo_ratio = option(c, "demo_ratio", float, 0.5)
        final = c.get("demo_ratio_final")
        self.demo_ratio_final = self.demo_ratio if final is None else option(c, "demo_ratio_final", float, 0.5)
        self.demo_ratio_steps = option(c, "demo_ratio_steps", int, 0)
        self.bc_updates = option(c, "bc_updates", int, 2000)
        self.bc_learning_rate = option(c, "bc_learning_rate", float, 1e-3)
        self.bc_weight = option(c, "bc_weight", float, 1.0)
        self.warmup_noise = option(c, "warmup_noise", float, 0.1)
        self.critic_warmup = option(c, "critic_warmup", int, 0)
        self.ibrl = bool(c.get("ibrl", False))
        self.bc_filter = bool(c.get("bc_filter", True))
        self.promote_successes = bool(c.get("promote_successes", False))
        self.promoted = 0   # successful episodes of its own copied into the demo store
        for key, value in (("demo_ratio", self.demo_ratio), ("demo_ratio_final", self.demo_ratio_final)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"agent.{key} must be in [0, 1), got {value}")
        if self.demo_episodes is not None and self.demo_episodes < 1:
            raise ValueError(f"agent.demo_episodes must be >= 1 (or null: all), got {self.demo_episodes}")
        if min(self.bc_updates, self.critic_warmup, self.demo_ratio_steps) < 0 or self.warmup_noise < 0:
            raise ValueError("agent.bc_updates, critic_warmup, demo_ratio_steps and warmup_noise must be >= 0")
        self.demo_store: ReplayBuffer | None = None
        self.bc_actor = copy.deepcopy(self.actor).requires_grad_(False)  # the frozen BC policy (IBRL's proposer)
        self.noise_rng = np.random.default_rng(self.seed + 7)
        self._bc_metrics: dict[str, torch.Tensor] = {}

    # --- demonstrations -------------------------------------------------------------------------
    def prepare(self, env: gym.Env) -> None:
        """Before the first env step: the demos, relabeled by the training env's reward, and BC."""
        from robo_rl.rewards.demos import demo_transitions

        transitions = demo_transitions(env, self.demos, limit=self.demo_episodes)
        self.set_demonstrations(transitions)
        self.pretrain_bc()

    def set_demonstrations(self, transitions: Mapping[str, np.ndarray]) -> None:
        n = len(transitions["obs"])
        self.demo_store = ReplayBuffer(self.observation_space.shape, self.action_dim, n,
                                       obs_dtype=self.observation_space.dtype, seed=self.seed + 1)
        columns = [np.asarray(transitions[name]) for name in FIELDS]
        columns[2], columns[4] = columns[2].reshape(n), columns[4].reshape(n)   # rewards and flags: one per row
        for row in zip(*columns):
            self.demo_store.add(*row)

    def end_episode(self, replay: ReplayBuffer, length: int, success: bool | None) -> None:
        """With `promote_successes`: a successful episode (the last `length` rows added) joins the demos."""
        if not (self.promote_successes and success) or self.demo_store is None or length <= 0:
            return
        slots = (replay.pos - length + np.arange(length)) % replay.capacity
        store = self.demo_store
        if store.size + length > store.capacity:
            store.grow(max(2 * store.capacity, store.size + length))
        for i in slots:
            store.add(replay.obs[i], replay.action[i], float(replay.reward[i, 0]), replay.next_obs[i], bool(replay.terminated[i, 0]))
        self.promoted += 1

    def bc_loss(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """-log pi(a_demo|s) of the squashed Gaussian, its std floored at BC_MIN_STD (actions kept inside tanh's range)."""
        mean, log_std = self.actor.net(obs)[0].chunk(2, dim=-1)
        log_std = log_std.clamp(min=float(np.log(BC_MIN_STD)))
        action = action.clamp(-0.999, 0.999)
        pre_tanh = torch.atanh(action)
        noise = (pre_tanh - mean) / log_std.exp()
        log_prob = -0.5 * noise.pow(2) - log_std - torch.log1p(-action.pow(2) + 1e-6)
        return -log_prob.sum(-1).mean()

    def pretrain_bc(self) -> None:
        """BC of the actor on every demo transition; the result is also kept frozen as IBRL's proposer."""
        if self.demo_store is None or self.bc_updates == 0:
            return
        size = self.demo_store.size
        obs = torch.as_tensor(self.demo_store.obs[:size], dtype=torch.float32, device=self.device)
        action = torch.as_tensor(self.demo_store.action[:size], device=self.device)
        optimizer = torch.optim.Adam([self.actor_params.flat], lr=self.bc_learning_rate)
        for _ in range(self.bc_updates):
            idx = torch.randint(0, size, (min(BC_BATCH, size),), device=self.device)
            self.actor_params.zero_grad()
            self.bc_loss(obs[idx], action[idx]).backward()
            optimizer.step()
        self.bc_actor.load_state_dict(self.actor.state_dict())

    # --- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).view(1, -1)
        if not deterministic and self.updates == 0:   # the warm-up: the BC policy plus Gaussian noise
            action = self.bc_actor(obs_t, deterministic=True)[0][0].cpu().numpy()
            noise = self.warmup_noise * self.noise_rng.standard_normal(self.action_dim)
            return np.clip(action + noise, -1.0, 1.0).astype(np.float32)
        action, _ = self.actor(obs_t, deterministic=deterministic)
        if self.ibrl:
            proposal, _ = self.bc_actor(obs_t, deterministic=True)
            action = self.higher_q(obs_t, action, proposal)
        return action[0].cpu().numpy()

    def higher_q(self, obs: torch.Tensor, action: torch.Tensor, proposal: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Per sample, whichever of the two actions the critic (or its target, the same heads for both) values higher."""
        heads = self.target_heads() if target else None
        q_actor = self.q_min(obs, action, target=target, heads=heads)
        q_proposal = self.q_min(obs, proposal, target=target, heads=heads)
        return torch.where((q_proposal > q_actor).unsqueeze(-1), proposal, action)

    # --- learning -------------------------------------------------------------------------------
    def next_action(self, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, log_prob = self.actor(next_obs)
        if self.ibrl:   # IBRL's target: the BC proposal where the target critic prefers it (its log pi: the actor's own)
            proposal, _ = self.bc_actor(next_obs, deterministic=True)
            action = self.higher_q(next_obs, action, proposal, target=True)
        return action, log_prob

    def policy_loss(self, obs: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, log_prob = super().policy_loss(obs, alpha)
        demos = self._demos_in_batch
        if self.bc_weight > 0 and demos > 0:
            loss = loss + self.bc_weight * self.filtered_bc(obs[-demos:], self._last_batch["action"][-demos:])
        return loss, log_prob

    def filtered_bc(self, obs: torch.Tensor, demo_action: torch.Tensor) -> torch.Tensor:
        """||mu(s) - a_demo||^2 where Q(s, a_demo) > Q(s, mu(s)) (the Q filter), averaged over the demo samples."""
        mean, log_std = self.actor.net(obs)[0].chunk(2, dim=-1)
        policy_action, _ = squashed_gaussian(mean, log_std, deterministic=True)
        distance = (policy_action - demo_action).pow(2).sum(-1)
        with torch.no_grad():
            q_demo, q_policy = self.q_min(obs, demo_action), self.q_min(obs, policy_action)
            keep = (q_demo > q_policy).float() if self.bc_filter else torch.ones_like(q_demo)
        # what the critic thinks of the demos against the actor, on the demos' states (logged: unlearning shows here)
        self._bc_metrics = {"q_demo": q_demo.mean(), "q_policy_on_demos": q_policy.mean(), "bc_kept": keep.mean(),
                            "bc_distance": distance.detach().mean()}
        return (keep * distance).mean()

    def actor_and_temperature_step(self, obs: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        self._bc_metrics = {}
        metrics = super().actor_and_temperature_step(obs, alpha)
        return {**metrics, **self._bc_metrics}

    def current_demo_ratio(self) -> float:
        if self.demo_ratio_steps == 0:
            return self.demo_ratio
        frac = min(self.updates / self.demo_ratio_steps, 1.0)
        return self.demo_ratio + frac * (self.demo_ratio_final - self.demo_ratio)

    @property
    def _demos_in_batch(self) -> int:
        if self.demo_store is None or self.demo_store.size == 0:
            return 0
        return int(round(self.current_demo_ratio() * self.batch_size))

    def sample(self, replay: Any) -> dict[str, torch.Tensor]:
        """The online part from the replay store, the last `demo_ratio` of the batch from the demo store."""
        demos = self._demos_in_batch
        if self._batch is None:
            self._batch = replay.batch_buffers(self.batch_size)
            self._batch_tensors = {k: torch.from_numpy(v) for k, v in self._batch.items()}
        online = self.batch_size - demos
        replay.gather_into(replay.sample_indices(online), {k: v[:online] for k, v in self._batch.items()})
        if demos:
            self.demo_store.gather_into(self.demo_store.sample_indices(demos), {k: v[online:] for k, v in self._batch.items()})
        batch = self._batch_tensors
        if self.device.type != "cpu":
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self._last_batch = batch   # the BC term reads the demo actions of the batch being learned from
        return batch

    def train_step(self, replay: Any) -> dict[str, torch.Tensor]:
        if self.updates < self.critic_warmup:   # the critic alone first: it learns the BC policy's value
            for _ in range(self.utd):
                b = self.sample(replay)
                metrics = self.update(b["obs"].float(), b["action"], b["reward"].view(-1), b["next_obs"].float(),
                                      b["terminated"].view(-1), update_actor=False)
            self.updates += 1
            return metrics
        return super().train_step(replay)

    # --- checkpoints ----------------------------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        return {**super().networks(), "bc_actor": self.bc_actor}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["noise_rng"] = self.noise_rng.bit_generator.state
        state["promoted"] = self.promoted
        if self.demo_store is not None:
            state["demo_store"] = self.demo_store.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.noise_rng.bit_generator.state = state["noise_rng"]
        self.promoted = int(state.get("promoted", 0))
        if "demo_store" in state:
            stored = state["demo_store"]
            self.demo_store = ReplayBuffer(self.observation_space.shape, self.action_dim, int(stored["capacity"]),
                                           obs_dtype=self.observation_space.dtype, seed=self.seed + 1)
            self.demo_store.load_state_dict(stored)
