"""Stable-Baselines3 SAC and TD3 inside robo-rl's loop, replay store, evaluation and checkpoints.

SB3 keeps its own networks, losses and optimisers (its `train()` runs unchanged); what changes is
where the data comes from: SB3's replay buffer is replaced by a view that samples robo-rl's store,
and actions are collected by robo-rl's loop. SB3 already works in the normalised action space
[-1, 1] (its buffer stores scaled actions), so the two conventions meet without conversion.
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from robo_rl.agents.base import Agent

ALGOS = {"SAC": SAC, "TD3": TD3}
POLICY_KEYS = ("net_arch",)  # hyperparameters that belong in SB3's policy_kwargs


class _SpacesOnly(gym.Env):
    """SB3 wants an env at construction only to read its spaces."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # pragma: no cover
        raise RuntimeError("robo-rl collects data itself; this env only carries spaces")

    def step(self, action):  # pragma: no cover
        raise RuntimeError("robo-rl collects data itself; this env only carries spaces")


class _ReplayView:
    """Looks like SB3's replay buffer to `SAC.train`/`TD3.train`, samples robo-rl's store."""

    def __init__(self) -> None:
        self.store = None

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        batch = self.store.sample(batch_size)
        return ReplayBufferSamples(
            observations=batch["obs"].float(),
            actions=batch["action"],
            next_observations=batch["next_obs"].float(),
            dones=batch["terminated"],
            rewards=batch["reward"],
        )


class SB3Agent(Agent):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__(observation_space, action_space, config, seed)
        algo = self.config.get("algo")
        if algo not in ALGOS:
            raise ValueError(f"agent.algo '{algo}' is unknown (valid: {', '.join(ALGOS)})")
        hyper = dict(self.config.get("hyperparams") or {})
        policy_kwargs = {k: list(hyper.pop(k)) for k in POLICY_KEYS if k in hyper}
        self.algo_name = algo
        self.model = ALGOS[algo](
            "MlpPolicy",
            _SpacesOnly(observation_space, action_space),
            buffer_size=1,  # SB3's own buffer is never used
            learning_starts=0,
            policy_kwargs=policy_kwargs,
            seed=self.seed,
            device="cpu",
            verbose=0,
            **hyper,
        )
        self.replay_view = _ReplayView()
        self.model.replay_buffer = self.replay_view
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.batch_size = int(self.model.batch_size)
        self.gradient_steps = int(self.model.gradient_steps)
        self.train_freq = self._steps_between_updates(self.model.train_freq)
        self.noise_std = float(self.config.get("action_noise_std", 0.0))
        self.rng = np.random.default_rng(self.seed)

    @staticmethod
    def _steps_between_updates(train_freq: Any) -> int:
        """SB3's train_freq (after its own conversion) as env steps between updates; episodes are refused."""
        unit = getattr(getattr(train_freq, "unit", None), "value", "step")
        frequency = int(getattr(train_freq, "frequency", train_freq))
        if unit != "step" or frequency < 1:
            raise ValueError(f"agent.hyperparams.train_freq must be a number of steps >= 1, got {train_freq}")
        return frequency

    def set_discount(self, gamma: float) -> None:
        self.model.gamma = float(gamma)  # SB3's SAC/TD3 read it at every update

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        policy = self.model.policy
        with torch.inference_mode():
            obs_t = torch.as_tensor(obs, dtype=torch.float32).reshape(1, *self.observation_space.shape)
            if deterministic and self.algo_name == "SAC":
                # The squashed mean straight from the actor's layers: SB3's _predict builds a
                # distribution object per call, most of the cost of one control step on a robot.
                actor = policy.actor
                mean = actor.mu(actor.latent_pi(actor.extract_features(obs_t, actor.features_extractor)))
                action = torch.tanh(mean).numpy()[0]
            else:
                action = policy._predict(obs_t, deterministic=deterministic).numpy()[0]
        if not deterministic and self.noise_std > 0:  # TD3's Gaussian exploration noise
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def train_step(self, replay: Any) -> dict[str, float]:
        if replay.added % self.train_freq:  # as SB3's own loop: gradient_steps updates every train_freq steps
            return {}
        self.replay_view.store = replay
        self.model.train(gradient_steps=self.gradient_steps, batch_size=self.batch_size)
        metrics = {k: float(v) for k, v in self.model.logger.name_to_value.items() if isinstance(v, (int, float))}
        self.model.logger.name_to_value.clear()
        self.model.logger.name_to_count.clear()
        self.model.logger.name_to_excluded.clear()
        return metrics

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"actor": self.model.actor.optimizer, "critic": self.model.critic.optimizer}
        if getattr(self.model, "ent_coef_optimizer", None) is not None:
            opts["ent_coef"] = self.model.ent_coef_optimizer
        return opts

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "policy": self.model.policy.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self._optimizers().items()},
            "n_updates": self.model._n_updates,
            "rng": self.rng.bit_generator.state,
        }
        if getattr(self.model, "log_ent_coef", None) is not None:
            state["log_ent_coef"] = self.model.log_ent_coef.detach().clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.policy.load_state_dict(state["policy"])
        for name, opt in self._optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        self.model._n_updates = int(state["n_updates"])
        self.rng.bit_generator.state = state["rng"]
        if "log_ent_coef" in state:
            with torch.no_grad():
                self.model.log_ent_coef.copy_(state["log_ent_coef"])
