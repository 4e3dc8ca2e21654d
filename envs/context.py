"""Contextual variants: physical parameters set from a context dict at every reset.

Parameters are applied relative to the model's own values, which are remembered once, so
changing the context between episodes never compounds. Keys (null or missing = unchanged):
  gravity               z-gravity in m/s^2 (a number) or a full 3-vector
  mass_scale            factor on every body mass and inertia
  friction_scale        factor on every geom's sliding friction
  actuator_gain_scale   factor on actuator gain (and servo stiffness, so position targets keep their meaning)
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from robo_rl.envs.render import mujoco_handles

CONTEXT_KEYS = ("gravity", "mass_scale", "friction_scale", "actuator_gain_scale")


def active_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keys of `context` that change something; raises on unknown keys."""
    context = dict(context or {})
    unknown = sorted(set(context) - set(CONTEXT_KEYS))
    if unknown:
        raise ValueError(f"unknown context key '{unknown[0]}' (valid: {', '.join(CONTEXT_KEYS)})")
    return {k: v for k, v in context.items() if v is not None}


class ContextWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    def __init__(self, env: gym.Env, context: Mapping[str, Any]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, context=dict(context))
        gym.Wrapper.__init__(self, env)
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
        self.context = active_context(context)

    def set_context(self, context: Mapping[str, Any]) -> None:
        """Takes effect at the next reset."""
        self.context = active_context(context)

    def _apply(self) -> None:
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
        self._apply()
        obs, info = self.env.reset(**kwargs)
        info["context"] = dict(self.context)
        return obs, info
