"""`robo-rl deploy`: run a trained policy on a ROS arm, at the robot's control rate.

The control loop runs on its own clock, one tick per control period, whatever rate the driver
publishes joint states at: at each tick it takes the newest state (states arriving faster are
folded; a slower driver's newest state is acted on again until it is older than the watchdog's
timeout), parses it (bad state -> hold), observation ->
deterministic action -> request (adapter) -> safety layer (limits against the real time since the
last command sent) -> publish, and one row in commands.csv. Around that loop:
- watchdog: no fresh, valid state for `robot.watchdog.state_timeout` -> hold, stop, exit code 3
  (fresh: newly received and, unless `robot.watchdog.stamps` is ignore, with a header stamp that
  advanced since the last fresh state and is younger than the timeout);
- the command topic: another live node publishing on it -> refused at start, held while running
  (checked with the ROS master every second), unless `robot.command.share` is true;
- e-stop topic: true -> hold at once (from the e-stop's own callback, not at the next tick), latched:
  the arm stays held until false arrives after the press;
- any exception -> hold, then a clean exit with one line (exit code 1);
- dry run: everything computed and logged, nothing advertised or published;
- the start and the end of the run (steps done, or goal reached with stop_at_goal) -> hold, exit 0.
deploy.json sums up: status, steps, holds, faults, latency (state received -> command published)
p50/p99/max, missed deadlines, and the final distance to the goal.
"""
from __future__ import annotations

import csv
import gc
import queue
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from robo_rl.real_robot import messages
from robo_rl.real_robot.adapter import Adapter, JointReading, StateError, check_spaces
from robo_rl.real_robot.robot import RobotConfig, robot_config
from robo_rl.real_robot.safety import Command, SafetyLayer, make_workspace
from robo_rl.real_robot.transport import LOG, Transport, TransportError, make_transport
from robo_rl.logger import write_json

EXIT_WATCHDOG = 3
ESTOP_QUEUE = 32   # e-stop messages kept while the callback runs (states keep only the newest)
PUBLISHER_CHECK_PERIOD = 1.0   # s between two looks at the master's publishers on the command topic
FOREIGN_PUBLISHER = "another publisher on"   # the start of the hold reason while another node commands the arm


class DeployError(RuntimeError):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StateSlot:
    """The newest state message, handed from the transport's thread to the control loop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._msg: dict | None = None
        self._received = 0.0
        self.count = 0

    def put(self, msg: dict) -> None:
        now = time.perf_counter()
        with self._cond:
            self._msg, self._received = msg, now
            self.count += 1
            self._cond.notify()

    def latest(self) -> tuple[dict | None, float, int]:
        """The newest message, when it was received, and its number (0: none yet)."""
        with self._cond:
            return self._msg, self._received, self.count

    def wait_newer(self, seen: int, timeout: float) -> tuple[dict | None, float, int]:
        """The newest message after message number `seen`, or (None, 0, seen) after `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.count > seen, timeout=timeout):
                return None, 0.0, seen
            return self._msg, self._received, self.count


class CommandLog:
    """commands.csv: one row per command computed (sent, held or dry-run).

    Rows are formatted and written (and flushed, row by row) by a thread of their own, so that a
    slow disk never delays the control loop; at most the rows of the last few milliseconds can be
    lost if the process is killed outright."""

    def __init__(self, path: Path, joints: tuple[str, ...]) -> None:
        self._file = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        # time: wall clock when the row was logged; sent_at: the monotonic time the safety layer judged the
        # command at (its send time), the clock its limits hold in (rows can be checked pair by pair with it).
        # Both it and the joint values are written exactly (shortest round-trip text): a resume can follow its
        # hold by tens of microseconds, where a step within the limits is ~1e-8 rad and 9 decimals would not do.
        self._writer.writerow(["time", "sent_at", "step", "status", "kind", "reasons", "latency_ms", "goal_distance", *joints])
        self._file.flush()
        self._rows: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="command-log", daemon=True)
        self._thread.start()

    def write(self, step: int, status: str, cmd: Command, latency: float | None, distance: float | None) -> None:
        self._rows.put((time.time(), cmd.time, step, status, cmd.kind, "|".join(cmd.reasons), latency, distance, cmd.values.copy()))

    def _drain(self) -> None:
        while (row := self._rows.get()) is not None:
            stamp, sent_at, step, status, kind, reasons, latency, distance, values = row
            self._writer.writerow([f"{stamp:.6f}", "" if sent_at is None else repr(float(sent_at)), step, status, kind, reasons,
                                   "" if latency is None else f"{1e3 * latency:.4f}",
                                   "" if distance is None else f"{distance:.5f}", *(repr(float(v)) for v in values)])
            self._file.flush()

    def close(self) -> None:
        self._rows.put(None)
        self._thread.join(timeout=10)
        self._file.close()


class DeployLoop:
    def __init__(self, robot: RobotConfig, agent: Any, transport: Transport, out: Path, dry_run: bool = False,
                 connect_timeout: float = 10.0) -> None:
        self.robot, self.agent, self.transport = robot, agent, transport
        self.adapter = Adapter(robot)
        self.safety = SafetyLayer(robot.limits, robot.period, robot.command_type, make_workspace(robot))
        self.dry_run = dry_run
        self.connect_timeout = connect_timeout
        self.out = out
        self.states = StateSlot()
        self.estop = threading.Event()
        # The loop's thread and the e-stop's callback both send: one at a time, and the safety layer's
        # last command is the one really sent.
        self._send_lock = threading.RLock()
        self.step = 0
        self.log = CommandLog(out / "commands.csv", robot.joints)
        self.latencies: list[float] = []    # the loop's own latency: from its tick to the publish call's return
        self.state_ages: list[float] = []   # how old the state acted on was at its tick
        self.counts = {"published": 0, "holds": 0, "bad_states": 0, "stale_states": 0, "estops": 0, "missed_deadlines": 0,
                       "dropped_states": 0, "late_ticks": 0, "intrusions": 0}
        self._last_stamp: float | None = None   # header stamp of the newest fresh state
        self.intruders: list[str] = []          # other nodes publishing on the command topic, now
        self.publisher_check = "off"            # made | off (shared or dry run) | unavailable (the transport cannot tell)
        self._monitor_stop = threading.Event()
        self.holding: str | None = None     # why the arm is held now (None: policy in control)
        self.moved_by_other = False         # another node commanded the arm during this hold
        self.last_reading: JointReading | None = None

    # --- messages ---------------------------------------------------------------------------------
    def _on_estop(self, msg: dict) -> None:
        """True: hold now, from this callback, and latch; false: release the latch."""
        if msg.get("data") is True:
            with self._send_lock:
                if not self.estop.is_set():
                    self.estop.set()
                    self.counts["estops"] += 1
                    if self.safety.last_target is not None:
                        self.holding = None
                        self._hold(self.step, "e-stop")
        elif msg.get("data") is False:
            self.estop.clear()

    def _stale(self, msg: dict) -> str | None:
        """Why a newly received state is not fresh by its header stamp (None: fresh)."""
        if not self.robot.check_stamps:
            return None
        stamp = messages.stamp_seconds(msg)
        if stamp is None:
            return "the joint states carry no header stamp (robot.watchdog.stamps=ignore is for drivers that send none)"
        if self._last_stamp is not None and stamp <= self._last_stamp:
            return f"the header stamp stopped advancing (at {stamp:.3f})"
        age = time.time() - stamp
        if age > self.robot.state_timeout:
            return f"the header stamp is {age:.2f} s old"
        self._last_stamp = stamp
        return None

    def _intruders(self) -> list[str] | None:
        return self.transport.other_publishers(self.robot.command_topic)

    def _watch_command_topic(self) -> None:
        """Every PUBLISHER_CHECK_PERIOD: who else publishes commands (the loop holds while anyone does)."""
        failed = False
        while not self._monitor_stop.wait(PUBLISHER_CHECK_PERIOD):
            try:
                others = self._intruders() or []
            except Exception as exc:   # the master is gone: topics still work peer to peer; keep the last answer
                if not failed:
                    LOG.warning("deploy: cannot check the command topic's publishers: %s", exc)
                failed = True
                continue
            failed = False
            if others and not self.intruders:
                self.counts["intrusions"] += 1
            self.intruders = others

    def _message(self, cmd: Command) -> dict:
        r = self.robot
        if r.command_message == "array":
            return messages.float64_array(cmd.values)
        return messages.joint_trajectory(r.joints, cmd.values, cmd.kind, r.period)

    def _send(self, step: int, cmd: Command, started: float | None, distance: float | None) -> None:
        if not self.dry_run:
            self.transport.publish(self.robot.command_topic, self._message(cmd))
            self.counts["published"] += 1
        latency = None if started is None else time.perf_counter() - started
        if latency is not None:
            self.latencies.append(latency)
            if latency > self.robot.period:
                self.counts["missed_deadlines"] += 1
        self.log.write(step, "dry_run" if self.dry_run else ("hold" if cmd.hold else "sent"), cmd, latency, distance)

    def _hold(self, step: int, reason: str, received: float | None = None) -> None:
        """Send one hold command when the arm enters a held state (not again while it stays held)."""
        with self._send_lock:
            if self.holding is None:
                self.counts["holds"] += 1
                self._send(step, self.safety.hold(reason, time.perf_counter()), received, None)
            self.holding = reason
            # held because another node commands the arm: it may move it, so the resume starts from where it is
            self.moved_by_other = self.moved_by_other or reason.startswith(FOREIGN_PUBLISHER)

    # --- the loop -----------------------------------------------------------------------------------
    def _start(self) -> tuple[int, JointReading]:
        r = self.robot
        self.transport.connect(self.connect_timeout)
        self.transport.subscribe(r.state_topic, messages.JOINT_STATE, self.states.put)
        if r.estop_topic:
            # every e-stop message, not only the newest: a true followed at once by a false must still hold
            self.transport.subscribe(r.estop_topic, messages.BOOL, self._on_estop, queue_size=ESTOP_QUEUE)
        if not self.dry_run:
            self.transport.advertise(r.command_topic, r.command_ros_type)
            self._check_command_topic()
        msg, _, seen = self.states.wait_newer(0, self.connect_timeout)
        if msg is None:
            raise DeployError(f"no joint state on {r.state_topic} within {self.connect_timeout:.0f} s", EXIT_WATCHDOG)
        stale = self._stale(msg)
        if stale:
            raise DeployError(f"the first joint state on {r.state_topic} is not fresh: {stale}", EXIT_WATCHDOG)
        try:
            reading = self.adapter.reading(msg)
        except StateError as exc:
            raise DeployError(f"the first joint state is unusable: {exc}") from None
        self.safety.start(reading.positions, time.perf_counter())
        self.agent.act(self.adapter.observation(reading), deterministic=True)   # warm-up: first call is slow
        if self.safety.workspace is not None and not self.safety.workspace.contains(reading.positions):
            raise DeployError("the arm starts outside the configured workspace box; move it inside first")
        if not self.dry_run and hasattr(self.transport, "wait_for_subscribers"):
            self.transport.wait_for_subscribers(r.command_topic, 2.0)
        # Begin by holding where the arm is: a safe first command that also warms up the publish
        # path (the first publish is slow), so the first policy step meets its deadline.
        with self._send_lock:
            self._send(-1, self.safety.hold("start", time.perf_counter()), None, None)
        return seen, reading

    def _check_command_topic(self) -> None:
        """Refuse to start while another node publishes commands; then keep watching, in a thread."""
        if self.robot.share_command_topic:
            return
        others = self._intruders()
        if others is None:
            self.publisher_check = "unavailable"
            LOG.warning("deploy: the %s transport cannot list the publishers on %s; not checked",
                        self.transport.name, self.robot.command_topic)
            return
        if others:
            raise DeployError(f"another node publishes on {self.robot.command_topic}: {', '.join(others)}; stop it, "
                              "or set robot.command.share=true to share the topic")
        self.publisher_check = "made"
        threading.Thread(target=self._watch_command_topic, name="command-topic-watch", daemon=True).start()

    def run(self, steps: int, stop_at_goal: bool = False, goal_tolerance: float = 0.1) -> dict[str, Any]:
        status, message = "done", ""
        step = 0
        # Tail latency: move everything loaded so far out of the garbage collector's way (no long
        # full collections mid-run), and let the transport's thread hand a state over sooner.
        gc.collect()
        gc.freeze()
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        try:
            seen, self.last_reading = self._start()
            bad_since: float | None = None
            stale_reason: str | None = None
            period, timeout = self.robot.period, self.robot.state_timeout
            last_fresh = next_tick = time.perf_counter()
            while step < steps:
                self.step = step
                next_tick += period
                wait = next_tick - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                elif -wait > period:   # more than a period behind (a slow step): restart the clock; the limits use real time
                    self.counts["late_ticks"] += 1
                    next_tick = time.perf_counter()
                msg, received, count = self.states.latest()
                now = tick = time.perf_counter()
                fresh = count != seen
                if fresh:
                    self.counts["dropped_states"] += count - seen - 1   # folded: only the newest one is acted on
                    seen = count
                    stale = self._stale(msg)
                    if stale:   # received, but by its stamp not a new state (a frozen driver, a late one)
                        self.counts["stale_states"] += 1
                        fresh, stale_reason = False, stale
                if not fresh:   # no new state since the last tick: act on the newest one while it is fresh
                    if now - last_fresh > timeout:
                        self._hold(step, "watchdog: no fresh state")
                        why = f" ({stale_reason})" if stale_reason else ""
                        status, message = "watchdog", f"no fresh joint state for {timeout} s{why}: arm held, deploy stopped"
                        break
                    held_by = self._hold_reason()
                    if held_by:
                        self._hold(step, held_by)
                    if bad_since is not None or held_by:
                        continue    # held (a bad state, the e-stop, another publisher): a stale state changes nothing
                    reading = self.last_reading
                else:
                    last_fresh, stale_reason = received, None
                    if self.transport.errors:
                        raise DeployError(f"ROS reported an error: {self.transport.errors[0]}")
                    held_by = self._hold_reason()
                    if held_by:
                        self._hold(step, held_by)
                        continue
                    try:
                        reading = self.adapter.reading(msg)
                    except StateError as exc:
                        self.counts["bad_states"] += 1
                        bad_since = bad_since or received
                        self._hold(step, f"bad state: {exc}", tick)
                        if received - bad_since > timeout:
                            status, message = "watchdog", f"no valid joint state for {timeout} s ({exc}): arm held, deploy stopped"
                            break
                        continue
                self.state_ages.append(now - last_fresh)
                bad_since = None
                with self._send_lock:
                    if self._hold_reason():   # pressed (or intruded) while this tick was being prepared
                        continue
                    if self.holding is not None:    # back from a hold: limited against the hold (see safety.py)
                        self.safety.resume(reading.positions, time.perf_counter(), moved_by_other=self.moved_by_other)
                        if hasattr(self.agent, "begin_episode"):   # and drop any action sequence planned before
                            self.agent.begin_episode()
                        self.holding, self.moved_by_other = None, False
                    self.last_reading = reading
                    distance = self.adapter.goal_distance(reading)
                    if stop_at_goal and distance is not None and distance < goal_tolerance:
                        break
                    action = self.agent.act(self.adapter.observation(reading), deterministic=True)
                    cmd = self.safety.filter(self.adapter.request(action, reading), reading.positions, time.perf_counter())
                    self._send(step, cmd, tick, distance)
                step += 1
            if status == "done":
                self._hold(step, "end of run")
        except BaseException as exc:
            self._emergency_hold(step, exc)
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
            message = str(exc) if isinstance(exc, (DeployError, TransportError)) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, DeployError) and exc.exit_code == EXIT_WATCHDOG:
                status = "watchdog"
        finally:
            self._monitor_stop.set()
            sys.setswitchinterval(switch_interval)
            self.log.close()
            self.transport.close()
        return self._summary(status, message, step)

    def _hold_reason(self) -> str | None:
        """Why the arm must stay held whatever the state says: the e-stop, or another node commanding it."""
        if self.estop.is_set():
            return "e-stop"
        if self.intruders:
            return f"{FOREIGN_PUBLISHER} {self.robot.command_topic}: {', '.join(self.intruders)}"
        return None

    def _emergency_hold(self, step: int, exc: BaseException) -> None:
        if self.safety.last_target is None:
            return   # nothing was ever commanded
        LOG.error("deploy: %s; sending hold", exc)
        try:
            self.holding = None
            self._hold(step, f"exception: {type(exc).__name__}")
        except Exception as second:   # the connection itself may be what failed
            LOG.error("deploy: hold could not be sent: %s", second)

    def _summary(self, status: str, message: str, steps: int) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1e3
        age = np.asarray(self.state_ages) * 1e3
        summary = {
            "status": status, "message": message, "steps": steps, "robot": self.robot.name,
            "transport": self.transport.name, "dry_run": self.dry_run, "control_rate_hz": self.robot.control_rate,
            **self.counts, "publisher_check": self.publisher_check,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "max": float(lat.max())} if lat.size else None,
            "state_age_ms": {"p50": float(np.percentile(age, 50)), "p99": float(np.percentile(age, 99)), "max": float(age.max())} if age.size else None,
            "final_positions": None if self.last_reading is None else self.last_reading.positions.tolist(),
            "final_goal_distance": None if self.last_reading is None else self.adapter.goal_distance(self.last_reading),
        }
        write_json(self.out / "deploy.json", summary, indent=1)
        return summary


def deploy(cfg: Any) -> dict[str, Any]:
    """Run `robo-rl deploy` from a composed deploy config; raises ConfigError/CheckpointError on bad input."""
    import torch

    from robo_rl.runs import load_agent

    robot = robot_config(cfg.robot)
    checkpoint = Path(str(cfg.checkpoint))
    agent, info = load_agent(checkpoint)
    check_spaces(robot, info, str(checkpoint))
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    base = checkpoint if checkpoint.is_dir() else checkpoint.parent
    out = Path(cfg.out) if cfg.out else base / "deploy" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    transport = make_transport(str(cfg.transport), robot)
    loop = DeployLoop(robot, agent, transport, out, dry_run=bool(cfg.dry_run), connect_timeout=float(cfg.connect_timeout))
    summary = loop.run(int(cfg.steps), bool(cfg.stop_at_goal), float(cfg.goal_tolerance))
    summary["out"] = str(out)
    return summary
