"""A robot's description (configs/robot/*.yaml), validated once at start.

Everything that differs between arms lives here: joint names and limits, control rate, topics,
command type and message, workspace box, observation layout, action scale and the goal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from robo_rl.config import ConfigError

OBSERVATION_PARTS = ("joint_positions", "joint_velocities", "goal", "goal_error")
COMMAND_TYPES = ("position", "velocity")
COMMAND_MESSAGES = ("trajectory", "array")
STAMP_CHECKS = ("check", "ignore")


@dataclass(frozen=True)
class Limits:
    low: np.ndarray
    high: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    tracking_error: float
    state_tolerance: float


@dataclass(frozen=True)
class RobotConfig:
    name: str
    env_id: str | None
    joints: tuple[str, ...]
    limits: Limits
    control_rate: float
    command_type: str
    command_message: str
    command_topic: str
    state_topic: str
    estop_topic: str | None
    allowed_publish: frozenset[str]
    workspace: Mapping[str, Any] | None
    observation: tuple[str, ...]
    max_velocity: float
    goal: np.ndarray
    goal_error_scale: float
    start: np.ndarray
    state_timeout: float
    check_stamps: bool           # a state is fresh only if its header stamp advanced and is recent
    share_command_topic: bool    # False: refuse to start / hold while another node publishes commands
    rosbridge_host: str
    rosbridge_port: int

    @property
    def period(self) -> float:
        return 1.0 / self.control_rate

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    def observation_size(self) -> int:
        return sum(self._part_sizes()[p] for p in self.observation)

    def describe_observation(self) -> str:
        sizes = self._part_sizes()
        return " + ".join(f"{p}[{sizes[p]}]" for p in self.observation)

    def _part_sizes(self) -> dict[str, int]:
        n = self.n_joints
        return {"joint_positions": n, "joint_velocities": n, "goal": len(self.goal), "goal_error": n}

    @property
    def command_ros_type(self) -> str:
        return "trajectory_msgs/JointTrajectory" if self.command_message == "trajectory" else "std_msgs/Float64MultiArray"


def _vector(cfg: Mapping[str, Any], key: str, n: int, where: str) -> np.ndarray:
    value = cfg.get(key)
    try:
        array = np.asarray(list(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{where}.{key}' must be a list of {n} numbers, got {value!r}") from None
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise ConfigError(f"config key '{where}.{key}' must be a list of {n} finite numbers, got {list(value)}")
    return array


def _positive(value: Any, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"config key '{key}' must be a number > 0, got {value!r}")
    return float(value)


def robot_config(cfg: Mapping[str, Any]) -> RobotConfig:
    """Validate a `robot` config node; every problem is one line naming the key."""
    joints = tuple(str(j) for j in (cfg.get("joints") or []))
    if not joints or len(set(joints)) != len(joints):
        raise ConfigError(f"config key 'robot.joints' must list distinct joint names, got {list(joints)}")
    n = len(joints)
    lim = cfg.get("limits") or {}
    limits = Limits(*(_vector(lim, k, n, "robot.limits") for k in ("position_low", "position_high", "velocity", "acceleration")),
                    tracking_error=_positive(lim.get("tracking_error"), "robot.limits.tracking_error"),
                    state_tolerance=float(lim.get("state_tolerance", 0.0)))
    if np.any(limits.low >= limits.high):
        raise ConfigError("config key 'robot.limits': every position_low must be below its position_high")
    if np.any(limits.velocity <= 0) or np.any(limits.acceleration <= 0):
        raise ConfigError("config key 'robot.limits': velocity and acceleration limits must be > 0")
    command = cfg.get("command") or {}
    if command.get("type") not in COMMAND_TYPES:
        raise ConfigError(f"config key 'robot.command.type' must be one of {', '.join(COMMAND_TYPES)}, got {command.get('type')!r}")
    if command.get("message") not in COMMAND_MESSAGES:
        raise ConfigError(f"config key 'robot.command.message' must be one of {', '.join(COMMAND_MESSAGES)}, got {command.get('message')!r}")
    topics = cfg.get("topics") or {}
    allowed = frozenset(str(t) for t in (cfg.get("allowed_publish") or []))
    if command.get("topic") not in allowed:
        raise ConfigError(f"config key 'robot.command.topic' '{command.get('topic')}' is not in robot.allowed_publish {sorted(allowed)}")
    for key, topic in [("robot.command.topic", command.get("topic")), ("robot.topics.state", topics.get("state"))]:
        if not isinstance(topic, str) or not topic.startswith("/"):
            raise ConfigError(f"config key '{key}' must be an absolute topic name, got {topic!r}")
    observation = tuple(str(p) for p in (cfg.get("observation") or []))
    bad = [p for p in observation if p not in OBSERVATION_PARTS]
    if not observation or bad:
        raise ConfigError(f"config key 'robot.observation' has unknown parts {bad} (valid: {', '.join(OBSERVATION_PARTS)})")
    goal = np.asarray(list(cfg.get("goal") or []), dtype=np.float64)
    if "goal" in observation and goal.size == 0:
        raise ConfigError("config key 'robot.goal' is empty but the observation has a goal part")
    if "goal_error" in observation and goal.size != n:
        raise ConfigError(f"config key 'robot.goal' needs {n} joint positions for the goal_error part, got {goal.size}")
    workspace = cfg.get("workspace") or None
    if workspace and workspace.get("model"):
        for key in ("low", "high"):
            _vector(workspace, key, 3, "robot.workspace")
        workspace = dict(workspace)
    else:
        workspace = None
    bridge = cfg.get("rosbridge") or {}
    watchdog = cfg.get("watchdog") or {}
    stamps = watchdog.get("stamps", "check")
    if stamps not in STAMP_CHECKS:
        raise ConfigError(f"config key 'robot.watchdog.stamps' must be one of {', '.join(STAMP_CHECKS)}, got {stamps!r}")
    share = command.get("share", False)
    if not isinstance(share, bool):
        raise ConfigError(f"config key 'robot.command.share' must be true or false, got {share!r}")
    return RobotConfig(
        name=str(cfg.get("name", "robot")), env_id=cfg.get("env_id"), joints=joints, limits=limits,
        control_rate=_positive(cfg.get("control_rate"), "robot.control_rate"),
        command_type=command["type"], command_message=command["message"], command_topic=command["topic"],
        state_topic=topics["state"], estop_topic=topics.get("estop"), allowed_publish=allowed,
        workspace=workspace, observation=observation,
        max_velocity=_positive((cfg.get("action") or {}).get("max_velocity"), "robot.action.max_velocity"),
        goal=goal, goal_error_scale=float(cfg.get("goal_error_scale", 1.0)), start=_vector(cfg, "start", n, "robot") if cfg.get("start") is not None else np.zeros(n),
        state_timeout=_positive(watchdog.get("state_timeout"), "robot.watchdog.state_timeout"),
        check_stamps=stamps == "check", share_command_topic=share,
        rosbridge_host=str(bridge.get("host", "127.0.0.1")), rosbridge_port=int(bridge.get("port", 9090)),
    )


def workspace_model_path(name: str) -> str:
    """'arm7' is the suite's arm; anything else is a MuJoCo XML file path."""
    if name == "arm7":
        from robo_rl.envs.arm import arm_model_path

        return arm_model_path()
    if not Path(name).is_file():
        raise ConfigError(f"config key 'robot.workspace.model': file '{name}' does not exist")
    return name
