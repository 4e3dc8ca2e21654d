"""L2M: Learning to Modulate pre-trained models in RL (Schmied et al., NeurIPS 2023, arXiv 2306.14884),
after the official code (ml-jku/L2M at 0a4747b).

A decision transformer is pre-trained offline on several tasks; new tasks then arrive one after another,
each learned from its own dataset only, and the model must keep the old ones without being told at test
time which task it faces. L2M freezes the transformer and adds a pool of P entries, each a key and LoRA
modulators for every layer; a query made from the context selects one entry per sample.

The model (one file, top to bottom):
  tokens per timestep   state, return-to-go (continuous), one token per action dimension (the action
                        discretised into `bins` bins over [-1, 1], as the code's min-max tokenizer), reward;
                        `merge_actions=true` puts all action dimensions into one token (a speed option)
  embeddings            linear for state / return / reward, a table per action bin plus a table per action
                        dimension, a timestep table added to every token, then LayerNorm; no positional
                        table (the code's GPT-2 gets position id 0 for every token)
  transformer           GPT-2 blocks (pre-LayerNorm, causal attention, GELU MLP of width 4d)
  prediction            action dimension k is read at the token before it (the return token for the first),
                        through one shared linear head to `bins` logits; cross-entropy; argmax at test time
The modulation pool (L2M):
  entry i               key k_i ~ U(-1, 1) of width d; LoRA A (Kaiming-uniform) and B (zero) for the queries,
                        the values and the feed-forward layer of every layer, stored [P, L, 6, d, r] as the
                        code (6 = q, v and 4 chunks of the 4d-wide feed-forward map): a fresh pool is a no-op
  query                 masked mean over the context of the state tokens' input embeddings (after the
                        embedding LayerNorm, timestep embeddings included), not the transformer's output
  matching              cosine similarity, top-1 per sample, that entry used in every layer; from the second
                        task on, in training only: sim <- (sim + 1) / 2 * normalised 1 / (selection counts),
                        counts a running mean of selection histograms, refreshed at each task switch
  modulators            q += s h A_q B_q, v += s h A_v B_v (h = the attention's input); the feed-forward map
                        f = c_fc(h) gets f += s f A_f B_f before the GELU (a rank-r map on the 4d activations)
  loss                  CE - pull_weight * sum_batch cos(query, selected key) / batch; only keys and
                        modulators train; the optimiser is not reset at a task switch
Methods (`method`): pretrained (the whole transformer trains: pre-training), full (fine-tune everything),
lora (a pool of one entry, always selected), l2m, l2m_oracle (the task id restricts matching to the task's
P // tasks entries, the paper's upper reference).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from robo_rl.agents.base import Agent, option

METHODS = ("pretrained", "full", "lora", "l2m", "l2m_oracle")
POOL_METHODS = ("lora", "l2m", "l2m_oracle")


# --- action tokens (the code's min-max tokenizer) -----------------------------------------------
def tokenize(actions: np.ndarray | torch.Tensor, bins: int) -> Any:
    """[-1, 1] -> bin index floor((a + 1) / width), clipped to [0, bins - 1]."""
    width = 2.0 / bins
    if isinstance(actions, torch.Tensor):
        return ((actions + 1.0) / width).long().clamp(0, bins - 1)
    return np.clip(((np.asarray(actions) + 1.0) / width).astype(np.int64), 0, bins - 1)


def detokenize(tokens: np.ndarray, bins: int) -> np.ndarray:
    """Bin index -> the bin's lower edge, as the code's inverse tokenizer."""
    return (np.asarray(tokens, np.float32) * (2.0 / bins) - 1.0).astype(np.float32)


# --- the transformer ------------------------------------------------------------------------------
class Block(nn.Module):
    """A GPT-2 block; `mods` (one layer's per-sample modulators) adds the pool's LoRA terms."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.c_attn, self.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.c_fc, self.mlp_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, mods: dict[str, Any] | None) -> torch.Tensor:
        h = self.ln_1(x)
        q, k, v = self.c_attn(h).split(h.shape[-1], dim=-1)
        if mods is not None:
            scale = mods["scale"]
            q = q + (h @ mods["q"][0] @ mods["q"][1]) * scale
            v = v + (h @ mods["v"][0] @ mods["v"][1]) * scale
        batch, length, width = q.shape
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.dropout(self.c_proj(att.transpose(1, 2).reshape(batch, length, width)))
        f = self.c_fc(self.ln_2(x))
        if mods is not None:
            f = f + (f @ mods["ff"][0] @ mods["ff"][1]) * mods["scale"]
        return x + self.dropout(self.mlp_proj(F.gelu(f)))


class DecisionTransformer(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, width: int, layers: int, heads: int, context: int,
                 bins: int, max_timestep: int, merge_actions: bool, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"agent.width ({width}) must be a multiple of agent.heads ({heads})")
        self.state_dim, self.action_dim, self.bins, self.context = state_dim, action_dim, bins, context
        self.merge_actions = merge_actions
        self.action_tokens = 1 if merge_actions else action_dim
        self.tokens = 3 + self.action_tokens   # state, return, action token(s), reward
        self.embed_state, self.embed_return, self.embed_reward = nn.Linear(state_dim, width), nn.Linear(1, width), nn.Linear(1, width)
        self.embed_action, self.embed_action_dim = nn.Embedding(bins, width), nn.Embedding(action_dim, width)
        self.embed_timestep = nn.Embedding(max_timestep, width)
        self.embed_ln = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, bins * (action_dim if merge_actions else 1))
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:  # GPT-2's initialisation
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed(self, states, returns, action_tokens, rewards, timesteps) -> torch.Tensor:
        """Input embeddings [B, K * tokens, d] (after the LayerNorm), timestep by timestep."""
        batch, k = states.shape[:2]
        dims = torch.arange(self.action_dim, device=states.device)
        actions = self.embed_action(action_tokens) + self.embed_action_dim(dims)       # [B, K, A, d]
        if self.merge_actions:
            actions = actions.sum(2, keepdim=True)
        parts = [self.embed_state(states).unsqueeze(2), self.embed_return(returns.unsqueeze(-1)).unsqueeze(2),
                 actions, self.embed_reward(rewards.unsqueeze(-1)).unsqueeze(2)]
        tokens = torch.cat(parts, dim=2) + self.embed_timestep(timesteps).unsqueeze(2)  # [B, K, tokens, d]
        return self.embed_ln(tokens.reshape(batch, k * self.tokens, -1))

    def attention_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """Causal, and no attention to padded timesteps (a padded token still sees itself: no empty rows)."""
        length = valid.shape[1] * self.tokens
        token_valid = valid.repeat_interleave(self.tokens, dim=1)                        # [B, K * tokens]
        causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
        mask = causal & token_valid[:, None, :]
        return (mask | torch.eye(length, dtype=torch.bool, device=valid.device))[:, None]

    def action_logits(self, embeddings: torch.Tensor, valid: torch.Tensor, layer_mods: Sequence[Any] | None) -> torch.Tensor:
        """Logits [B, K, A, bins] of every action dimension of every timestep."""
        x, mask = self.drop(embeddings), self.attention_mask(valid)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, layer_mods[i] if layer_mods is not None else None)
        x = self.ln_f(x).view(x.shape[0], -1, self.tokens, x.shape[-1])
        if self.merge_actions:
            return self.head(x[:, :, 1]).view(x.shape[0], x.shape[1], self.action_dim, self.bins)
        return self.head(x[:, :, 1:1 + self.action_dim])   # the return token predicts a_1, a_k predicts a_k+1


class ModulationPool(nn.Module):
    """P keys and their per-layer LoRA modulators; selection by cosine similarity with a count penalty."""

    def __init__(self, size: int, layers: int, width: int, rank: int, scale: float) -> None:
        super().__init__()
        self.size, self.scale = size, float(scale)
        self.keys = nn.Parameter(torch.empty(size, width).uniform_(-1.0, 1.0))
        self.lora_a = nn.Parameter(torch.zeros(size, layers, 6, width, rank))
        self.lora_b = nn.Parameter(torch.zeros(size, layers, 6, rank, width))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))   # on the whole stored tensor, as the code
        self.register_buffer("counts", torch.zeros(size))
        self.register_buffer("inv_counts", torch.ones(size) / size)
        self.counts_total, self.task_id = 0, 0

    def select(self, query: torch.Tensor, allowed: torch.Tensor | None, count_penalty: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Selected entry per sample and the sum over the batch of cos(query, selected key)."""
        query_n, keys_n = F.normalize(query, dim=-1), F.normalize(self.keys, dim=-1)
        cos = query_n @ keys_n.t()                                                        # [B, P]
        score = cos
        if self.training and count_penalty and self.counts_total > 0 and self.task_id > 0:
            score = (cos + 1.0) / 2.0 * self.inv_counts
        if allowed is not None:
            score = score.masked_fill(~allowed, float("-inf"))
        index = score.argmax(dim=-1)
        if self.training:
            self._add_counts(index)
        return index, cos.gather(1, index[:, None]).sum()

    @torch.no_grad()
    def _add_counts(self, index: torch.Tensor) -> None:
        histogram = torch.bincount(index, minlength=self.size).float()
        self.counts_total += 1
        self.counts += (histogram / histogram.sum() - self.counts) / self.counts_total

    @torch.no_grad()
    def switch_task(self, task_id: int) -> None:
        """At a task switch: the penalty's inverse counts are refreshed from the counts so far."""
        self.task_id = int(task_id)
        inverse = 1.0 / (self.counts + 1e-6)
        self.inv_counts.copy_(inverse / inverse.sum())

    def modulators(self, index: torch.Tensor) -> list[dict[str, Any]]:
        """Per layer: (A, B) per sample for queries, values and the feed-forward map (the code's reshapes)."""
        a, b = self.lora_a[index], self.lora_b[index]                                     # [B, L, 6, d, r] / [B, L, 6, r, d]
        layers = []
        for layer in range(a.shape[1]):
            al, bl = a[:, layer], b[:, layer]
            ff_a = al[:, 2:].permute(0, 3, 2, 1).flatten(-2).transpose(2, 1)              # [B, 4d, r]
            ff_b = bl[:, 2:].transpose(2, 1).flatten(-2)                                  # [B, r, 4d]
            layers.append({"q": (al[:, 0], bl[:, 0]), "v": (al[:, 1], bl[:, 1]), "ff": (ff_a, ff_b), "scale": self.scale})
        return layers


# --- the agent ------------------------------------------------------------------------------------
class L2M(Agent):
    """A decision transformer agent; trained offline (robo-rl pretrain / finetune), played like any agent."""

    random_warmup = False
    offline = True

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__(observation_space, action_space, config, seed)
        c = self.config
        self.method = option(c, "method", str, "pretrained")
        if self.method not in METHODS:
            raise ValueError(f"agent.method must be one of {', '.join(METHODS)}, got '{self.method}'")
        self.state_dim = max(option(c, "state_dim", int, 39), int(np.prod(observation_space.shape)))
        self.bins, self.context = option(c, "bins", int, 64), option(c, "context", int, 5)
        self.max_timestep = option(c, "max_timestep", int, 200)
        self.reward_scale = option(c, "reward_scale", float, 200.0)
        self.batch_size = option(c, "batch_size", int, 64)
        self.pull_weight = option(c, "pull_weight", float, 0.5)
        self.count_penalty = bool(c.get("count_penalty", True))
        self.grad_clip = option(c, "grad_clip", float, 0.25)
        self.tasks: list[str] = [str(t) for t in (c.get("tasks") or [])]     # the fine-tuning sequence (oracle's groups)
        torch.manual_seed(self.seed)
        self.model = DecisionTransformer(self.state_dim, self.action_dim, option(c, "width", int, 64),
                                         option(c, "layers", int, 3), option(c, "heads", int, 4), self.context,
                                         self.bins, self.max_timestep, bool(c.get("merge_actions", False)),
                                         option(c, "dropout", float, 0.1))
        self.pool: ModulationPool | None = None
        if self.method in POOL_METHODS:
            size = 1 if self.method == "lora" else option(c, "pool_size", int, 15)
            if self.method == "l2m_oracle" and size < max(1, len(self.tasks)):
                raise ValueError(f"agent.pool_size ({size}) must be at least the number of tasks ({len(self.tasks)}) for l2m_oracle")
            self.pool = ModulationPool(size, len(self.model.blocks), self.model.embed_state.out_features,
                                       option(c, "rank", int, 4), option(c, "lora_scale", float, 2.0))
            self.model.requires_grad_(False)   # the pre-trained transformer stays frozen
        self.optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=option(c, "learning_rate", float, 1e-4),
                                           weight_decay=option(c, "weight_decay", float, 0.01))
        self.updates, self.task_index = 0, 0
        self.target_return = option(c, "target_return", float, 0.0)   # 0: the best dataset return seen (set in training)
        self.begin_episode()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.pool.parameters()) if self.pool is not None else list(self.model.parameters())

    # --- tasks -------------------------------------------------------------------------------
    def switch_task(self, task_index: int) -> None:
        """Training on a new task of the sequence begins (the count penalty is refreshed)."""
        self.task_index = int(task_index)
        if self.pool is not None:
            self.pool.switch_task(task_index)

    def play_task(self, task_index: int) -> None:
        """The task about to be played (only the oracle uses it: its entries are chosen by task id)."""
        self.task_index = int(task_index)

    def _allowed(self, batch: int) -> torch.Tensor | None:
        """The oracle's mask: task i may use only entries [i * g, (i + 1) * g), g = P // tasks."""
        if self.method != "l2m_oracle" or self.pool is None:
            return None
        group = self.pool.size // max(1, len(self.tasks))
        allowed = torch.zeros(self.pool.size, dtype=torch.bool)
        allowed[self.task_index * group:(self.task_index + 1) * group] = True
        return allowed.expand(batch, -1)

    def _layer_mods(self, embeddings: torch.Tensor, valid: torch.Tensor) -> tuple[list | None, torch.Tensor, torch.Tensor | None]:
        """The selected entries' modulators, the pull term, and the selection (None without a pool)."""
        if self.pool is None:
            return None, embeddings.new_zeros(()), None
        if self.method == "lora":
            index = torch.zeros(embeddings.shape[0], dtype=torch.long)
            return self.pool.modulators(index), embeddings.new_zeros(()), index
        states = embeddings[:, 0::self.model.tokens]                                       # state tokens [B, K, d]
        weights = valid.float().unsqueeze(-1)
        query = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        index, cos_sum = self.pool.select(query, self._allowed(embeddings.shape[0]), self.count_penalty)
        return self.pool.modulators(index), cos_sum, index

    # --- training ------------------------------------------------------------------------------
    def loss(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tokens = tokenize(batch["actions"], self.bins)
        embeddings = self.model.embed(batch["states"], batch["returns"], tokens, batch["rewards"], batch["timesteps"])
        mods, cos_sum, index = self._layer_mods(embeddings, batch["valid"])
        logits = self.model.action_logits(embeddings, batch["valid"], mods)                # [B, K, A, bins]
        valid = batch["valid"].unsqueeze(-1).expand(-1, -1, self.action_dim)
        ce = F.cross_entropy(logits[valid], tokens[valid])
        loss = ce - self.pull_weight * cos_sum / embeddings.shape[0] if self.method in ("l2m", "l2m_oracle") else ce
        metrics = {"loss": loss.detach(), "cross_entropy": ce.detach()}
        if index is not None:
            metrics["entries_used"] = torch.tensor(float(index.unique().numel()))
        return loss, metrics

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on a batch of context windows (see `robo_rl.offline.WindowSampler`)."""
        self.model.train()   # dropout on, frozen or not, as the code's training mode
        if self.pool is not None:
            self.pool.train()
        loss, metrics = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.trainable_parameters(), self.grad_clip)
        self.optimizer.step()
        self.updates += 1
        return metrics

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)

    def train_step(self, replay: Any) -> dict[str, float]:
        raise TypeError("L2M learns from datasets, not online: use robo-rl pretrain / robo-rl finetune")

    # --- acting ------------------------------------------------------------------------------
    def begin_episode(self) -> None:
        self._history: deque = deque(maxlen=self.context)   # (state, return-to-go, action tokens, reward, t)
        self._returns_to_go = self.target_return / self.reward_scale
        self._t = 0

    def observe_reward(self, reward: float) -> None:
        """The env's reward for the last action: it lowers the return still to go (the DT's conditioning)."""
        if self._history:
            state, rtg, tokens, _, t = self._history[-1]
            self._history[-1] = (state, rtg, tokens, float(reward) / self.reward_scale, t)
            self._returns_to_go = rtg - float(reward) / self.reward_scale

    def pad_state(self, obs: np.ndarray) -> np.ndarray:
        state = np.zeros(self.state_dim, np.float32)
        flat = np.asarray(obs, np.float32).ravel()
        state[:flat.size] = flat
        return state

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Greedy decoding, one action dimension after another (one pass when actions are merged)."""
        self.model.eval()
        if self.pool is not None:
            self.pool.eval()
        self._history.append((self.pad_state(obs), self._returns_to_go, np.zeros(self.action_dim, np.int64), 0.0,
                              min(self._t, self.max_timestep - 1)))
        self._t += 1
        pad = self.context - len(self._history)
        states = np.zeros((1, self.context, self.state_dim), np.float32)
        returns, rewards = np.zeros((1, self.context), np.float32), np.zeros((1, self.context), np.float32)
        tokens, steps = np.zeros((1, self.context, self.action_dim), np.int64), np.zeros((1, self.context), np.int64)
        for i, (s, g, a, r, t) in enumerate(self._history):
            states[0, pad + i], returns[0, pad + i], tokens[0, pad + i], rewards[0, pad + i], steps[0, pad + i] = s, g, a, r, t
        valid = torch.zeros(1, self.context, dtype=torch.bool)
        valid[0, pad:] = True
        batch = {"states": torch.from_numpy(states), "returns": torch.from_numpy(returns), "rewards": torch.from_numpy(rewards),
                 "timesteps": torch.from_numpy(steps), "valid": valid}
        chosen = torch.from_numpy(tokens)
        mods = None
        for dim in range(1 if self.model.merge_actions else self.action_dim):
            embeddings = self.model.embed(batch["states"], batch["returns"], chosen, batch["rewards"], batch["timesteps"])
            if dim == 0:   # the query reads only the state tokens: one selection per step, not one per dimension
                mods, _, _ = self._layer_mods(embeddings, valid)
            logits = self.model.action_logits(embeddings, valid, mods)[0, -1]              # [A, bins]
            if self.model.merge_actions:
                chosen[0, -1] = logits.argmax(-1)
            else:
                chosen[0, -1, dim] = logits[dim].argmax()
        action_tokens = chosen[0, -1].numpy()
        s, g, _, r, t = self._history[-1]
        self._history[-1] = (s, g, action_tokens, r, t)
        return detokenize(action_tokens, self.bins)

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "updates": self.updates, "task_index": self.task_index, "target_return": self.target_return}
        if self.pool is not None:
            state["pool"] = self.pool.state_dict()
            state["pool_counts_total"], state["pool_task_id"] = self.pool.counts_total, self.pool.task_id
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.pool is not None:
            self.pool.load_state_dict(state["pool"])
            self.pool.counts_total, self.pool.task_id = int(state["pool_counts_total"]), int(state["pool_task_id"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.task_index = int(state["updates"]), int(state["task_index"])
        self.target_return = float(state["target_return"])
        self.begin_episode()

    def with_method(self, method: str, tasks: Sequence[str], overrides: Mapping[str, Any] | None = None) -> "L2M":
        """A new agent for fine-tuning with `method`, holding this model's transformer weights."""
        config = {**self.config, **(overrides or {}), "method": method, "tasks": list(tasks)}
        agent = L2M(self.observation_space, self.action_space, config, self.seed)
        agent.model.load_state_dict(self.model.state_dict())
        agent.target_return = self.target_return
        agent.begin_episode()
        return agent
