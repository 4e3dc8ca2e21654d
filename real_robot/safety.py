"""The safety layer: every command to the arm passes through here. Pure logic, no ROS.

Limits hold in time, not per message: each command is limited against the real time elapsed since
the last command actually sent (`now`, on a monotonic clock), capped at one control period, so no
sequence of send times can move the commanded target faster than the velocity limit over any window,
or change its velocity faster than the acceleration limit (between commands at most a period apart).
A command sent after a gap longer than a period still moves at most one period's worth.

Position commands (joint targets), with dt the elapsed time so capped, in this order:
  1. a non-finite request -> hold;
  2. keep the target within `tracking_error` of the measured position (no wind-up) and inside the
     joint position limits;
  3. limit the commanded velocity (target step / dt) to the velocity limits, and its change per
     period to acceleration * dt (the rate limit);
  4. brake ahead of the position limits: toward a limit, no faster than a velocity from which the arm,
     after this step, can still stop inside the limit braking at the acceleration limit
     (v * dt + v^2 / (2 a) <= the distance left). A target clipped at the limit instead stops the
     arm there within a step or two, at up to about twice the acceleration limit;
  5. forward kinematics of the target must stay inside the workspace box, else hold.
Velocity commands: the same velocity and acceleration limits, then the same braking bound from the
measured pose over one period, so that one period at that velocity cannot leave the position limits
(with an arm that lags its commands this bound can win over the acceleration limit), then the
workspace check on the predicted pose.

A hold is the last commanded target (position mode) or zero velocity (velocity mode): a stop, which
may brake harder than the acceleration limit; everything else stays inside every limit. After a hold the
layer's reference is the arm standing at the hold target, timed at the hold's send time: the first command
after it accelerates from rest within acceleration * dt, dt the real time since the hold went out, whatever
the arm did before the hold (`resume`). So the promise holds over every pair of consecutive commands sent,
holds included. The one exception is a hold while another node commanded the arm (`resume` with
moved_by_other): that node may have moved it, so the layer starts again from the measured pose, at rest.
Every command, hold or not, carries the monotonic time the layer judged it at (`Command.time`).
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
    time: float | None = None    # the monotonic time the layer judged it at (its send time; None: not given)


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
        self.period = float(period)
        self.elapsed = self.period  # real time since the last command sent, for the command being filtered
        self.dt = self.period  # the time its step may use: `elapsed` capped at one period
        self.kind = kind
        self.workspace = workspace
        self.last_target: np.ndarray | None = None
        self.last_velocity = np.zeros_like(limits.low)
        self.last_time: float | None = None  # when the last command was sent (None: times not given)

    def start(self, measured: np.ndarray, now: float | None = None) -> None:
        """Anchor the layer at the arm's measured position (the first hold target)."""
        self.last_target = np.clip(np.asarray(measured, dtype=np.float64), self.limits.low, self.limits.high)
        self.last_velocity = np.zeros_like(self.limits.low)
        self.last_time = now

    def _elapsed(self, now: float | None) -> float:
        """The time since the last command sent (one period when times are not given)."""
        if now is None or self.last_time is None:
            return self.period
        return max(now - self.last_time, 0.0)

    def hold(self, reason: str, now: float | None = None) -> Command:
        """A stop; from here on the reference is the arm standing at the hold target, at time `now`."""
        self.last_velocity = np.zeros_like(self.limits.low)
        if now is not None:
            self.last_time = now
        if self.kind == "position":
            return Command(self.last_target.copy(), "position", hold=True, reasons=[reason], time=now)
        return Command(np.zeros_like(self.limits.low), "velocity", hold=True, reasons=[reason], time=now)

    def resume(self, measured: np.ndarray, now: float | None = None, moved_by_other: bool = False) -> None:
        """Back from a hold. The reference stays the hold (its target, at rest, at its send time), so the
        next command is limited against it; only when another node may have moved the arm meanwhile does
        the layer start again from the measured pose, at rest, at `now`."""
        if moved_by_other:
            self.start(measured, now)

    def filter(self, request: np.ndarray, measured: np.ndarray, now: float | None = None) -> Command:
        """The safe command for a requested target (position) or velocity (velocity mode), to be sent at
        time `now` (monotonic seconds; None: exactly one period after the last command)."""
        if self.last_target is None:
            raise RuntimeError("SafetyLayer.start(measured) must be called before filter()")
        request = np.asarray(request, dtype=np.float64)
        if request.shape != self.limits.low.shape or not np.all(np.isfinite(request)):
            return self.hold("non-finite or misshaped request", now)
        measured = np.asarray(measured, dtype=np.float64)
        self.elapsed = self._elapsed(now)
        self.dt = min(self.elapsed, self.period)
        if now is not None:
            self.last_time = now
        cmd = self._position(request, measured) if self.kind == "position" else self._velocity(request, measured)
        cmd.time = now
        return cmd

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

    def _brake_before_limits(self, velocity: np.ndarray, position: np.ndarray, dt: float, reasons: list[str]) -> np.ndarray:
        """Cut the velocity toward each position limit to the fastest from which the arm, after `dt` at that
        velocity, can still stop inside the limit at the acceleration limit: v dt + v^2 / (2 a) <= distance.
        Braking at most a dt per step never covers more than v^2 / (2 a), so each later step finds its own
        bound within reach of the acceleration limit, and the arm comes to rest at the limit, not through it."""
        lim = self.limits
        a_dt = lim.acceleration * dt

        def fastest(distance: np.ndarray) -> np.ndarray:
            return np.sqrt(a_dt ** 2 + 2.0 * lim.acceleration * np.maximum(distance, 0.0)) - a_dt

        braked = np.clip(velocity, -fastest(position - lim.low), fastest(lim.high - position))
        if np.any(braked != velocity):
            reasons.append("position")
        return braked

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
        if self.dt <= 1e-9:  # no time has passed since the last command: it may not move at all
            return Command(self.last_target.copy(), "position", reasons=[*reasons, "velocity"])
        velocity = self._limit_velocity((inside - self.last_target) / self.dt, reasons)
        velocity = self._brake_before_limits(velocity, self.last_target, self.dt, reasons)
        safe = np.clip(self.last_target + velocity * self.dt, lim.low, lim.high)   # a guard against rounding
        if self.workspace is not None and not self.workspace.contains(safe):
            return self.hold("workspace")
        # the velocity the arm was actually commanded: this step over the real time it has to make it
        self.last_velocity = (safe - self.last_target) / self.elapsed
        self.last_target = safe
        return Command(safe, "position", reasons=reasons)

    def _velocity(self, velocity: np.ndarray, measured: np.ndarray) -> Command:
        lim, reasons = self.limits, []
        smooth = self._limit_velocity(velocity, reasons)
        # A velocity command lasts until the next one, a period later: braking from the measured pose over
        # one period keeps that period, and the stop after it, inside the position limits.
        bounded = self._brake_before_limits(smooth, measured, self.period, reasons)
        if self.workspace is not None and not self.workspace.contains(measured + bounded * self.period):
            return self.hold("workspace")
        self.last_velocity = bounded
        self.last_target = np.clip(measured + bounded * self.period, lim.low, lim.high)
        return Command(bounded, "velocity", reasons=reasons)
