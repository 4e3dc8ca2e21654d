"""`robo-rl bench ros`: control-loop latency of `robo-rl deploy` over rospy and rosbridge, on loopback.

Two kinds of rows, each on a fresh roscore with the MuJoCo sim arm node and (for rosbridge) the
rosbridge v2 test peer from tests/, running `robo-rl deploy` with an SB3 SAC policy (256x256 actor;
untrained weights, the same inference cost as a trained one):
- `--rates`: control loop and driver at the same rate (the loop's latency at that rate);
- `--driver-rates`: the driver publishes at that rate while the loop runs at the robot's configured
  control rate (20 Hz for sim_arm): the command rate must stay the configured one and the
  commanded speed within the velocity limit, whatever the driver does.
- `--estop`: on these transports, a run at the configured control rate during which an e-stop node
  toggles true/false at 100 messages/s for 2 s: it reports the peak velocity and acceleration of the
  commands, pair by pair with their send times (holds included; a hold itself is a stop), as fractions
  of the limits.
Latency is measured inside the loop from the tick at which it acts on the newest state to the
return of the publish call; a deadline is missed when that exceeds one period. Each row also
reports the rate at which commands went out and the fastest commanded joint speed over any window
of at least 0.25 s, as a fraction of the velocity limit. One result file per row in
benchmarks/results/ros/; finished ones are skipped. Needs ROS 1 (scripts/setup.sh installs it)
and the repository's tests/ folder.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from robo_rl.bench import results_dir, write_summary
from robo_rl.jobs import machine
from robo_rl.logger import write_json


def _peer_script() -> Path:
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "tests" / "rosbridge_peer.py").is_file():
            return root / "tests" / "rosbridge_peer.py"
    raise SystemExit("robo-rl: bench ros needs tests/rosbridge_peer.py (run it from the repository)")


def _policy(folder: Path) -> Path:
    from robo_rl.config import compose
    from robo_rl.envs.factory import make_env
    from robo_rl.runs import build_agent

    cfg = compose(["agent=sb3_sac", "env=arm_reach"])
    env = make_env(cfg.env)
    return build_agent(cfg, env).save(folder / "policy.safetensors")


SPEED_WINDOW = 0.25   # s: the shortest window over which commanded speed is measured


def window_speed_ratio(times: np.ndarray, targets: np.ndarray, limit: np.ndarray) -> float:
    """The largest |q(t_j) - q(t_i)| / (limit * (t_j - t_i)) over pairs at least SPEED_WINDOW apart."""
    worst = 0.0
    for i, t in enumerate(times):
        j = int(np.searchsorted(times, t + SPEED_WINDOW))
        if j < len(times):
            worst = max(worst, float(np.max(np.abs(targets[j] - targets[i]) / (limit * (times[j] - t)))))
    return worst


def pair_limit_ratios(rows: list[dict], joints: Sequence[str], limits) -> tuple[float, float]:
    """The peak |dq|/(v_max dt) and |dv|/(a_max dt) over consecutive commands, dt from their send times. A hold
    is a stop (its velocity is 0 and braking into it is not counted); rows at one instant are one command."""
    times = np.array([float(r["sent_at"]) for r in rows])
    q = np.array([[float(r[j]) for j in joints] for r in rows])
    peak_v = peak_a = 0.0
    velocity = np.zeros(len(joints))
    for k in range(1, len(rows)):
        dt = times[k] - times[k - 1]
        if rows[k]["status"] == "hold" or dt <= 1e-9:
            velocity = np.zeros(len(joints)) if rows[k]["status"] == "hold" else velocity
            continue
        previous, velocity = velocity, (q[k] - q[k - 1]) / dt
        peak_v = max(peak_v, float(np.max(np.abs(velocity) / limits.velocity)))
        peak_a = max(peak_a, float(np.max(np.abs(velocity - previous) / (limits.acceleration * dt))))
    return peak_v, peak_a


def row_name(transport: str, control: float, driver: float, estop: bool = False) -> str:
    return f"{transport}_{control:g}hz" + ("" if driver == control else f"_driver{driver:g}hz") + ("_estop" if estop else "")


def _deploy(cmd: list[str], env: dict, out: Path, timeout: float, estop_topic: str | None) -> None:
    """Run deploy to the end; with `estop_topic`, toggle the e-stop fast once it commands."""
    from robo_rl.real_robot.launch import ESTOP_TOGGLING, press_estop

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if estop_topic:
            log = out / "commands.csv"
            while proc.poll() is None and not (log.exists() and len(log.read_text().splitlines()) > 6):
                time.sleep(0.05)
            press_estop(env, ESTOP_TOGGLING, estop_topic)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise SystemExit(f"robo-rl: bench ros: deploy failed: {err.strip()[-500:]}")


def run_one(transport: str, control: float, driver: float, steps: int, work: Path, overrides: Sequence[str] = (),
            estop: bool = False) -> dict:
    from robo_rl.config import compose
    from robo_rl.real_robot.launch import free_port, start_process, start_roscore, start_sim_arm, stop_process
    from robo_rl.real_robot.robot import robot_config

    robot = robot_config(compose(["checkpoint=x", f"robot.control_rate={control}"], "deploy").robot)
    core, env = start_roscore(work)
    procs = [core]
    try:
        procs.append(start_sim_arm(env, "--rate", str(driver), "--duration", str(steps / control + 120)))
        extra = []
        if transport == "rosbridge":
            bridge_port = free_port()
            procs.append(start_process([sys.executable, str(_peer_script()), "--port", str(bridge_port)], env, "rosbridge_peer:"))
            extra = [f"robot.rosbridge.port={bridge_port}"]
        out = work / row_name(transport, control, driver, estop)
        cmd = [sys.executable, "-m", "robo_rl.cli", "deploy", f"checkpoint={_policy(work)}", f"out={out}",
               f"transport={transport}", f"steps={steps}", f"robot.control_rate={control}", *extra, *overrides]
        _deploy(cmd, env, out, steps / control + 300, robot.estop_topic if estop else None)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
    summary = json.loads((out / "deploy.json").read_text())
    with (out / "commands.csv").open() as f:
        published = [r for r in csv.DictReader(f) if r["status"] in ("sent", "hold")]
    # every pair of commands published, the start hold included: the first policy command accelerates from it
    peak_velocity, peak_acceleration = pair_limit_ratios(published, robot.joints, robot.limits)
    # the loop's rate: every command published at a tick, the policy's and the safety layer's holds (an
    # untrained policy often reaches the workspace box, where the layer holds), not the start and end holds
    sent = [r for r in published if int(r["step"]) >= 0 and r["reasons"] != "end of run"]
    lat = np.asarray([float(r["latency_ms"]) for r in sent if r["latency_ms"]])
    times = np.array([float(r["time"]) for r in sent])
    targets = np.array([[float(r[j]) for j in robot.joints] for r in sent])
    return {
        "transport": transport, "rate_hz": control, "driver_rate_hz": driver, "steps": summary["steps"],
        "period_ms": 1e3 / control, "command_rate_hz": (len(times) - 1) / float(times[-1] - times[0]),
        "window_speed_ratio": window_speed_ratio(times, targets, robot.limits.velocity),
        "estop_toggling": estop, "estops": summary.get("estops", 0), "holds": summary.get("holds", 0),
        "pair_velocity_ratio": peak_velocity, "pair_acceleration_ratio": peak_acceleration,
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                       "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "mean": float(lat.mean())},
        "missed_deadlines": int(np.sum(lat > 1e3 / control)), "dropped_states": summary["dropped_states"],
        "histogram_ms": np.histogram(lat, bins=np.linspace(0, max(5.0, float(np.percentile(lat, 99.9))), 51))[0].tolist(),
        "policy": "SB3 SAC actor 256x256 (deterministic), one decision per control tick", "overrides": list(overrides),
    }


def report() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = results_dir() / "ros"
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    results = [r for r in results if "driver_rate_hz" in r]   # rows measured before the fixed-rate loop are not comparable
    lines = ["| transport | control | driver | e-stop | steps | commands/s | p50 ms | p90 ms | p99 ms | max ms | missed deadlines "
             "| folded states | peak speed / limit (0.25 s) | peak speed / limit (pairs) | peak accel. / limit (pairs) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in results:
        lat = r["latency_ms"]
        estop = f"toggled, {r['estops']} presses" if r.get("estop_toggling") else "-"
        pairs = (f"{r['pair_velocity_ratio']:.2f} | {r['pair_acceleration_ratio']:.2f}" if "pair_velocity_ratio" in r
                 else "- | -")   # rows measured before commands.csv carried send times
        lines.append(f"| {r['transport']} | {r['rate_hz']:g} Hz | {r['driver_rate_hz']:g} Hz | {estop} | {r['steps']} "
                     f"| {r['command_rate_hz']:.1f} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} "
                     f"| {r['missed_deadlines']} | {r['dropped_states']} | {r['window_speed_ratio']:.2f} | {pairs} |")
        label = f"{r['transport']}\n{r['rate_hz']:g}/{r['driver_rate_hz']:g} Hz"
        ax.bar([label], [lat["p99"]], color="tab:orange", label="p99" if r is results[0] else None)
        ax.bar([label], [lat["p50"]], color="tab:blue", label="p50" if r is results[0] else None)
    ax.axhline(5.0, color="gray", ls="--", lw=1)
    ax.set_ylabel("tick -> command published (ms)")
    ax.set_xlabel("transport, control / driver rate")
    ax.set_title("robo-rl deploy control loop on loopback")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=120)
    plt.close(fig)
    return write_summary("ros", folder, lines)


def _rates(text: str, flag: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        rates = [-1.0]
    if any(r <= 0 for r in rates):
        from robo_rl.config import ConfigError

        raise ConfigError(f"{flag} must be a comma list of rates in Hz, got '{text}'")
    return rates


def _done(path: Path, steps: int) -> bool:
    """A finished row of at least `steps` decisions, measured with the fixed-rate loop."""
    if not path.exists():
        return False
    done = json.loads(path.read_text())
    return "driver_rate_hz" in done and done["steps"] >= steps


def plan_rows(opts: argparse.Namespace) -> list[tuple[str, float, float, int, bool]]:
    """(transport, control rate, driver rate, steps, e-stop toggling) for every row asked for."""
    from robo_rl.config import ConfigError, compose

    configured = float(compose(["checkpoint=x"], "deploy").robot.control_rate)
    rows = []
    for transport in opts.transports.split(","):
        if transport not in ("rospy", "rosbridge"):
            raise ConfigError(f"--transports: unknown transport '{transport}' (valid: rospy, rosbridge)")
        rows += [(transport, rate, rate, opts.steps, False) for rate in _rates(opts.rates, "--rates")]
        rows += [(transport, configured, rate, opts.driver_steps, False) for rate in _rates(opts.driver_rates, "--driver-rates")]
    for transport in filter(None, opts.estop.split(",")):
        if transport not in ("rospy", "rosbridge"):
            raise ConfigError(f"--estop: unknown transport '{transport}' (valid: rospy, rosbridge)")
        rows.append((transport, configured, configured, opts.estop_steps, True))
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The options of `robo-rl bench ros` (the docs' commands are checked against them)."""
    parser = argparse.ArgumentParser(prog="robo-rl bench ros")
    parser.add_argument("--transports", default="rospy,rosbridge")
    parser.add_argument("--rates", default="100,500", help="control loop and driver at each of these rates (Hz)")
    parser.add_argument("--driver-rates", default="100,500",
                        help="the driver at each of these rates (Hz), the loop at the robot's configured control rate")
    parser.add_argument("--steps", type=int, default=10_000, help="decisions per --rates row")
    parser.add_argument("--driver-steps", type=int, default=2_000, help="decisions per --driver-rates row")
    parser.add_argument("--estop", default="rospy", help="transports with a fast-toggling e-stop row (empty: none)")
    parser.add_argument("--estop-steps", type=int, default=160, help="decisions per --estop row")
    parser.add_argument("--override", action="append", default=[], help="extra `robo-rl deploy` override for every row")
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    parser.add_argument("--force", action="store_true", help="measure again rows already measured")
    return parser


def main(args: list[str]) -> None:
    opts = build_parser().parse_args(args)
    folder = results_dir() / "ros"
    folder.mkdir(parents=True, exist_ok=True)
    if not opts.report:
        rows = plan_rows(opts)
        with tempfile.TemporaryDirectory() as tmp:
            for transport, control, driver, steps, estop in rows:
                path = folder / f"{row_name(transport, control, driver, estop)}.json"
                if not opts.force and _done(path, steps):
                    print(f"bench ros: {path.name} done, skipped")
                    continue
                print(f"bench ros: {transport}, control {control:g} Hz, driver {driver:g} Hz, {steps} steps", flush=True)
                result = run_one(transport, control, driver, steps, Path(tmp), opts.override, estop)
                result["machine"] = machine()   # its page's hardware line
                write_json(path, result, indent=1)
                lat = result["latency_ms"]
                print(f"bench ros: {result['command_rate_hz']:.1f} commands/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
                      f"missed {result['missed_deadlines']}, peak speed {result['window_speed_ratio']:.2f} of the limit, "
                      f"pairs: speed {result['pair_velocity_ratio']:.2f}, acceleration {result['pair_acceleration_ratio']:.2f}",
                      flush=True)
    print(report())
