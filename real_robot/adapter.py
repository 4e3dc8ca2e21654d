"""ROS state <-> the observation and action of the sim task the policy was trained on.

State: a sensor_msgs/JointState dict. It may list more joints than the robot config (a gripper, say)
and in any order; the configured joints are picked by name. A state is refused (and the arm held)
when a configured joint is missing, arrays disagree in length, a value is not a finite number, or
a position is outside its limits by more than `state_tolerance`.

Action: a policy action in [-1, 1]^n is a joint velocity of action * max_velocity held for one
control period, the meaning ArmReach-v0 gives it. Position mode turns it into a target
(measured + velocity * period); velocity mode sends the velocity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from robo_rl.real_robot.robot import RobotConfig


class StateError(ValueError):
    """A joint state that must not drive the arm; the text says why."""


@dataclass(frozen=True)
class JointReading:
    positions: np.ndarray
    velocities: np.ndarray


def _numbers(values: Any, field: str) -> list[float]:
    if not isinstance(values, (list, tuple)):
        raise StateError(f"{field} is not a list")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise StateError(f"{field} has a non-finite or non-numeric value {v!r}")
    return [float(v) for v in values]


class Adapter:
    def __init__(self, robot: RobotConfig) -> None:
        self.robot = robot

    def reading(self, state: Mapping[str, Any]) -> JointReading:
        """The configured joints' positions and velocities from a JointState dict, or StateError."""
        if not isinstance(state, Mapping):
            raise StateError("state is not a message object")
        names = state.get("name")
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise StateError("name is not a list of joint names")
        positions = _numbers(state.get("position"), "position")
        velocities = _numbers(state.get("velocity") or [0.0] * len(names), "velocity")
        if len(positions) != len(names) or len(velocities) != len(names):
            raise StateError(f"{len(names)} names but {len(positions)} positions and {len(velocities)} velocities")
        missing = [j for j in self.robot.joints if j not in names]
        if missing:
            raise StateError(f"joints {missing} are missing from the state")
        index = [names.index(j) for j in self.robot.joints]
        q = np.array([positions[i] for i in index])
        qd = np.array([velocities[i] for i in index])
        lim, tol = self.robot.limits, self.robot.limits.state_tolerance
        outside = np.flatnonzero((q < lim.low - tol) | (q > lim.high + tol))
        if outside.size:
            j = int(outside[0])
            raise StateError(f"{self.robot.joints[j]} at {q[j]:.3f} rad is outside [{lim.low[j]}, {lim.high[j]}]")
        return JointReading(q, qd)

    def observation(self, reading: JointReading) -> np.ndarray:
        parts = {"joint_positions": reading.positions, "joint_velocities": reading.velocities, "goal": self.robot.goal}
        if "goal_error" in self.robot.observation:
            parts["goal_error"] = self.robot.goal_error_scale * (self.robot.goal - reading.positions)
        return np.concatenate([parts[p] for p in self.robot.observation]).astype(np.float32)

    def request(self, action: np.ndarray, reading: JointReading) -> np.ndarray:
        """Target positions (position mode) or velocities (velocity mode) the policy asks for.

        NaN passes through on purpose: the safety layer turns it into a hold."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        velocity = np.clip(action, -1.0, 1.0) * self.robot.max_velocity
        velocity[~np.isfinite(action)] = np.nan
        if self.robot.command_type == "position":
            return reading.positions + velocity * self.robot.period
        return velocity

    def goal_distance(self, reading: JointReading) -> float | None:
        if len(self.robot.goal) != self.robot.n_joints:
            return None
        return float(np.linalg.norm(reading.positions - self.robot.goal))


def check_spaces(robot: RobotConfig, info: Mapping[str, Any], source: str) -> None:
    """Refuse a checkpoint whose observation/action spaces do not match the robot, naming the mismatch."""
    from robo_rl.config import ConfigError

    agent = info.get("agent") or {}
    obs_space, act_space = agent.get("observation_space") or {}, agent.get("action_space") or {}
    obs_shape, act_shape = tuple(obs_space.get("shape") or ()), tuple(act_space.get("shape") or ())
    if obs_shape != (robot.observation_size(),):
        raise ConfigError(f"{source}: the policy observes shape {obs_shape} but robot '{robot.name}' gives "
                          f"({robot.observation_size()},) = {robot.describe_observation()}")
    if act_shape != (robot.n_joints,):
        raise ConfigError(f"{source}: the policy acts with shape {act_shape} but robot '{robot.name}' has "
                          f"{robot.n_joints} joints {list(robot.joints)}")
    env = info.get("env") or {}
    env_id = env.get("id")
    if robot.env_id and env_id and env_id != robot.env_id:
        raise ConfigError(f"{source}: the policy was trained on {env_id} but robot '{robot.name}' maps to {robot.env_id}")
    if env_id == "ArmReach-v0":
        _check_arm_task(robot, dict(env.get("kwargs") or {}), source)
    low, high = act_space.get("low"), act_space.get("high")
    if low is not None and (np.min(low) < -1.0 - 1e-6 or np.max(high) > 1.0 + 1e-6):
        raise ConfigError(f"{source}: the policy's action space is not [-1, 1] (got [{np.min(low)}, {np.max(high)}])")


def _check_arm_task(robot: RobotConfig, kwargs: dict, source: str) -> None:
    """The settings that give ArmReach-v0's observation and action their meaning must match the robot."""
    import inspect

    from robo_rl.config import ConfigError
    from robo_rl.envs.arm import ArmReachEnv

    defaults = {k: p.default for k, p in inspect.signature(ArmReachEnv).parameters.items()}
    pairs = [("control_dt", robot.period, "robot.control_rate (as its period)"),
             ("max_velocity", robot.max_velocity, "robot.action.max_velocity"),
             ("error_scale", robot.goal_error_scale, "robot.goal_error_scale")]
    for name, value, key in pairs:
        trained = float(kwargs.get(name, defaults[name]))
        if abs(trained - value) > 1e-9 * max(1.0, abs(value)):
            raise ConfigError(f"{source}: the policy was trained with {name}={trained:g} but {key} gives {value:g}")
