"""Safety layer, adapter, robot config and message checks: pure logic, no ROS needed."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from robo_rl.config import ConfigError, compose
from robo_rl.real_robot import messages
from robo_rl.real_robot.adapter import Adapter, StateError, check_spaces
from robo_rl.real_robot.robot import robot_config
from robo_rl.real_robot.safety import SafetyLayer, make_workspace
from robo_rl.real_robot.transport import Transport, TransportError

EPS = 1e-9


def robot(*overrides):
    return robot_config(compose(["checkpoint=x", *overrides], "deploy").robot)


ROBOT = robot()
N = ROBOT.n_joints
any_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
requests = arrays(np.float64, (N,), elements=any_floats | st.floats(-1e7, 1e7))
positions = arrays(np.float64, (N,), elements=st.floats(-1.9, 1.9))


def assert_within_limits(layer, cmd, before_target, before_velocity, measured):
    lim, dt = layer.limits, layer.dt
    assert np.all(np.isfinite(cmd.values))
    if cmd.kind == "position":
        assert np.all(cmd.values >= lim.low - EPS) and np.all(cmd.values <= lim.high + EPS)
        if cmd.hold:
            return
        velocity = (cmd.values - before_target) / dt
        assert np.all(np.abs(velocity) <= lim.velocity + 1e-6)
        assert np.all(np.abs(velocity - before_velocity) <= lim.acceleration * dt + 1e-6)
    else:
        assert np.all(np.abs(cmd.values) <= lim.velocity + 1e-6)
        predicted = measured + cmd.values * dt
        assert np.all(predicted >= lim.low - 1e-6) and np.all(predicted <= lim.high + 1e-6)
    if layer.workspace is not None and not cmd.hold:
        q = cmd.values if cmd.kind == "position" else measured + cmd.values * dt
        assert layer.workspace.contains(q)


@pytest.mark.parametrize("kind", ["position", "velocity"])
@settings(max_examples=60, deadline=None, derandomize=True)
@given(start=positions, steps=st.lists(st.tuples(requests, positions), min_size=1, max_size=15))
def test_no_command_leaves_the_limits(kind, start, steps):
    layer = SafetyLayer(ROBOT.limits, ROBOT.period, kind, make_workspace(ROBOT))
    layer.start(start)
    for request, measured in steps:
        before_target, before_velocity = layer.last_target.copy(), layer.last_velocity.copy()
        cmd = layer.filter(request, measured)
        assert_within_limits(layer, cmd, before_target, before_velocity, measured)


def test_non_finite_request_holds_at_the_last_target():
    layer = SafetyLayer(ROBOT.limits, ROBOT.period, "position")
    layer.start(np.full(N, 0.3))
    cmd = layer.filter(np.full(N, np.nan), np.full(N, 0.3))
    assert cmd.hold and np.allclose(cmd.values, 0.3)
    vel = SafetyLayer(ROBOT.limits, ROBOT.period, "velocity")
    vel.start(np.zeros(N))
    assert np.all(vel.filter(np.array([np.inf] * N), np.zeros(N)).values == 0.0)


def test_velocity_and_acceleration_are_clamped():
    layer = SafetyLayer(ROBOT.limits, ROBOT.period, "position")
    layer.start(np.zeros(N))
    cmd = layer.filter(np.full(N, 100.0), np.zeros(N))
    step = cmd.values / ROBOT.period
    # From rest, the first period may only reach acceleration * dt of speed.
    assert np.allclose(step, ROBOT.limits.acceleration * ROBOT.period)
    assert {"tracking_error", "acceleration"} <= set(cmd.reasons)


def test_workspace_box_holds_the_arm():
    tight = robot("robot.workspace.low=[-0.05,-0.05,0.0]", "robot.workspace.high=[0.05,0.05,1.5]")
    layer = SafetyLayer(tight.limits, tight.period, "position", make_workspace(tight))
    layer.start(np.zeros(N))   # straight up: the end effector is on the z axis, inside the box
    for _ in range(20):
        cmd = layer.filter(np.array([0.0, 1.0, 0, 0, 0, 0, 0]), layer.last_target)
    assert cmd.hold and cmd.reasons == ["workspace"]
    assert layer.workspace.contains(cmd.values)


def state(names=None, q=None, qd=None):
    names = list(ROBOT.joints) if names is None else names
    return {"name": names, "position": list(np.zeros(len(names)) if q is None else q),
            "velocity": list(np.zeros(len(names)) if qd is None else qd)}


def test_adapter_reads_joints_by_name_and_builds_the_observation():
    adapter = Adapter(ROBOT)
    names = ["gripper", *reversed(ROBOT.joints)]
    q = [0.9, *[0.1 * i for i in range(N)]]
    reading = adapter.reading(state(names, q, [0.0] * (N + 1)))
    assert np.allclose(reading.positions, [0.1 * i for i in reversed(range(N))])
    obs = adapter.observation(reading)
    assert obs.shape == (3 * N,) and np.allclose(obs[2 * N:], ROBOT.goal_error_scale * (ROBOT.goal - reading.positions))
    target = adapter.request(np.ones(N), reading)
    assert np.allclose(target - reading.positions, ROBOT.max_velocity * ROBOT.period)


@pytest.mark.parametrize("bad, words", [
    (state(q=[np.nan] + [0.0] * (N - 1)), "non-finite"),
    (state(q=[9.0] + [0.0] * (N - 1)), "outside"),
    (state(names=["joint1", "joint2"]), "missing"),
    ({**state(), "position": [0.0] * 3}, "positions"),
    ({**state(), "position": "abc"}, "not a list"),
    ("garbage", "not a message"),
])
def test_adapter_refuses_bad_states(bad, words):
    with pytest.raises(StateError, match=words):
        Adapter(ROBOT).reading(bad)


def test_spaces_mismatch_names_the_shapes():
    info = {"agent": {"observation_space": {"shape": [17]}, "action_space": {"shape": [7], "low": [-1] * 7, "high": [1] * 7}}}
    with pytest.raises(ConfigError, match=r"observes shape \(17,\).*goal_error\[7\]"):
        check_spaces(ROBOT, info, "ckpt")
    info["agent"]["observation_space"]["shape"] = [21]
    info["agent"]["action_space"]["shape"] = [6]
    with pytest.raises(ConfigError, match="acts with shape"):
        check_spaces(ROBOT, info, "ckpt")
    info["agent"]["action_space"]["shape"] = [7]
    info["env"] = {"id": "ArmReach-v0", "kwargs": {"control_dt": 0.01}}
    with pytest.raises(ConfigError, match="control_dt=0.01 but robot.control_rate"):
        check_spaces(ROBOT, info, "ckpt")
    info["env"] = {"id": "ArmReach-v0", "kwargs": {}}
    check_spaces(ROBOT, info, "ckpt")


@pytest.mark.parametrize("override, key", [
    ("robot.limits.velocity=[1,1]", "robot.limits.velocity"),
    ("robot.command.type=torque", "robot.command.type"),
    ("robot.command.topic=/elsewhere", "allowed_publish"),
    ("robot.observation=[joint_positions,torques]", "robot.observation"),
    ("robot.control_rate=0", "robot.control_rate"),
])
def test_bad_robot_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        robot(override)


def test_messages_are_checked_against_ros_types():
    good = messages.joint_trajectory(ROBOT.joints, np.zeros(N), "position", 0.05)
    messages.validate(messages.JOINT_TRAJECTORY, good)
    messages.validate(messages.JOINT_STATE, messages.joint_state(ROBOT.joints, np.zeros(N), np.zeros(N)))
    with pytest.raises(messages.MessageError, match="points\\[0\\].positions\\[0\\]"):
        bad = messages.joint_trajectory(ROBOT.joints, np.zeros(N), "position", 0.05)
        bad["points"][0]["positions"][0] = "x"
        messages.validate(messages.JOINT_TRAJECTORY, bad)
    with pytest.raises(messages.MessageError, match="unknown field 'pose'"):
        messages.validate(messages.JOINT_STATE, {"pose": []})
    assert messages.command_values(good, messages.JOINT_TRAJECTORY, ROBOT.joints, "position") == [0.0] * N


class MemoryTransport(Transport):
    def __init__(self, allowed):
        super().__init__(allowed)
        self.sent = []

    def connect(self, timeout): pass
    def subscribe(self, topic, ros_type, callback, queue_size=1): pass
    def _advertise(self, topic, ros_type): pass
    def _publish(self, topic, msg): self.sent.append((topic, msg))
    def close(self): pass


def test_only_allow_listed_topics_are_published():
    transport = MemoryTransport(ROBOT.allowed_publish)
    with pytest.raises(TransportError, match="not in the robot's allowed_publish"):
        transport.advertise("/other_arm/command", messages.JOINT_TRAJECTORY)
    with pytest.raises(TransportError, match="not advertised"):
        transport.publish(ROBOT.command_topic, {})
    transport.advertise(ROBOT.command_topic, messages.JOINT_TRAJECTORY)
    with pytest.raises(messages.MessageError):
        transport.publish(ROBOT.command_topic, {"joint_names": "joint1"})
    transport.publish(ROBOT.command_topic, messages.joint_trajectory(ROBOT.joints, np.zeros(N), "position", 0.05))
    assert len(transport.sent) == 1 and ROBOT.rosbridge_host == "127.0.0.1"


# --- limits in time: any arrival times, any requests ---------------------------------------------
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


SAME_INSTANT = 1e-9   # s: the layer's own threshold for "no time has passed"


@settings(max_examples=150, deadline=None, derandomize=True)   # the same examples on every run: no chance reds in CI
@given(gaps=st.lists(st.floats(0.0, 0.2), min_size=2, max_size=60),
       requests=st.lists(st.lists(st.floats(-5.0, 5.0), min_size=N, max_size=N), min_size=60, max_size=60),
       kind=st.sampled_from(["position", "velocity"]))
# once found: a command a picosecond after one that moved (the layer repeats the target)
@example(gaps=[0.0, 0.03125, 1e-12], requests=[[0.0] * N, [0.0] * (N - 1) + [1.0]] + [[0.0] * N] * 58, kind="position")
def test_commanded_motion_stays_within_the_limits_whatever_the_send_times(gaps, requests, kind):
    """Commands at random times (bursts far faster than the control rate, and gaps longer than a
    period), random requests: over every window the commanded target moves at most velocity * time,
    and between commands at most a period apart its velocity changes by at most acceleration * time."""
    lim = ROBOT.limits
    layer = SafetyLayer(lim, ROBOT.period, kind)
    now, measured = 100.0, np.zeros(N)
    layer.start(measured, now)
    times, targets, commands = [now], [layer.last_target.copy()], [np.zeros(N)]
    for gap, request in zip(gaps, requests):
        now += gap
        commands.append(layer.filter(np.asarray(request), measured, now).values.copy())
        measured = layer.last_target.copy()  # an arm that tracks its commands exactly
        times.append(now)
        targets.append(layer.last_target.copy())
    t, q, v = np.asarray(times), np.asarray(targets), np.asarray(commands)
    if kind == "velocity":  # the commands are velocities: bounded, and changing by at most acceleration * dt
        assert np.all(np.abs(v) <= lim.velocity + 1e-12)
        for k in range(1, len(t)):
            assert np.all(np.abs(v[k] - v[k - 1]) <= lim.acceleration * min(t[k] - t[k - 1], ROBOT.period) + 1e-9), k
        return
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            assert np.all(np.abs(q[j] - q[i]) <= lim.velocity * (t[j] - t[i]) + 1e-9), (i, j)
    velocity = [np.zeros(N)]
    for k in range(1, len(t)):
        dt = t[k] - t[k - 1]
        # commands under a nanosecond apart are one command: the layer repeats the target and keeps its velocity
        velocity.append((q[k] - q[k - 1]) / dt if dt > SAME_INSTANT else velocity[-1])
        if SAME_INSTANT < dt <= ROBOT.period and (k < 2 or t[k - 1] - t[k - 2] <= ROBOT.period):
            assert np.all(np.abs(velocity[k] - velocity[k - 1]) <= lim.acceleration * dt + 1e-6), k


# --- across holds: the reference after a hold is the arm at rest at the hold target --------------
def moving_then_held(kind="position"):
    """Joint 2 moving at -0.225 rad/s at 20 Hz, then a hold 10 ms after the last command (an e-stop press)."""
    lim, period = ROBOT.limits, ROBOT.period
    layer = SafetyLayer(lim, period, kind)
    now, target = 100.0, np.zeros(N)
    layer.start(target, now)
    for _ in range(20):
        now += period
        request = layer.last_target.copy()
        request[1] -= 0.225 * period
        layer.filter(request if kind == "position" else np.eye(N)[1] * -0.225, layer.last_target, now)
    assert abs(layer.last_velocity[1] + 0.225) < 1e-9
    held = layer.hold("e-stop", now + 0.010)
    return layer, held


def test_the_first_command_after_a_hold_accelerates_from_rest_at_the_hold_target():
    """The sequence measured on the real stack: moving, hold, released, the next command 21 ms after the
    hold. The arm lags its target by 17.5 mrad (moving), and the policy asks to go on the other way."""
    lim = ROBOT.limits
    layer, held = moving_then_held()
    measured = held.values + np.eye(N)[1] * 0.0175
    resume_at = held.time + 0.021
    layer.resume(measured, resume_at)
    cmd = layer.filter(held.values + np.eye(N)[1] * 0.2, measured, resume_at)
    velocity = (cmd.values - held.values) / 0.021
    # from rest at the hold: |v| <= acceleration * dt = 15 * 0.021 = 0.315 rad/s (not 0.83, as the layer
    # re-anchored at the measured pose gave)
    assert np.all(np.abs(velocity) <= lim.acceleration * 0.021 + 1e-9), velocity
    assert velocity[1] > 0.3 and "acceleration" in cmd.reasons   # it does move, as fast as allowed


def test_after_another_node_commanded_the_arm_the_layer_starts_from_the_measured_pose():
    layer, held = moving_then_held()
    moved = held.values + np.eye(N)[2] * 0.4   # the other node moved joint 3
    resume_at = held.time + 0.5
    layer.resume(moved, resume_at, moved_by_other=True)
    cmd = layer.filter(moved, moved, resume_at + ROBOT.period)
    np.testing.assert_allclose(cmd.values, moved, atol=1e-12)   # stays where the arm is: no jump back to the hold target
    assert np.all(layer.last_velocity == 0)


@pytest.mark.parametrize("kind", ["position", "velocity"])
@pytest.mark.parametrize("start", [2.0, 2.01, 2.02, 2.03, 2.04, 2.05, 2.06, 2.07])   # every phase of a 75 mrad step
def test_the_arm_brakes_ahead_of_a_position_limit_and_comes_to_rest_at_it(kind, start):
    """Joint 7 driven at full speed toward its limit (2.9 rad), the request beyond it, the arm tracking its
    commands: the layer slows it down in time, so every pair of commands stays within acceleration * dt,
    and the arm ends at rest at the limit. Cutting the command at the limit instead stops the arm within a
    step or two (up to 1.93 x the acceleration limit over these starts), as a deploy with an untrained
    policy did on the simulated arm."""
    lim, period, joint = ROBOT.limits, ROBOT.period, N - 1
    layer = SafetyLayer(lim, period, kind)
    now, position = 100.0, np.zeros(N)
    position[joint] = start
    layer.start(position, now)
    velocities, positions = [np.zeros(N)], [position.copy()]
    for _ in range(80):
        now += period
        request = position + np.eye(N)[joint] * 1.0 if kind == "position" else np.eye(N)[joint] * 1.5
        cmd = layer.filter(request, position, now)
        position = cmd.values.copy() if kind == "position" else position + cmd.values * period
        velocities.append((position - positions[-1]) / period)
        positions.append(position.copy())
    v, q = np.asarray(velocities)[:, joint], np.asarray(positions)[:, joint]
    assert v.max() > 0.99 * lim.velocity[joint]   # it did get up to full speed on the way
    assert np.all(np.abs(np.diff(v)) <= lim.acceleration[joint] * period + 1e-9), np.abs(np.diff(v)).max()
    assert np.all(q <= lim.high[joint] + 1e-12)
    assert lim.high[joint] - q[-1] < 1e-4 and abs(v[-1]) < 1e-2   # at rest at the limit, not short of it


EVENT = st.one_of(
    st.tuples(st.just("cmd"), st.floats(0.0, 0.12), st.lists(st.floats(-3.0, 3.0), min_size=N, max_size=N)),
    st.tuples(st.just("hold"), st.floats(0.0, 0.12), st.none()),
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(events=st.lists(EVENT, min_size=2, max_size=50), kind=st.sampled_from(["position", "velocity"]),
       lag=st.floats(-0.05, 0.05))
@example(events=[("cmd", 0.05, [0.0, -3.0] + [0.0] * (N - 2))] * 10 + [("hold", 0.01, None), ("cmd", 0.003, [0.0, 3.0] + [0.0] * (N - 2))],
         kind="position", lag=0.03)
def test_every_pair_of_sent_commands_holds_included_stays_within_the_limits(events, kind, lag):
    """Policy commands and holds at random real times (holds under a period apart, releases a few ms after
    a hold), an arm lagging its target: over every consecutive pair of sent rows, with the real time between
    them, the commanded motion stays within the velocity limit, and its change within acceleration * dt
    except into a hold (a stop)."""
    lim, period = ROBOT.limits, ROBOT.period
    layer = SafetyLayer(lim, period, kind)
    now = 100.0
    layer.start(np.zeros(N), now)
    rows = [layer.hold("start", now)]
    held = True
    for name, gap, request in events:
        now += gap
        if name == "hold":
            rows.append(layer.hold("e-stop", now))
            held = True
            continue
        measured = np.clip(layer.last_target + lag, lim.low, lim.high)   # an arm a little off its target
        if held:
            layer.resume(measured, now)
            held = False
        rows.append(layer.filter(np.asarray(request), measured, now))
    times = np.array([r.time for r in rows])
    values = np.array([r.values for r in rows])
    if kind == "velocity":   # the rows are velocities: bounded; changing by at most acceleration * dt (holds: stops)
        assert np.all(np.abs(values) <= lim.velocity + 1e-12)
        for k in range(1, len(rows)):
            if not rows[k].hold:
                step = lim.acceleration * min(times[k] - times[k - 1], period)
                assert np.all(np.abs(values[k] - values[k - 1]) <= step + 1e-9), k
        return
    velocity = np.zeros(N)
    for k in range(1, len(rows)):
        dt = times[k] - times[k - 1]
        moved = values[k] - values[k - 1]
        assert np.all(np.abs(moved) <= lim.velocity * dt + 1e-9), k
        if rows[k].hold:   # a stop: the arm is commanded to stand at the hold target from here on
            velocity = np.zeros(N)
            continue
        if dt <= SAME_INSTANT:   # one instant: the layer repeats the target and keeps its velocity
            continue
        previous, velocity = velocity, moved / dt
        assert np.all(np.abs(velocity - previous) <= lim.acceleration * dt + 1e-6), (k, dt, velocity - previous)


def test_commands_csv_keeps_every_pair_checkable_however_close_a_resume_follows_its_hold(tmp_path):
    """A release delivered right behind its press: the resume goes out tens of microseconds after the hold,
    where a step within the limits is ~1e-8 rad. commands.csv must hold the values exactly, or the pairs read
    back from it break the limits by the rounding alone (at 9 decimals they did)."""
    import csv

    from robo_rl.bench.ros import pair_limit_ratios
    from robo_rl.real_robot.deploy import CommandLog

    rng = np.random.default_rng(0)
    layer = SafetyLayer(ROBOT.limits, ROBOT.period, "position")
    now = 1000.0 + rng.random()
    layer.start(rng.uniform(-1.0, 1.0, N), now)
    log = CommandLog(tmp_path / "commands.csv", ROBOT.joints)
    log.write(-1, "hold", layer.hold("start", now), None, None)
    for step in range(60):
        if step % 3 == 2:
            now += rng.choice([0.01, 0.05])
            log.write(step, "hold", layer.hold("e-stop", now), None, None)
            continue
        now += rng.uniform(1e-5, 1e-4) if step % 3 == 0 else ROBOT.period
        request = layer.last_target + rng.uniform(-0.3, 0.3, N)
        log.write(step, "sent", layer.filter(request, layer.last_target, now), None, None)
    log.close()
    rows = list(csv.DictReader((tmp_path / "commands.csv").open()))
    assert len(rows) == 61 and sum(r["status"] == "hold" for r in rows) == 21
    velocity_ratio, acceleration_ratio = pair_limit_ratios(rows, ROBOT.joints, ROBOT.limits)
    assert 0.5 < acceleration_ratio <= 1.0 + 1e-6 and 0.0 < velocity_ratio <= 1.0 + 1e-6
