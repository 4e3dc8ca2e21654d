"""Contextual variants: physical parameters set from a context dict at every reset.

MuJoCo tasks: parameters are applied relative to the model's own values, which are remembered
once, so changing the context between episodes never compounds. Keys (null or missing = unchanged):
  gravity               z-gravity in m/s^2 (a number) or a full 3-vector
  mass_scale            factor on every body mass and inertia
  friction_scale        factor on every geom's sliding friction
  actuator_gain_scale   factor on actuator gain (and servo stiffness, so position targets keep their meaning)
Classic-control tasks (Gymnasium's own attributes, absolute values, as contextual-RL benchmarks set them):
  Pendulum-v1           g, m, l, dt, max_speed
  CartPole-v1           gravity, masscart, masspole, length (half the pole), force_mag, tau; the
                        derived total_mass and polemass_length are recomputed
With `observe`, the context's values are appended to the observation (sorted by key). With `draw`
(key -> list of values), each reset draws that key's value uniformly from its list (multi-task training
over a family of contexts), from the env's own seeded generator.
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from robo_rl.envs.render import mujoco_handles

CONTEXT_KEYS = ("gravity", "mass_scale", "friction_scale", "actuator_gain_scale")
CLASSIC_CONTEXT_KEYS = {
    "Pendulum-v1": ("g", "m", "l", "dt", "max_speed"),
    "CartPole-v1": ("gravity", "masscart", "masspole", "length", "force_mag", "tau"),
}


def context_keys(env_id: str | None = None) -> tuple[str, ...]:
    return CLASSIC_CONTEXT_KEYS.get(env_id or "", CONTEXT_KEYS)


def active_context(context: Mapping[str, Any] | None, env_id: str | None = None) -> dict[str, Any]:
    """The keys of `context` that change something; raises on a key set for a task it does not apply to.

    Keys left null are ignored whatever they are: the env configs list every family's keys as null.
    """
    context = {k: v for k, v in dict(context or {}).items() if v is not None}
    valid = context_keys(env_id)
    unknown = sorted(set(context) - set(valid))
    if unknown:
        task = f" for {env_id}" if env_id else ""
        raise ValueError(f"unknown context key '{unknown[0]}'{task} (valid: {', '.join(valid)})")
    for key, value in context.items():
        if env_id in CLASSIC_CONTEXT_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ValueError(f"context {key}={value!r} for {env_id} must be a number > 0")
    return context


def check_draw(draw: Mapping[str, Any] | None, env_id: str | None = None) -> dict[str, list[float]]:
    """Per-episode context draws: key -> a non-empty list of values, each valid as a context value."""
    draw = {k: list(v) for k, v in dict(draw or {}).items() if v is not None}
    for key, values in draw.items():
        if not values:
            raise ValueError(f"context_draw.{key} needs at least one value")
        for value in values:
            active_context({key: value}, env_id)
    return draw


class ContextWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    def __init__(self, env: gym.Env, context: Mapping[str, Any], observe: bool = False,
                 draw: Mapping[str, Any] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, context=dict(context), observe=observe, draw=dict(draw or {}))
        gym.Wrapper.__init__(self, env)
        self.env_id = env.spec.id if env.spec is not None else None
        self.classic = self.env_id in CLASSIC_CONTEXT_KEYS
        if self.classic:
            base = env.unwrapped
            self._nominal = {k: float(getattr(base, k)) for k in CLASSIC_CONTEXT_KEYS[self.env_id]}
        else:
            self.model, _ = mujoco_handles(env)
            m = self.model
            self._nominal = {
                "gravity": m.opt.gravity.copy(),
                "body_mass": m.body_mass.copy(),
                "body_inertia": m.body_inertia.copy(),
                "geom_friction": m.geom_friction.copy(),
                "actuator_gainprm": m.actuator_gainprm.copy(),
                "actuator_biasprm": m.actuator_biasprm.copy(),
            }
        self.draw = check_draw(draw, self.env_id)
        self.context = active_context({**dict(context), **{k: v[0] for k, v in self.draw.items()}}, self.env_id)
        self.observe = bool(observe)
        if self.observe:
            self._observed_keys = sorted(self.context)
            space = env.observation_space
            extra = len(self._observed_keys)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(space.shape[0] + extra,), dtype=np.float32)

    def set_context(self, context: Mapping[str, Any]) -> None:
        """Takes effect at the next reset (an observed context keeps its keys: the observation's size is fixed)."""
        context = active_context(context, self.env_id)
        if self.observe and sorted(context) != self._observed_keys:
            raise ValueError(f"an observed context keeps its keys {self._observed_keys}, got {sorted(context)}")
        self.context = context

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        if not self.observe:
            return obs
        values = np.array([float(np.ravel(self.context[k])[-1]) for k in self._observed_keys], dtype=np.float32)
        return np.concatenate([np.asarray(obs, dtype=np.float32), values])

    def _apply_classic(self) -> None:
        base = self.unwrapped
        for key, nominal in self._nominal.items():
            setattr(base, key, float(self.context.get(key, nominal)))
        if self.env_id == "CartPole-v1":  # constants the env derives once in its constructor
            base.total_mass = base.masspole + base.masscart
            base.polemass_length = base.masspole * base.length

    def _apply(self) -> None:
        if self.classic:
            self._apply_classic()
            return
        m, nominal, ctx = self.model, self._nominal, self.context
        m.opt.gravity[:] = nominal["gravity"]
        if "gravity" in ctx:
            g = np.asarray(ctx["gravity"], dtype=np.float64)
            if g.ndim == 0:
                m.opt.gravity[2] = g
            else:
                m.opt.gravity[:] = g
        scale = float(ctx.get("mass_scale", 1.0))
        m.body_mass[:] = nominal["body_mass"] * scale
        m.body_inertia[:] = nominal["body_inertia"] * scale
        m.geom_friction[:] = nominal["geom_friction"]
        m.geom_friction[:, 0] *= float(ctx.get("friction_scale", 1.0))
        gain = float(ctx.get("actuator_gain_scale", 1.0))
        m.actuator_gainprm[:] = nominal["actuator_gainprm"]
        m.actuator_biasprm[:] = nominal["actuator_biasprm"]
        m.actuator_gainprm[:, 0] *= gain
        m.actuator_biasprm[:, 1:3] *= gain

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        if self.draw:
            if kwargs.get("seed") is not None:  # seed the generator first, so the draw is reproducible
                self.env.reset(seed=kwargs["seed"])
                kwargs = {**kwargs, "seed": None}
            rng = self.unwrapped.np_random
            self.context = {**self.context, **{k: float(v[int(rng.integers(len(v)))]) for k, v in self.draw.items()}}
        self._apply()
        obs, info = self.env.reset(**kwargs)
        info["context"] = dict(self.context)
        return self._observation(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(obs), reward, terminated, truncated, info
