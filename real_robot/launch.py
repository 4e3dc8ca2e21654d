"""Starting and stopping the ROS-side processes on loopback: roscore, the sim arm node, a peer.

Used by `robo-rl bench ros` and the tests; each process leads a process group of its own so that stopping it
also stops its children (roscore starts rosmaster and rosout).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(cmd: list[str], env: dict, ready: str, timeout: float = 30.0, cwd: str | Path | None = None,
                  popen=subprocess.Popen) -> subprocess.Popen:
    """Start `cmd` (with `popen`, Popen or one like it) and wait until a line of its output contains `ready`."""
    proc = popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=cwd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready in proc.stdout.readline():
            return proc
    stop_process(proc)
    raise RuntimeError(f"'{' '.join(str(c) for c in cmd[:3])}' did not start within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_roscore(home: str | Path, extra_env: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """A roscore on a free loopback port; returns it and the environment that points at it."""
    port = free_port()
    env = {**os.environ, "ROS_MASTER_URI": f"http://127.0.0.1:{port}", "ROS_IP": "127.0.0.1",
           "ROS_HOME": str(Path(home) / "ros_home"), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    return start_process(["roscore", "-p", str(port)], env, "started core service"), env


def start_sim_arm(env: dict, *flags: str) -> subprocess.Popen:
    return start_process([sys.executable, "-m", "robo_rl.real_robot.sim_arm_node", *flags], env, "sim_arm: publishing")


# An e-stop toggled true/false at 100 messages/s for 2 s, then released: the stress of a bouncing button.
ESTOP_TOGGLING = "for k in range(200): p.publish(Bool(k % 2 == 0)); time.sleep(0.01)\np.publish(Bool(False))"


def press_estop(env: dict, presses: str, topic: str = "/robo_rl/estop") -> None:
    """A ROS node of its own publishes on the e-stop topic: `presses` is Python run with `p`, its publisher."""
    script = ("import sys, time; sys.path.append('/usr/lib/python3/dist-packages'); import rospy; from std_msgs.msg import Bool;"
              f"rospy.init_node('estop_button', anonymous=True); p = rospy.Publisher('{topic}', Bool, queue_size=2);"
              # ROS 1 delivers only to subscribers already connected: wait for deploy's, however busy the machine
              "deadline = time.time() + 20\nwhile p.get_num_connections() == 0 and time.time() < deadline: time.sleep(0.01)\n"
              f"time.sleep(0.2)\n{presses}\ntime.sleep(0.5)")
    subprocess.run([sys.executable, "-c", script], env=env, timeout=60, check=True)


def kill_leftovers(home: str | Path) -> int:
    """Kill processes whose command line names `home` (nodes a killed roscore left orphaned)."""
    mark, killed = str(Path(home)), 0
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark in cmdline:
            try:
                os.kill(int(proc_dir.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
