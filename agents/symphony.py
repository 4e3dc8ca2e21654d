"""Symphony: a heuristic normalised calibrated advantage actor and critic (Ishuov et al., 2025).

Faithful to the paper and its author's code (Symphony-S2, commit 824562b, root "S2" configuration),
readable top to bottom. The pieces, under their paper names:

  * Fading Replay Buffer - ages sampled with p ~ tanh((pi x)^pi) - 0.02 exp(-((x-1)/0.02)^2)
    (robo_rl.replay.FadingSampler); the buffer is filled by tiling the exploration data `times`
    times; a terminal transition about to be overwritten is kept (ReplayBuffer(keep_terminals)).
  * Bounded parametric noise - N = clip(n, -e, e)/e with n ~ N(0, 1), added *inside* the tanh next to
    the learned action scale S: a = tanh(S*A + N). The noise never exceeds 1 in magnitude.
  * Swaddling - Omega(S, B) = mean[2 atanh(S^(1/sg(B))) + B S ln S + 2 atanh(B^2)]: a penalty on
    action strength S (with learned temperature B) that never edits the actions themselves.
  * Temporal advantage - the target critic's value of the actor's next action, compared with its
    exponential moving average Q_ema: A = (Q_T - Q_ema)/|Q_ema|, maximised through ReHAE.
  * One-pass update - actor and critic live in one module and are trained by one summed loss,
    L = -ReHAE(A) + ReHSE(Q(s,a) - y) + Omega, with y = r/r_mean + gamma (1 - terminal) sg(Q_T).
  * Critic - 3 heads (qA, qB, qC) of h/4 outputs each; the target value is the sorted outputs
    weighted by fixed decreasing weights (a soft, TQC-like truncation of over-estimates).
  * Networks - Linear -> LayerNorm -> Linear -> ReSine -> Linear -> GradientDropout(p), with
    ReSine(x) = f(x) sigmoid(1.5 f(x)/s), f(x) = s sin(x/s), s = sigmoid(learned).
  * Optimiser - Adam without bias correction, betas (0.618, 0.995), decoupled weight decay 0.01; only
    the critic heads are Polyak-averaged into the target (tau = 0.005); there is no target actor.
  * Near the time limit (the last 50 steps) the A-term is switched off, a = tanh(N), which provokes
    falls so that terminal transitions are collected.

Where we differ from the author's code, on purpose: the three critic heads run as one batched matmul
(same maths, faster); the buffer is a ring with ages mapped to the same probabilities instead of
rolling every array each step (same transitions in the same order, tested); the optimiser and the
Polyak update act on one flat parameter buffer (same update, a few ops instead of a few per tensor);
`compile: true` runs the loss through torch.compile (same maths, fused element-wise ops); a fresh
batch is drawn for each of the G updates, as the code does (the paper's pseudocode samples once); the
code reseeds every RNG with fresh random seeds at every
step, which makes runs irreproducible - we seed once; |Q_ema| is floored at 1e-6 to avoid a division
by zero early in training (the code does not guard).
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
from robo_rl.agents.nets import flatten_parameters, resolve_device
from robo_rl.replay import FadingSampler, ReplayBuffer, fading_weights

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618: Adam's beta1 and the EMA factor alpha


# ---------------------------------------------------------------------------------------------
# Losses and regularisers
# ---------------------------------------------------------------------------------------------
def rehse(error: torch.Tensor) -> torch.Tensor:
    """Rectified Huber symmetric error: mean(e * tanh(e/2)) - quadratic near 0, linear far away."""
    return (error * torch.tanh(error / 2)).mean()


def rehae(error: torch.Tensor) -> torch.Tensor:
    """Rectified Huber asymmetric error: mean(|e| * tanh(e/2)) - odd, so it keeps the sign."""
    return (error.abs() * torch.tanh(error / 2)).mean()


def swaddling(scale: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Omega(S, B): barrier terms that keep the action scale S and its temperature B inside (0, 1)."""

    def barrier(u: torch.Tensor) -> torch.Tensor:  # ln((1+u)/(1-u)) = 2 atanh(u)
        return torch.log((1 + u) / (1 - u))

    return (barrier(scale ** (1 / beta.detach())) + beta * scale * torch.log(scale) + barrier(beta**2)).mean()


def bounded_noise(like: torch.Tensor, std: float = 1 / math.e, clip: float = math.e) -> torch.Tensor:
    """std * clip(n, -clip, clip), n ~ N(0, 1): with the defaults, |noise| <= 1 always."""
    return std * torch.randn_like(like).clamp(-clip, clip)


def critic_weights(nodes: int) -> torch.Tensor:
    """S2's fixed weights over the sorted critic outputs: tanh((pi (1-x))^pi) - 0.02 exp(-(x/0.02)^2)."""
    x = torch.arange(nodes, dtype=torch.float64) / nodes
    w = torch.tanh((math.pi * (1 - x)) ** math.pi) - 0.02 * torch.exp(-((x / 0.02) ** 2))
    return (w / w.sum()).float()


# ---------------------------------------------------------------------------------------------
# Networks: K independent MLPs ("heads") evaluated as batched matmuls
# ---------------------------------------------------------------------------------------------
class ReSine(nn.Module):
    def __init__(self, heads: int, hidden: int) -> None:
        super().__init__()
        k = 1 / math.sqrt(hidden)
        self.s = nn.Parameter(torch.empty(heads, 1, hidden).uniform_(-k, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.s)
        f = s * torch.sin(x / s)
        return f * torch.sigmoid(1.5 * f / s)


def gradient_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Forward value unchanged; the gradient is stopped on a random fraction p of the entries."""
    if p <= 0 or not torch.is_grad_enabled():
        return x
    keep = (torch.rand_like(x) > p).to(x.dtype)
    detached = x.detach()
    return detached + keep * (x - detached)


class HeadsMLP(nn.Module):
    """`heads` MLPs Linear -> LayerNorm -> Linear -> ReSine -> Linear -> GradientDropout sharing one input.

    Weights are stacked per layer, so the heads cost one batched matmul per layer. Initialisation
    matches torch.nn.Linear (uniform +-1/sqrt(fan_in) for weights and biases).
    """

    def __init__(self, heads: int, inputs: int, hidden: int, outputs: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.hidden, self.outputs, self.dropout = heads, hidden, outputs, dropout

        def uniform(*shape: int, fan_in: int) -> nn.Parameter:
            bound = 1 / math.sqrt(fan_in)
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.w1, self.b1 = uniform(inputs, heads * hidden, fan_in=inputs), uniform(heads * hidden, fan_in=inputs)
        self.ln_weight = nn.Parameter(torch.ones(heads, 1, hidden))
        self.ln_bias = nn.Parameter(torch.zeros(heads, 1, hidden))
        self.w2, self.b2 = uniform(heads, hidden, hidden, fan_in=hidden), uniform(heads, 1, hidden, fan_in=hidden)
        self.resine = ReSine(heads, hidden)
        self.w3, self.b3 = uniform(heads, hidden, outputs, fan_in=hidden), uniform(heads, 1, outputs, fan_in=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, inputs) -> (B, heads * outputs), heads concatenated in order."""
        batch = x.shape[0]
        h = torch.addmm(self.b1, x, self.w1).view(batch, self.heads, self.hidden).transpose(0, 1)
        h = nn.functional.layer_norm(h, (self.hidden,)) * self.ln_weight + self.ln_bias
        h = self.resine(torch.baddbmm(self.b2, h, self.w2))
        out = torch.baddbmm(self.b3, h, self.w3)  # (heads, B, outputs)
        out = gradient_dropout(out, self.dropout)
        return out.transpose(0, 1).reshape(batch, self.heads * self.outputs)


class ActorCritic(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, hidden: int, critic_heads: int, dropout: float) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.actor_net = HeadsMLP(1, obs_dim, hidden, 3 * action_dim, dropout)
        self.critic_net = HeadsMLP(critic_heads, obs_dim + action_dim, hidden, hidden // 4, dropout)
        self.register_buffer("q_weights", critic_weights(critic_heads * (hidden // 4)))

    def actor(self, obs: torch.Tensor, active: bool = True, noise: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Action a = tanh(S*A + N) in [-1, 1], the action scale S and the swaddling temperature B."""
        asb = torch.tanh(self.actor_net(obs) / 2).view(-1, 3, self.action_dim)
        a_term, scale, beta = asb[:, 0], asb[:, 1].abs(), asb[:, 2].abs()
        pre = scale * a_term if active else torch.zeros_like(a_term)
        if noise:
            pre = pre + bounded_noise(a_term)
        return torch.tanh(pre), scale.clamp(1e-3, 1 - 1e-3), beta.clamp(1e-3, 1 - 1e-3)

    def critic(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic_net(torch.cat([obs, action], dim=-1))

    def critic_soft(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Sorted critic outputs, weighted: (B, 1)."""
        q = self.critic(obs, action).sort(dim=-1).values
        return q @ self.q_weights.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------
# Optimiser: the paper's Adam, on one flat parameter buffer
# ---------------------------------------------------------------------------------------------
class SymphonyAdam:
    """The paper's Adam on a flat parameter buffer:
    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p <- p - lr (m/(sqrt(v)+eps) + wd p). No bias correction."""

    def __init__(self, flat: torch.Tensor, flat_grad: torch.Tensor, lr: float,
                 betas: tuple[float, float] = (GOLDEN, 0.995), weight_decay: float = 0.01, eps: float = 1e-8) -> None:
        self.flat, self.flat_grad = flat, flat_grad
        self.lr, self.betas, self.weight_decay, self.eps = lr, betas, weight_decay, eps
        self.m = torch.zeros_like(flat)
        self.v = torch.zeros_like(flat)
        self._denom = torch.empty_like(flat)

    def zero_grad(self) -> None:
        self.flat_grad.zero_()  # parameters' .grad are views: backward accumulates into them

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        g = self.flat_grad
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        torch.sqrt(self.v, out=self._denom).add_(self.eps)
        self.flat.mul_(1 - self.lr * self.weight_decay).addcdiv_(self.m, self._denom, value=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"m": self.m, "v": self.v}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.m.copy_(state["m"])
        self.v.copy_(state["v"])


# ---------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------
class Symphony(Agent):
    random_warmup = False  # exploration uses the untrained actor plus noise, never uniform actions

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__(observation_space, action_space, config, seed)
        c = self.config
        self.hidden = option(c, "hidden", int, 512)
        self.critic_heads = option(c, "critic_heads", int, 3)
        self.batch_size = option(c, "batch_size", int, self.critic_heads * (self.hidden // 4))
        self.updates_per_step = option(c, "updates_per_step", int, 3)
        self.explore_steps = option(c, "explore_steps", int, 20480)
        self.times = option(c, "times", int, 25)
        self.gamma = option(c, "gamma", float, 0.99)
        self.tau = option(c, "tau", float, 0.005)
        self.ema_alpha = option(c, "ema_alpha", float, GOLDEN)
        self.quiet_steps = option(c, "quiet_steps", int, 50)  # A-term off this close to the time limit
        # exploration: 1/mean|r| of the exploration data, fixed (the paper); buffer: recomputed over the
        # whole buffer at every training step (a departure from the paper, for rewards that grow a lot).
        self.reward_normaliser = option(c, "reward_normaliser", str, "exploration")
        if self.reward_normaliser not in ("exploration", "buffer"):
            raise ValueError(f"agent.reward_normaliser must be exploration or buffer, got '{self.reward_normaliser}'")
        self.learning_starts = self.explore_steps
        self.replay_size = self.explore_steps * self.times
        if len(observation_space.shape) != 1:
            raise ValueError(f"Symphony takes flat state observations, got shape {observation_space.shape} "
                             "(pixel observations need an encoder)")
        if self.hidden % 4 or self.hidden < 8:
            raise ValueError(f"agent.hidden must be a multiple of 4 (>= 8), got {self.hidden}")

        self.device = resolve_device(str(c.get("device", "cpu")))

        torch.manual_seed(self.seed)
        obs_dim = int(np.prod(observation_space.shape))
        dropout = option(c, "gradient_dropout", float, 0.7)
        # Built on the CPU, then moved: the same seed gives the same initial weights on any device.
        self.nets = ActorCritic(obs_dim, self.action_dim, self.hidden, self.critic_heads, dropout).to(self.device)
        # Critic parameters first, so that they form one contiguous slice of the flat buffer.
        critic_params = list(self.nets.critic_net.parameters())
        params = critic_params + list(self.nets.actor_net.parameters())
        self.flat_params, flat_grads = flatten_parameters(params)
        self.critic_slice = self.flat_params[: sum(p.numel() for p in critic_params)]
        self.target_critic = copy.deepcopy(self.nets.critic_net).requires_grad_(False)
        self.target_flat, _ = flatten_parameters(list(self.target_critic.parameters()))
        for p in self.target_critic.parameters():
            p.grad = None
        self.optimizer = SymphonyAdam(self.flat_params, flat_grads, lr=option(c, "learning_rate", float, 5e-5),
                                      weight_decay=option(c, "weight_decay", float, 0.01))
        self.sampler = FadingSampler()
        # torch.compile fuses the many small element-wise ops (ReSine, LayerNorm, gradient dropout)
        # of forward and backward; it pays off only for runs long enough to amortise compiling.
        self._loss_fn = torch.compile(self._one_pass_loss) if c.get("compile", False) else self._one_pass_loss
        self.q_ema = torch.zeros((), device=self.device)  # scalar: the batch mean of the last per-sample EMA
        self.reward_scale = 1.0  # 1 / mean|r| over the exploration data, fixed once training starts
        self.filled = False  # exploration data tiled into the buffer yet?
        self.active = True  # A-term on (off in the last `quiet_steps` of an episode)
        self.updates = 0

    # --- acting -------------------------------------------------------------------------------
    def set_episode_clock(self, step_in_episode: int, limit: int | None) -> None:
        near_end = limit is not None and step_in_episode >= limit - self.quiet_steps - 1
        self.active = not (self.filled and near_end)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs_t = torch.as_tensor(obs, dtype=torch.float32).view(1, -1).to(self.device)
        action, _, _ = self.nets.actor(obs_t, active=self.active or deterministic, noise=not deterministic)
        return action[0].cpu().numpy()

    # --- learning -----------------------------------------------------------------------------
    def make_replay(self, total_steps: int, seed: int) -> ReplayBuffer:
        space = self.observation_space
        return ReplayBuffer(space.shape, self.action_dim, self.replay_size, obs_dtype=space.dtype, seed=seed,
                            keep_terminals=True)

    def _fill(self, replay: ReplayBuffer) -> None:
        """After exploration: tile the data to fill the buffer, and fix the reward normaliser."""
        replay.tile(max(1, replay.capacity // replay.size))
        self._normalise_rewards(replay)
        self.filled = True

    def _normalise_rewards(self, replay: ReplayBuffer) -> None:
        mean_abs = float(np.abs(replay.reward[: replay.size]).mean())
        self.reward_scale = 1.0 / mean_abs if mean_abs > 0 else 1.0

    def post_exploration_share(self, step: int) -> float:
        """The expected share of sampled transitions collected after exploration, at env step `step`.

        From the end of exploration the buffer is full (tiled copies), and each env step replaces its
        oldest entry: the newest step - explore_steps entries are post-exploration data, and the fading
        weights give the newest k of n entries a share of 1 - cdf(n - 1 - k)."""
        fresh = min(max(step - self.explore_steps, 0), self.replay_size)
        if fresh == 0:
            return 0.0
        cdf = np.cumsum(fading_weights(self.replay_size))
        return float(1.0 - cdf[self.replay_size - 1 - fresh]) if fresh < self.replay_size else 1.0

    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The one-pass loss on a batch (obs, action, reward, next_obs, terminated); updates Q_ema."""
        loss, q_ema, metrics = self._loss_fn(batch["obs"].float(), batch["action"], batch["reward"],
                                             batch["next_obs"].float(), batch["terminated"], self.q_ema)
        self.q_ema = q_ema
        return loss, metrics

    def _one_pass_loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
                       terminated: torch.Tensor, q_ema_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        reward = reward * self.reward_scale
        not_done_gamma = self.gamma * (1.0 - terminated)

        next_action, next_scale, next_beta = self.nets.actor(next_obs)
        q_next = self._target_soft(next_obs, next_action)  # gradient flows into the actor
        q_next_value = q_next.detach()
        q_target = reward + not_done_gamma * q_next_value
        q_pred = self.nets.critic(obs, action)  # (B, nodes), every node regressed to q_target

        q_ema = self.ema_alpha * q_ema_prev + (1 - self.ema_alpha) * q_next_value  # per sample
        advantage = (q_next - q_ema) / q_ema.abs().clamp_min(1e-6)
        critic_loss = rehse(q_pred - q_target)
        actor_objective = rehae(advantage)
        swaddle = swaddling(next_scale, next_beta)
        metrics = {"critic_loss": critic_loss, "advantage": actor_objective, "swaddling": swaddle,
                   "q_ema": q_ema.mean(), "action_scale": next_scale.mean()}
        return -actor_objective + critic_loss + swaddle, q_ema.mean().detach(), metrics

    def _target_soft(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q = self.target_critic(torch.cat([obs, action], dim=-1)).sort(dim=-1).values
        return q @ self.nets.q_weights.unsqueeze(-1)

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.optimizer.zero_grad()
        loss, metrics = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():  # Polyak-average the critic heads only; there is no target actor
            self.target_flat.lerp_(self.critic_slice, self.tau)
        self.updates += 1
        return metrics

    def train_step(self, replay: ReplayBuffer) -> dict[str, float]:
        if not self.filled:
            self._fill(replay)
        elif self.reward_normaliser == "buffer":
            self._normalise_rewards(replay)
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(self.updates_per_step):
            batch = replay.gather(self.sampler.indices(replay, self.batch_size))
            if self.device.type != "cpu":
                batch = {name: value.to(self.device, non_blocking=True) for name, value in batch.items()}
            metrics = self.update(batch)
        return {k: float(v.detach()) for k, v in metrics.items()}

    # --- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": self.nets.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "q_ema": self.q_ema.detach().clone(),
            "reward_scale": self.reward_scale,
            "filled": self.filled,
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.nets.load_state_dict(state["nets"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.q_ema = torch.as_tensor(state["q_ema"]).clone().to(self.device)
        self.reward_scale = float(state["reward_scale"])
        self.filled = bool(state["filled"])
        self.updates = int(state["updates"])
