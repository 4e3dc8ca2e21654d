"""The safety layer: every command to the arm passes through here. Pure logic, no ROS.

Position commands (joint targets), per control period dt, in this order:
  1. a non-finite request -> hold;
  2. keep the target within `tracking_error` of the measured position (no wind-up) and inside the
     joint position limits;
  3. limit the commanded velocity (target step / dt) to the velocity limits, and its change per
     period to acceleration * dt (the rate limit);
  4. forward kinematics of the target must stay inside the workspace box, else hold.
Velocity commands: the same velocity and acceleration limits, then the velocity is cut so that one
period at that velocity cannot leave the position limits (this bound wins over the acceleration
limit), then the workspace check on the predicted pose.

A hold is the last commanded target (position mode) or zero velocity (velocity mode): a stop, which
may brake harder than the acceleration limit; everything else stays inside every limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robo_rl.real_robot.robot import Limits, RobotConfig, workspace_model_path


@dataclass
class Command:
    values: np.ndarray           # joint targets (position mode) or joint velocities (velocity mode)
    kind: str                    # "position" | "velocity"
    hold: bool = False
    reasons: list[str] = field(default_factory=list)   # which limits acted on this command


class Workspace:
    """Cartesian box for one site of a MuJoCo model, checked by forward kinematics."""

    def __init__(self, model_path: str, site: str, low: np.ndarray, high: np.ndarray) -> None:
        import mujoco

        self._mujoco = mujoco
        self.model = mujoco.MjModel.from_xml_path(model_path)
        self.data = mujoco.MjData(self.model)
        self.site = self.model.site(site).id
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)

    def position(self, joint_positions: np.ndarray) -> np.ndarray:
        self.data.qpos[: len(joint_positions)] = joint_positions
        self._mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy()

    def contains(self, joint_positions: np.ndarray) -> bool:
        p = self.position(joint_positions)
        return bool(np.all(p >= self.low) and np.all(p <= self.high))


def make_workspace(robot: RobotConfig) -> Workspace | None:
    ws = robot.workspace
    if not ws:
        return None
    return Workspace(workspace_model_path(str(ws["model"])), str(ws.get("site", "ee")), np.asarray(ws["low"]), np.asarray(ws["high"]))


class SafetyLayer:
    def __init__(self, limits: Limits, period: float, kind: str, workspace: Workspace | None = None) -> None:
        self.limits = limits
        self.dt = float(period)
        self.kind = kind
        self.workspace = workspace
        self.last_target: np.ndarray | None = None
        self.last_velocity = np.zeros_like(limits.low)

    def start(self, measured: np.ndarray) -> None:
        """Anchor the layer at the arm's measured position (the first hold target)."""
        self.last_target = np.clip(np.asarray(measured, dtype=np.float64), self.limits.low, self.limits.high)
        self.last_velocity = np.zeros_like(self.limits.low)

    def hold(self, reason: str) -> Command:
        self.last_velocity = np.zeros_like(self.limits.low)
        if self.kind == "position":
            return Command(self.last_target.copy(), "position", hold=True, reasons=[reason])
        return Command(np.zeros_like(self.limits.low), "velocity", hold=True, reasons=[reason])

    def filter(self, request: np.ndarray, measured: np.ndarray) -> Command:
        """The safe command for a requested target (position) or velocity (velocity mode)."""
        if self.last_target is None:
            raise RuntimeError("SafetyLayer.start(measured) must be called before filter()")
        request = np.asarray(request, dtype=np.float64)
        if request.shape != self.limits.low.shape or not np.all(np.isfinite(request)):
            return self.hold("non-finite or misshaped request")
        measured = np.asarray(measured, dtype=np.float64)
        if self.kind == "position":
            return self._position(request, measured)
        return self._velocity(request, measured)

    def _limit_velocity(self, velocity: np.ndarray, reasons: list[str]) -> np.ndarray:
        lim = self.limits
        limited = np.clip(velocity, -lim.velocity, lim.velocity)
        if np.any(limited != velocity):
            reasons.append("velocity")
        step = lim.acceleration * self.dt
        smooth = np.clip(limited, self.last_velocity - step, self.last_velocity + step)
        if np.any(smooth != limited):
            reasons.append("acceleration")
        return smooth

    def _position(self, target: np.ndarray, measured: np.ndarray) -> Command:
        lim, reasons = self.limits, []
        window = np.clip(target, measured - lim.tracking_error, measured + lim.tracking_error)
        if np.any(window != target):
            reasons.append("tracking_error")
        inside = np.clip(window, lim.low, lim.high)
        if np.any(inside != window):
            reasons.append("position")
        # The last target and `inside` both lie in the position box, so every step toward `inside`
        # (shortened per joint by the velocity and acceleration limits) stays in the box too.
        velocity = self._limit_velocity((inside - self.last_target) / self.dt, reasons)
        safe = np.clip(self.last_target + velocity * self.dt, lim.low, lim.high)
        if self.workspace is not None and not self.workspace.contains(safe):
            return self.hold("workspace")
        self.last_velocity = (safe - self.last_target) / self.dt
        self.last_target = safe
        return Command(safe, "position", reasons=reasons)

    def _velocity(self, velocity: np.ndarray, measured: np.ndarray) -> Command:
        lim, reasons = self.limits, []
        smooth = self._limit_velocity(velocity, reasons)
        # Velocities that keep one period inside the position limits (and within the velocity limits).
        low = np.clip((lim.low - measured) / self.dt, -lim.velocity, lim.velocity)
        high = np.clip((lim.high - measured) / self.dt, -lim.velocity, lim.velocity)
        bounded = np.clip(smooth, low, high)
        if np.any(bounded != smooth):
            reasons.append("position")
        if self.workspace is not None and not self.workspace.contains(measured + bounded * self.dt):
            return self.hold("workspace")
        self.last_velocity = bounded
        self.last_target = np.clip(measured + bounded * self.dt, lim.low, lim.high)
        return Command(bounded, "velocity", reasons=reasons)
