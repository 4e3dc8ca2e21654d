"""A ROS 1 node that is the MuJoCo arm: publishes sensor_msgs/JointState at the control rate (or
--rate) and follows commands on the robot config's command topic, like an arm's driver with a
position or velocity controller. Same model and action meaning as ArmReach-v0. Like a real driver,
its controller runs in real time at the physics step (2 ms), whatever rate states go out at: a
one-point JointTrajectory is followed in a straight line reaching its point time_from_start later,
a Float64MultiArray position is the setpoint at once, a velocity moves the setpoint at that speed for
at most VELOCITY_TIMEOUT_PERIODS control periods, then the arm stops until the next command.

  python -m robo_rl.real_robot.sim_arm_node [--robot sim_arm] [--rate HZ] [--command-type ...]
      [--fault nan|range|malformed|silence|freeze [--fault-after SECONDS]] [--no-stamps]
      [--duration SECONDS]

Commands that do not fit (wrong joint names or counts, non-finite values) are ignored with a
warning. --fault makes the node misbehave (after --fault-after seconds, or from the moment it gets
SIGUSR1), for the deploy loop's fault tests: `freeze` republishes its last message unchanged (same
header stamp, same positions), as a hung driver does; --no-stamps sends zero stamps, as some do.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import numpy as np


def _robot(name: str, overrides: list[str]):
    from hydra import compose, initialize_config_module

    from robo_rl.real_robot.robot import robot_config

    with initialize_config_module(config_module="robo_rl.configs", version_base="1.3"):
        cfg = compose(config_name="deploy", overrides=[f"robot={name}", *overrides])
    return robot_config(cfg.robot)


VELOCITY_LEAD = 0.1   # rad: how far a velocity-mode setpoint may run ahead of the arm
# A velocity command lasts this many control periods at most, then the arm stops, as velocity drivers with a
# command timeout do: deploy means each command for one period, and a deploy process stalled (or gone) past
# that cannot stop the arm itself. Two periods leave room for ordinary jitter between commands.
VELOCITY_TIMEOUT_PERIODS = 2


class Setpoint:
    """What a joint trajectory controller does with a one-point trajectory: move the setpoint in a straight
    line from where it is to the point, arriving `time_from_start` later (0: at once, as a forward
    position controller does with a Float64MultiArray)."""

    def __init__(self, start: np.ndarray) -> None:
        self._lock = threading.Lock()
        self.origin, self.goal, self.t0, self.duration = start.copy(), start.copy(), 0.0, 0.0

    def command(self, goal: np.ndarray, now: float, duration: float) -> None:
        with self._lock:
            self.origin, self.goal, self.t0, self.duration = self._at(now), goal, now, duration

    def at(self, now: float) -> np.ndarray:
        with self._lock:
            return self._at(now)

    def _at(self, now: float) -> np.ndarray:
        if self.duration <= 0:
            return self.goal.copy()
        fraction = min(max((now - self.t0) / self.duration, 0.0), 1.0)
        return self.origin + fraction * (self.goal - self.origin)


def _time_from_start(msg: dict) -> float:
    points = msg.get("points") or [{}]
    duration = points[-1].get("time_from_start") or {}
    return duration.get("secs", 0) + 1e-9 * duration.get("nsecs", 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sim_arm_node")
    parser.add_argument("--robot", default="sim_arm")
    parser.add_argument("--rate", type=float, default=None, help="state rate in Hz (default: the robot's control rate)")
    parser.add_argument("--command-type", choices=["position", "velocity"], default=None)
    parser.add_argument("--command-message", choices=["trajectory", "array"], default=None)
    parser.add_argument("--fault", choices=["nan", "range", "malformed", "silence", "freeze"], default=None)
    parser.add_argument("--fault-after", type=float, default=None, help="seconds (default: on SIGUSR1)")
    parser.add_argument("--record-speed", default=None, metavar="FILE",
                        help="keep the peak measured joint speed (rad/s, per joint) in this JSON file, updated every second")
    parser.add_argument("--no-stamps", action="store_true", help="publish header stamps of zero")
    parser.add_argument("--duration", type=float, default=600.0, help="exit after this many seconds")
    opts = parser.parse_args(argv)
    overrides = []
    if opts.rate:
        overrides.append(f"robot.control_rate={opts.rate}")
    if opts.command_type:
        overrides.append(f"robot.command.type={opts.command_type}")
    if opts.command_message:
        overrides.append(f"robot.command.message={opts.command_message}")
    robot = _robot(opts.robot, overrides)

    from robo_rl.envs.arm import ArmSim
    from robo_rl.real_robot import messages
    from robo_rl.real_robot.transport import import_rospy

    rospy = import_rospy()
    rospy.init_node("sim_arm", disable_signals=True)
    sim = ArmSim()
    sim.reset(robot.start)
    setpoint = Setpoint(robot.start)
    velocity = np.zeros(robot.n_joints)
    velocity_until = 0.0   # sim time after which the last velocity command no longer holds
    state_cls = messages.ros_class(messages.JOINT_STATE)
    command_type = robot.command_ros_type

    def on_command(msg) -> None:
        nonlocal velocity, velocity_until
        data = messages.from_ros(msg)
        try:
            values = np.asarray(messages.command_values(data, command_type, robot.joints, robot.command_type))
        except messages.MessageError as exc:
            rospy.logwarn(f"sim_arm: ignored command: {exc}")
            return
        if robot.command_type == "position":
            duration = _time_from_start(data) if command_type == messages.JOINT_TRAJECTORY else 0.0
            setpoint.command(values, sim.time, duration)
        else:
            velocity, velocity_until = values, sim.time + VELOCITY_TIMEOUT_PERIODS * robot.period

    pub = rospy.Publisher(robot.state_topic, state_cls, queue_size=1, tcp_nodelay=True)
    rospy.Subscriber(robot.command_topic, messages.ros_class(command_type), on_command, queue_size=1, tcp_nodelay=True)
    period = robot.period
    start = time.monotonic()
    fault_on = [False]
    signal.signal(signal.SIGUSR1, lambda *_: fault_on.__setitem__(0, True))
    last_state = None
    peak_speed, ticks = np.zeros(robot.n_joints), 0
    print(f"sim_arm: publishing {robot.state_topic} at {robot.control_rate:g} Hz, following {robot.command_topic}", flush=True)
    # The arm's own controller runs in real time at the physics step; states go out every `period`.
    step = sim.model.opt.timestep
    steps_per_state = max(1, int(round(period / step)))
    held = robot.start.copy()   # velocity mode: the position setpoint the commanded velocity moves
    physics_steps, next_step = 0, start
    while not rospy.is_shutdown() and time.monotonic() - start < opts.duration:
        if robot.command_type == "velocity":
            # Integrate the commanded velocity into the setpoint, kept near the arm (no wind-up); a command
            # past its timeout moves it no more.
            moving = velocity if sim.time < velocity_until else 0.0
            held = np.clip(held + moving * step, sim.positions - VELOCITY_LEAD, sim.positions + VELOCITY_LEAD)
            sim.set_position_target(held)
        else:
            sim.set_position_target(setpoint.at(sim.time))
        sim.advance(step)
        peak_speed = np.maximum(peak_speed, np.abs(sim.velocities))
        physics_steps += 1
        next_step += step
        if physics_steps % steps_per_state:
            time.sleep(max(0.0, next_step - time.monotonic()))
            continue
        names, q, qd = list(robot.joints), sim.positions, sim.velocities
        if opts.fault_after is not None and time.monotonic() - start > opts.fault_after:
            fault_on[0] = True
        faulty = opts.fault is not None and fault_on[0]
        if faulty and opts.fault == "silence":
            pass
        elif faulty and opts.fault == "freeze" and last_state is not None:
            pub.publish(last_state)
        else:
            if faulty and opts.fault == "nan":
                q = q.copy()
                q[0] = np.nan
            elif faulty and opts.fault == "range":
                q = q + 5.0
            elif faulty and opts.fault == "malformed":
                names = names[:3]
            state = messages.joint_state(names, q, qd)
            if opts.no_stamps:
                state["header"]["stamp"] = {"secs": 0, "nsecs": 0}
            last_state = messages.to_ros(state_cls, state)
            pub.publish(last_state)
        ticks += 1
        if opts.record_speed and ticks % max(1, int(robot.control_rate)) == 0:
            _write_json(opts.record_speed, {"peak_speed": peak_speed.tolist(), "ticks": ticks})
        time.sleep(max(0.0, next_step - time.monotonic()))
    return 0


def _write_json(path: str, data: dict) -> None:
    import json
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
