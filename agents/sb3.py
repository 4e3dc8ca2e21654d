"""Stable-Baselines3 SAC and TD3 (and sb3-contrib's CrossQ) inside robo-rl's loop, replay store, evaluation
and checkpoints.

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

from robo_rl.agents.base import Agent, from_discrete

ALGOS = {"SAC": SAC, "TD3": TD3, "CrossQ": None}   # CrossQ: sb3-contrib's, imported when asked for
POLICY_KEYS = ("net_arch",)  # hyperparameters that belong in SB3's policy_kwargs


def algo_class(name: Any) -> type:
    if name not in ALGOS:
        raise ValueError(f"agent.algo '{name}' is unknown (valid: {', '.join(ALGOS)})")
    if name == "CrossQ":
        try:
            from sb3_contrib import CrossQ
        except ImportError:
            raise ValueError("agent.algo 'CrossQ' needs sb3-contrib: pip install 'robo-rl[bench]'") from None
        return CrossQ
    return ALGOS[name]


def policy_value(value: Any) -> Any:
    """A list (or a {pi, qf} mapping of lists, as CrossQ's net_arch) as plain Python for SB3."""
    if isinstance(value, Mapping):
        return {str(k): list(v) for k, v in value.items()}
    return list(value)


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
        algo_cls = algo_class(algo)
        hyper = dict(self.config.get("hyperparams") or {})
        policy_kwargs = {k: policy_value(hyper.pop(k)) for k in POLICY_KEYS if k in hyper}
        self.algo_name = algo
        self.model = algo_cls(
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
        self.model.policy.set_training_mode(False)   # SB3 sets it per update; acting always sees eval mode
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
        self.model.policy.set_training_mode(False)   # acting and evaluation see CrossQ's running statistics
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


class SB3PPOAgent(Agent):
    """Stable-Baselines3 PPO (on-policy) inside robo-rl's one loop, with one env.

    SB3's networks, rollout buffer (GAE) and `train()` run unchanged; robo-rl's loop steps the env.
    `act` samples an action and keeps its value and log-probability; `train_step` adds the transition
    that followed (reward, and whether the episode started there) to SB3's rollout buffer, and when it
    holds `n_steps` transitions computes the returns and runs PPO's epochs. A time-limit truncation is
    bootstrapped as SB3's own loop does (reward + gamma * V(last observation)). Box actions are sampled
    in [-1, 1] (clipped there, kept unclipped in the buffer); Discrete ones are indices, handed to the
    loop as the centre of their bin of [-1, 1] (see `to_env_action`). RL Zoo's linear schedules
    (`lin_<value>`) decay over the run's budget, which the loop gives when it builds the replay store.
    A checkpoint keeps the policy and optimiser, not a half-filled rollout (as SB3's `save`).
    """

    random_warmup = False
    discrete_actions = True

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        from stable_baselines3 import PPO

        super().__init__(observation_space, action_space, config, seed)
        hyper = dict(self.config.get("hyperparams") or {})
        policy_kwargs = {k: list(hyper.pop(k)) for k in POLICY_KEYS if k in hyper}
        for key in ("learning_rate", "clip_range"):
            if isinstance(hyper.get(key), str):  # SB3 reads a callable of the progress left (1 -> 0)
                hyper[key] = _linear(hyper[key])
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        sb3_space = action_space if self.discrete else gym.spaces.Box(-1.0, 1.0, shape=action_space.shape, dtype=np.float32)
        self.model = PPO("MlpPolicy", _SpacesOnly(observation_space, sb3_space), policy_kwargs=policy_kwargs,
                         seed=self.seed, device="cpu", verbose=0, **hyper)
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.buffer = self.model.rollout_buffer
        self.n_steps = int(self.model.n_steps)
        self.total_steps: int | None = None
        self.learning_starts = 0
        self._pending: tuple | None = None   # (obs, action, value, log_prob) of the last sampled action
        self._episode_start = True
        self._last_transition: tuple | None = None   # (next_obs, terminated) of the last one added

    def set_discount(self, gamma: float) -> None:
        self.model.gamma = self.buffer.gamma = float(gamma)

    def make_replay(self, total_steps: int, seed: int) -> Any:
        self.total_steps = int(total_steps)  # what linear schedules decay over
        from robo_rl.replay import ReplayBuffer

        # PPO learns from its own rollouts; the loop's store only needs the newest transition.
        return ReplayBuffer(self.observation_space.shape, self.action_dim, 2, obs_dtype=self.observation_space.dtype, seed=seed)

    def begin_episode(self) -> None:
        if self._last_transition is not None and self.buffer.pos > 0 and not self._last_transition[1]:
            # the episode before ended by its time limit: bootstrap it, as SB3's collect_rollouts does
            with torch.no_grad():
                value = self.model.policy.predict_values(self._tensor(self._last_transition[0]))[0, 0]
            self.buffer.rewards[self.buffer.pos - 1] += self.model.gamma * float(value)
        self._episode_start = True

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, *self.observation_space.shape)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        policy = self.model.policy
        with torch.no_grad():
            obs_t = self._tensor(obs)
            if deterministic:
                action = policy._predict(obs_t, deterministic=True).numpy()[0]
            else:
                action_t, value, log_prob = policy(obs_t)
                action = action_t.numpy()[0]
                self._pending = (np.asarray(obs, dtype=np.float32), action.copy(), value, log_prob)
        if self.discrete:
            return from_discrete(int(np.ravel(action)[0]), self.action_space)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def train_step(self, replay: Any) -> dict[str, float]:
        if self._pending is None:
            return {}
        obs, action, value, log_prob = self._pending
        i = replay.last_index
        reward, terminated = float(replay.reward[i, 0]), bool(replay.terminated[i, 0])
        self.buffer.add(obs[None], np.asarray(action).reshape(1, -1), np.array([reward]), np.array([self._episode_start]),
                        value, log_prob)
        self._pending, self._episode_start = None, False
        self._last_transition = (replay.next_obs[i].copy(), terminated)
        if not self.buffer.full:
            return {}
        with torch.no_grad():
            last_value = self.model.policy.predict_values(self._tensor(self._last_transition[0]))
        self.buffer.compute_returns_and_advantage(last_values=last_value, dones=np.array([terminated]))
        # the progress left, which PPO's schedules read (its own learn() would set it)
        self.model._current_progress_remaining = max(1.0 - replay.added / self.total_steps, 0.0) if self.total_steps else 1.0
        self.model.train()
        self.buffer.reset()
        metrics = {k: float(v) for k, v in self.model.logger.name_to_value.items() if isinstance(v, (int, float))}
        self.model.logger.name_to_value.clear()
        self.model.logger.name_to_count.clear()
        self.model.logger.name_to_excluded.clear()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.model.policy.state_dict(), "optimizer": self.model.policy.optimizer.state_dict(),
                "n_updates": self.model._n_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.policy.load_state_dict(state["policy"])
        self.model.policy.optimizer.load_state_dict(state["optimizer"])
        self.model._n_updates = int(state["n_updates"])


def _linear(text: str) -> Any:
    """RL Zoo's `lin_<value>`: from value at the start to 0 at the end of training."""
    try:
        if not text.startswith("lin_"):
            raise ValueError
        start = float(text[4:])
    except ValueError:
        raise ValueError(f"a schedule must be a number or lin_<number>, got {text!r}") from None
    return lambda progress_remaining: start * progress_remaining
