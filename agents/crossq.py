"""CrossQ (Bhatt, Palenicek, Belousov, Argus, Amiranashvili, Brox, Peters; ICLR 2024, arXiv 1902.05605),
on the suite's SAC core: SAC without target networks, made stable by batch normalisation.

What differs from SAC (agents/sac.py), following the paper and its official code (adityab/CrossQ):
  * BatchRenorm (Ioffe 2017) in the critic and in the actor, before every linear layer: on the input and
    on every hidden layer's output after its ReLU (BRN -> Linear -> ReLU -> BRN -> Linear -> ...);
  * no target network: the bootstrap value comes from the critic itself, in ONE joint forward pass of
    [(s, a); (s', a')] in training mode, so the normalisation statistics see both distributions (the
    method does not work with separate passes), the next-state half under a stop-gradient:
        y = r + gamma (1 - terminated) [min_i Q_i(s', a') - alpha log pi(a'|s')],  a' ~ pi(.|s') (eval mode)
  * the actor's loss sees the critic in eval mode (running statistics), as the official code does;
  * Adam with beta1 = 0.5, learning rate 1e-3, the actor and temperature updated every `policy_delay` = 3
    critic updates, 5000 random steps; critic 2 x [width, width] with `critic_width` (the paper's 2048).
Departures, each measured (configs/agent/crossq.yaml): critic width 256 by default, and the temperature's Adam
at beta1 = 0.5 as well (`temperature_beta1`; the official code and sb3-contrib keep Adam's default 0.9 there).
Train/eval: every network stays in eval mode (running statistics: acting, evaluation, the next action
of the target) except inside its own update.

BatchRenorm follows the official code: statistics over the batch, running mean and variance with
momentum 0.99, and for the first `renorm_warmup` steps (r, d) = (1, 0), i.e. plain batch normalisation;
after it r = clip(sigma_B / sigma, 1/r_max, r_max) and d = clip((mu_B - mu) / sigma, -d_max, d_max)
(r_max 3, d_max 5), both without gradient. Its default warm-up, 100k steps, covers a whole 100k run,
as in the official code and sb3-contrib; `agent.renorm_warmup` changes it.
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import torch
from torch import nn

from robo_rl.agents.base import option
from robo_rl.agents.nets import _uniform
from robo_rl.agents.sac import SAC, squashed_gaussian


class _Renorm(torch.autograd.Function):
    """BatchRenorm's training-mode affine, y = (x - mu_B) * (w r / sigma_B) + (w d + b), with r and d constants,
    and its gradient in closed form (as batch norm's): three passes over the (heads, B, features) activations
    each way, where autograd through the mean and the variance took about ten."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, layer: "BatchRenorm") -> torch.Tensor:
        mean = x.mean(dim=-2, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=-2, keepdim=True)   # biased, as the official code
        inv_std = torch.rsqrt(var + layer.eps)
        r, d = layer.renorm_factors(mean, var)
        ctx.save_for_backward(centred, inv_std, weight, r, d)
        return torch.addcmul(weight * d + bias, centred, weight * r * inv_std)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        centred, inv_std, weight, r, d = ctx.saved_tensors
        n = grad.shape[-2]
        grad_sum = grad.sum(dim=-2, keepdim=True)
        grad_dot = (grad * centred).sum(dim=-2, keepdim=True)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # d/dx of normalising by the batch's own mean and variance: scale * (g - mean(g) - x_hat mean(g x_hat))
            scale = weight * r * inv_std
            grad_x = torch.addcmul(-scale * grad_sum / n, grad, scale)
            grad_x.addcmul_(centred, -scale * inv_std * inv_std * grad_dot / n)
        if ctx.needs_input_grad[1]:
            grad_weight = r * inv_std * grad_dot + d * grad_sum
        return grad_x, grad_weight, grad_sum if ctx.needs_input_grad[2] else None, None


class BatchRenorm(nn.Module):
    """Batch renormalisation over dim -2 of (heads, B, features) inputs, per head and feature."""

    def __init__(self, heads: int, features: int, momentum: float = 0.99, eps: float = 1e-3, warmup: int = 100_000,
                 r_max: float = 3.0, d_max: float = 5.0) -> None:
        super().__init__()
        self.momentum, self.eps, self.warmup, self.r_max, self.d_max = momentum, eps, warmup, r_max, d_max
        self.weight = nn.Parameter(torch.ones(heads, 1, features))
        self.bias = nn.Parameter(torch.zeros(heads, 1, features))
        self.register_buffer("running_mean", torch.zeros(heads, 1, features))
        self.register_buffer("running_var", torch.ones(heads, 1, features))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        weight, bias = (self.weight.detach(), self.bias.detach()) if detach_weights else (self.weight, self.bias)
        if not self.training:
            scale = weight * torch.rsqrt(self.running_var + self.eps)
            return torch.addcmul(bias - self.running_mean * scale, x, scale)
        return _Renorm.apply(x, weight, bias, self)

    @torch.no_grad()
    def renorm_factors(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, d) for this batch (constants: no gradient), then the running statistics take it in."""
        running_std = torch.sqrt(self.running_var + self.eps)
        # (r, d) = (1, 0) during the warm-up: arithmetic on the step counter keeps this free of host syncs
        on = (self.steps >= self.warmup).to(mean.dtype)
        r = 1 + on * ((torch.sqrt(var + self.eps) / running_std).clamp(1 / self.r_max, self.r_max) - 1)
        d = on * ((mean - self.running_mean) / running_std).clamp(-self.d_max, self.d_max)
        self.running_mean.lerp_(mean, 1 - self.momentum)
        self.running_var.lerp_(var, 1 - self.momentum)
        self.steps += 1
        return r, d


class BRNMLP(nn.Module):
    """`heads` MLPs with stacked weights (as nets.BatchedMLP): BatchRenorm before every matmul (on the input
    and on every hidden ReLU's output), no normalisation after the last."""

    def __init__(self, heads: int, inputs: int, hidden: list[int], outputs: int, **renorm: Any) -> None:
        super().__init__()
        self.heads = heads
        sizes = [inputs, *hidden, outputs]
        self.weights = nn.ParameterList(_uniform(heads, a, b, fan_in=a) for a, b in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(_uniform(heads, 1, b, fan_in=a) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(BatchRenorm(heads, n, **renorm) for n in sizes[:-1])

    def forward(self, x: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        h = x.expand(self.heads, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b, norm) in enumerate(zip(self.weights, self.biases, self.norms)):
            h = norm(h, detach_weights)
            if detach_weights:
                w, b = w.detach(), b.detach()
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = h.relu()
        return h


class BRNActor(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], **renorm: Any) -> None:
        super().__init__()
        self.net = BRNMLP(1, obs_dim, hidden, 2 * action_dim, **renorm)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs)[0].chunk(2, dim=-1)
        return squashed_gaussian(mean, log_std, deterministic)


class CrossQ(SAC):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        c = dict(config)
        self.critic_width = option(c, "critic_width", int, 2048)
        self.policy_delay = option(c, "policy_delay", int, 3)
        self.beta1 = option(c, "adam_beta1", float, 0.5)
        self.temperature_beta1 = option(c, "temperature_beta1", float, 0.5)
        self.renorm = {"momentum": option(c, "renorm_momentum", float, 0.99), "warmup": option(c, "renorm_warmup", int, 100_000)}
        for key, value, valid, rule in (("critic_width", self.critic_width, self.critic_width >= 1, ">= 1"),
                                        ("policy_delay", self.policy_delay, self.policy_delay >= 1, ">= 1"),
                                        ("adam_beta1", self.beta1, 0 <= self.beta1 < 1, "in [0, 1)"),
                                        ("temperature_beta1", self.temperature_beta1, 0 <= self.temperature_beta1 < 1, "in [0, 1)")):
            if not valid:   # one line naming the bad key and its value
                raise ValueError(f"agent.{key} must be {rule}, got {value}")
        super().__init__(observation_space, action_space, c, seed)
        self.actor.eval()
        self.critic.eval()

    # --- the pieces that differ from SAC ----------------------------------------------------------
    def build_actor(self) -> nn.Module:
        return BRNActor(self.obs_dim, self.action_dim, self.hidden, **self.renorm)

    def build_critic(self) -> nn.Module:
        return BRNMLP(self.n_critics, self.obs_dim + self.action_dim, [self.critic_width] * 2, 1, **self.renorm)

    def build_target(self) -> None:
        return None

    @staticmethod
    def flat_adam(module: nn.Module, lr: float, beta1: float = 0.5) -> tuple[Any, torch.optim.Optimizer]:
        from robo_rl.agents.nets import FlatParameters

        params = FlatParameters(list(module.parameters()))
        return params, torch.optim.Adam([params.flat], lr=lr, betas=(beta1, 0.999), fused=True)

    def build_optimizers(self) -> None:
        self.actor_params, self.actor_opt = self.flat_adam(self.actor, self.learning_rate, self.beta1)
        self.critic_params, self.critic_opt = self.flat_adam(self.critic, self.learning_rate, self.beta1)
        self.target_params = None
        self.log_alpha.grad = torch.zeros_like(self.log_alpha)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=self.learning_rate, betas=(self.temperature_beta1, 0.999),
                                          fused=True)

    # --- learning -------------------------------------------------------------------------------
    def joint_q(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor,
                next_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q(s, a) and Q(s', a'), (E, B) each, from one forward pass over both batches (training mode)."""
        joint = torch.cat([torch.cat([obs, action], -1), torch.cat([next_obs, next_action], -1)], dim=0)
        q = self.critic(joint).squeeze(-1)
        return q[:, : len(obs)], q[:, len(obs):]

    def update(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
               terminated: torch.Tensor, update_actor: bool = True) -> dict[str, torch.Tensor]:
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs)   # eval mode: running statistics
        self.critic.train()
        q, q_next = self.joint_q(obs, action, next_obs, next_action)
        self.critic.eval()
        value = q_next.detach().min(dim=0).values
        if self.backup_entropy:
            value = value - alpha * next_log_prob
        target = reward + self.gamma * (1.0 - terminated) * value
        critic_loss = (q - target).pow(2).mean()
        self._step(critic_loss, self.critic_params, self.critic_opt)
        metrics = {"critic_loss": critic_loss.detach(), "alpha": alpha[0]}
        if update_actor and self.updates % self.policy_delay == 0:
            self.actor.train()   # its batch statistics; the critic it is scored by stays in eval mode
            metrics.update(self.actor_and_temperature_step(obs, alpha))
            self.actor.eval()
        return metrics

    # --- checkpoints ----------------------------------------------------------------------------
    def networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

