"""`robo-rl bench ros`: control-loop latency of `robo-rl deploy` over rospy and rosbridge, on loopback.

For each transport and rate: a fresh roscore, the MuJoCo sim arm node publishing JointState at that
rate, (for rosbridge) the rosbridge v2 test peer from tests/, and `robo-rl deploy` for `--steps`
decisions of an SB3 SAC policy (256x256 actor; untrained weights, the same inference cost as a
trained one). The deploy loop runs at its own control rate (here the same rate as the node's
states); latency is measured inside it from the tick at which it acts on the newest state to the
return of the publish call; a deadline is missed when that exceeds one period. One result file per (transport, rate) in benchmarks/results/ros/; finished ones are
skipped. Needs ROS 1 (scripts/setup.sh installs it) and the repository's tests/ folder.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from robo_rl.bench import results_dir, write_summary


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


def run_one(transport: str, rate: float, steps: int, work: Path) -> dict:
    from robo_rl.real_robot.launch import free_port, start_process, start_roscore, start_sim_arm, stop_process

    core, env = start_roscore(work)
    procs = [core]
    try:
        procs.append(start_sim_arm(env, "--rate", str(rate), "--duration", str(steps / rate + 120)))
        extra = []
        if transport == "rosbridge":
            bridge_port = free_port()
            procs.append(start_process([sys.executable, str(_peer_script()), "--port", str(bridge_port)], env, "rosbridge_peer:"))
            extra = [f"robot.rosbridge.port={bridge_port}"]
        out = work / f"{transport}_{rate:g}"
        cmd = [sys.executable, "-m", "robo_rl.cli", "deploy", f"checkpoint={_policy(work)}", f"out={out}",
               f"transport={transport}", f"steps={steps}", f"robot.control_rate={rate}", *extra]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=steps / rate + 300)
        if result.returncode != 0:
            raise SystemExit(f"robo-rl: bench ros: deploy failed: {result.stderr.strip()[-500:]}")
    finally:
        for proc in reversed(procs):
            stop_process(proc)
    summary = json.loads((out / "deploy.json").read_text())
    with (out / "commands.csv").open() as f:
        latencies = [float(r["latency_ms"]) for r in csv.DictReader(f) if r["status"] == "sent" and r["latency_ms"]]
    lat = np.asarray(latencies)
    return {
        "transport": transport, "rate_hz": rate, "steps": summary["steps"], "period_ms": 1e3 / rate,
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                       "p99": float(np.percentile(lat, 99)), "max": float(lat.max()), "mean": float(lat.mean())},
        "missed_deadlines": int(np.sum(lat > 1e3 / rate)), "dropped_states": summary["dropped_states"],
        "histogram_ms": np.histogram(lat, bins=np.linspace(0, max(5.0, float(np.percentile(lat, 99.9))), 51))[0].tolist(),
        "policy": "SB3 SAC actor 256x256 (deterministic), one decision per state message",
    }


def report() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = results_dir() / "ros"
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    lines = ["| transport | rate | steps | p50 ms | p90 ms | p99 ms | max ms | missed deadlines | dropped states |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in results:
        lat = r["latency_ms"]
        lines.append(f"| {r['transport']} | {r['rate_hz']:g} Hz | {r['steps']} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
                     f"{lat['p99']:.2f} | {lat['max']:.2f} | {r['missed_deadlines']} | {r['dropped_states']} |")
        ax.bar([f"{r['transport']}\n{r['rate_hz']:g} Hz"], [lat["p99"]], color="tab:orange", label="p99" if r is results[0] else None)
        ax.bar([f"{r['transport']}\n{r['rate_hz']:g} Hz"], [lat["p50"]], color="tab:blue", label="p50" if r is results[0] else None)
    ax.axhline(5.0, color="gray", ls="--", lw=1)
    ax.set_ylabel("tick -> command published (ms)")
    ax.set_title("robo-rl deploy control loop on loopback")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=120)
    plt.close(fig)
    return write_summary("ros", folder, lines)


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="robo-rl bench ros")
    parser.add_argument("--transports", default="rospy,rosbridge")
    parser.add_argument("--rates", default="100,500")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--report", action="store_true", help="only aggregate the result files")
    parser.add_argument("--force", action="store_true", help="measure again rows already measured")
    opts = parser.parse_args(args)
    folder = results_dir() / "ros"
    folder.mkdir(parents=True, exist_ok=True)
    if not opts.report:
        with tempfile.TemporaryDirectory() as tmp:
            for transport in opts.transports.split(","):
                if transport not in ("rospy", "rosbridge"):
                    raise SystemExit(f"robo-rl: unknown transport '{transport}' (valid: rospy, rosbridge)")
                for rate in (float(r) for r in opts.rates.split(",")):
                    path = folder / f"{transport}_{rate:g}hz.json"
                    if path.exists() and not opts.force and json.loads(path.read_text())["steps"] >= opts.steps:
                        print(f"bench ros: {path.name} done, skipped")
                        continue
                    print(f"bench ros: {transport} at {rate:g} Hz, {opts.steps} steps", flush=True)
                    result = run_one(transport, rate, opts.steps, Path(tmp))
                    path.write_text(json.dumps(result, indent=1) + "\n")
                    lat = result["latency_ms"]
                    print(f"bench ros: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, missed {result['missed_deadlines']}", flush=True)
    print(report())
