"""The small protocol every agent of the suite follows, plus SB3-style conveniences.

An agent works in a normalised action space, [-1, 1] per dimension: the replay store holds those
actions and the training loop maps them to the env's bounds. An agent implements four methods:
  act(obs, deterministic)      -> normalised action for one observation
  train_step(replay)           -> metrics dict; the agent samples its own batches (uniform, fading, ...)
  state_dict() / load_state_dict(state)   nested tensors, arrays and scalars (see robo_rl.checkpoint)
and inherits predict / learn / save / load.
"""
from __future__ import annotations

import abc
import importlib
from pathlib import Path
from typing import Any, Iterable, Mapping

import gymnasium as gym
import numpy as np

from robo_rl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def space_to_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"discrete": int(space.n), "start": int(space.start)}
    return {
        "shape": list(space.shape),
        "dtype": str(space.dtype),
        "low": np.asarray(space.low, dtype=np.float64).ravel().tolist(),
        "high": np.asarray(space.high, dtype=np.float64).ravel().tolist(),
    }


def space_from_json(data: Mapping[str, Any]) -> gym.Space:
    if "discrete" in data:
        return gym.spaces.Discrete(int(data["discrete"]), start=int(data.get("start", 0)))
    shape, dtype = tuple(data["shape"]), np.dtype(data["dtype"])
    low = np.asarray(data["low"], dtype=np.float64).reshape(shape).astype(dtype)
    high = np.asarray(data["high"], dtype=np.float64).reshape(shape).astype(dtype)
    return gym.spaces.Box(low, high, shape=shape, dtype=dtype)


def to_env_action(action: np.ndarray, space: gym.Space) -> np.ndarray | int:
    """Map a normalised action in [-1, 1] to the env's bounds. A discrete space of n actions splits
    [-1, 1] into n equal bins (so uniform random warm-up and the random policy work unchanged)."""
    action = np.clip(action, -1.0, 1.0)
    if isinstance(space, gym.spaces.Discrete):
        index = min(int((float(np.ravel(action)[0]) + 1.0) * 0.5 * space.n), space.n - 1)
        return int(space.start + index)
    return (space.low + (action + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)


def from_discrete(index: int, space: gym.spaces.Discrete) -> np.ndarray:
    """The normalised action (its bin's centre) that to_env_action maps to action `index`."""
    return np.array([(2.0 * (int(index) - space.start) + 1.0) / space.n - 1.0], dtype=np.float32)


def check_box(space: gym.Space, what: str) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"{what} must be a Box space, got {type(space).__name__}")
    if what == "action space" and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError("action space must be bounded: continuous-control agents act in [-1, 1] mapped to the bounds")
    return space


def option(config: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    """config[key] as `kind`, with a one-line error naming the key (a config value of the wrong type)."""
    value = config.get(key, default)
    if value is None:
        value = default
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if kind is bool and not isinstance(value, bool):   # bool("false") is True
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"agent.{key} expects {kind.__name__}, got {value!r}") from None


class Agent(abc.ABC):
    """Base class: subclasses build their networks in __init__ from spaces, config and seed."""

    # Before `learning_starts`, the loop acts uniformly at random unless the agent explores itself.
    random_warmup: bool = True
    # Agents that take a Discrete action space say so; the others refuse it in one line.
    discrete_actions: bool = False

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Mapping[str, Any], seed: int = 0) -> None:
        self.observation_space = check_box(observation_space, "observation space")
        if isinstance(action_space, gym.spaces.Discrete) and self.discrete_actions:
            self.action_space = action_space
        elif isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"{type(self).__name__} takes continuous (Box) actions, not {action_space} "
                            f"(an agent for discrete actions: sb3_ppo)")
        else:
            self.action_space = check_box(action_space, "action space")
        self.config = dict(config)
        self.seed = int(seed)
        self.action_dim = int(np.prod(action_space.shape)) if self.action_space.shape else 1
        self.learning_starts = int(self.config.get("learning_starts", 0))
        self.replay_size = int(self.config.get("replay_size", 1_000_000))

    # --- the protocol -------------------------------------------------------------------------
    @abc.abstractmethod
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Normalised action in [-1, 1] for a single observation."""

    @abc.abstractmethod
    def train_step(self, replay: Any) -> dict[str, float]:
        """The agent's updates for one env step; returns scalar metrics."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: networks, optimisers, counters, own RNGs."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def set_discount(self, gamma: float) -> None:
        """Change the discount of future updates (a discount schedule, e.g. ADS, calls this)."""
        if not hasattr(self, "gamma"):
            raise TypeError(f"{type(self).__name__} has no discount that can be scheduled")
        self.gamma = float(gamma)

    def make_replay(self, total_steps: int, seed: int) -> Any:
        """The replay store this agent trains from (capacity never above the run's length)."""
        from robo_rl.replay import ReplayBuffer

        space = self.observation_space
        return ReplayBuffer(space.shape, self.action_dim, max(1, min(self.replay_size, total_steps)),
                            obs_dtype=space.dtype, seed=seed)

    # --- SB3-style conveniences ---------------------------------------------------------------
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Action in the env's own bounds for one observation."""
        return to_env_action(self.act(np.asarray(obs), deterministic), self.action_space)

    def learn(
        self,
        total_steps: int,
        env: gym.Env,
        eval_env: gym.Env | None = None,
        run_dir: str | Path | None = None,
        callbacks: Iterable[Any] = (),
        **trainer_kwargs: Any,
    ) -> "Agent":
        from robo_rl.train import Trainer

        Trainer(self, env, total_steps=total_steps, eval_env=eval_env, run_dir=run_dir,
                callbacks=callbacks, seed=self.seed, **trainer_kwargs).run()
        return self

    def describe(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "target": agent_name(cls),
            "config": self.config,
            "seed": self.seed,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
        }

    def save(self, path: str | Path, info: Mapping[str, Any] | None = None) -> Path:
        """The agent alone (no replay, no loop state); `info`: more metadata (a run's env, its step)."""
        return save_checkpoint(path, {"agent": self.state_dict()}, {**(info or {}), "agent": self.describe()})

    @classmethod
    def load(cls, path: str | Path) -> "Agent":
        state, info = load_checkpoint(path)
        return agent_from_info(info, path, state)


# The suite's agents, under the dotted names configs and checkpoints use. A class is resolved from
# this table or from classes registered in this process, never by importing a name read from a file:
# a crafted checkpoint or config cannot make the loader import (and so run) any other module.
SUITE_AGENTS = {
    "robo_rl.agents.crossq.CrossQ": ("robo_rl.agents.crossq", "CrossQ"),
    "robo_rl.agents.demo_sac.DemoSAC": ("robo_rl.agents.demo_sac", "DemoSAC"),
    "robo_rl.agents.l2m.L2M": ("robo_rl.agents.l2m", "L2M"),
    "robo_rl.agents.sac.SAC": ("robo_rl.agents.sac", "SAC"),
    "robo_rl.agents.sb3.SB3Agent": ("robo_rl.agents.sb3", "SB3Agent"),
    "robo_rl.agents.sb3.SB3PPOAgent": ("robo_rl.agents.sb3", "SB3PPOAgent"),
    "robo_rl.agents.srl.SRL": ("robo_rl.agents.srl", "SRL"),
    "robo_rl.agents.symphony.Symphony": ("robo_rl.agents.symphony", "Symphony"),
    "robo_rl.runs.RandomAgent": ("robo_rl.runs", "RandomAgent"),
}
_REGISTERED: dict[str, type["Agent"]] = {}


def agent_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_agent(cls: type["Agent"]) -> type["Agent"]:
    """Make a user-defined agent class loadable from configs and checkpoints (usable as a decorator).

    The CLI imports the modules named in the ROBO_RL_PLUGINS environment variable (comma-separated)
    before it reads any config or checkpoint, so such modules can register their agents."""
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise TypeError(f"register_agent needs a subclass of robo_rl Agent, got {cls!r}")
    _REGISTERED[agent_name(cls)] = cls
    return cls


def known_agents() -> list[str]:
    return sorted({*SUITE_AGENTS, *_REGISTERED})


def agent_class(target: str, source: str | Path = "config") -> type[Agent]:
    """The agent class a config or checkpoint names, from the allow-list above only."""
    if not isinstance(target, str):
        raise CheckpointError(f"{source}: agent class must be a dotted name, got {target!r}")
    if target in _REGISTERED:
        return _REGISTERED[target]
    if target not in SUITE_AGENTS:
        raise CheckpointError(f"{source}: '{target}' is not a known robo-rl agent class (known: {', '.join(known_agents())};"
                              " register your own with robo_rl.agents.base.register_agent)")
    module_name, class_name = SUITE_AGENTS[target]
    return getattr(importlib.import_module(module_name), class_name)


def import_plugins(names: str | None) -> None:
    """Import the modules a user names (ROBO_RL_PLUGINS) so that they can register agents."""
    for name in filter(None, (n.strip() for n in (names or "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise CheckpointError(f"ROBO_RL_PLUGINS: module '{name}' cannot be imported ({exc})") from None


def agent_from_info(info: Mapping[str, Any], source: str | Path, state: Mapping[str, Any] | None = None) -> Agent:
    """Rebuild an agent from a checkpoint's metadata (and load its state when given)."""
    try:
        desc = info["agent"]
        cls = agent_class(desc["target"], source)
        agent = cls(space_from_json(desc["observation_space"]), space_from_json(desc["action_space"]),
                    desc["config"], desc["seed"])
    except KeyError as exc:
        raise CheckpointError(f"{source}: checkpoint metadata lacks {exc}") from None
    if state is not None:
        try:
            agent.load_state_dict(state["agent"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{source}: agent state does not fit {desc['target']} ({exc})") from None
    return agent
