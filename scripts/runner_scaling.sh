#!/usr/bin/env bash
# The job runner's scaling and fault tolerance, as measured for the README: the same grid of 4 equal
# trainings (bench learn, Hopper-v5, sac, 6000 env steps each) with --workers 1 and --workers 2, each in a
# fresh folder, then the grid again with --workers 2 while one Ray worker is killed with SIGKILL mid-training.
# Usage: bash scripts/runner_scaling.sh <work folder>   (prints the wall times and the ratio)
set -euo pipefail
work=${1:?usage: runner_scaling.sh <work folder>}
bin=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin
grid=(bench learn --tasks Hopper-v5 --agents sac --seeds 0,1,2,3 --steps 6000 --eval-every 3000 --episodes 2
      --override agent.learning_starts=1000)
declare -A wall
for workers in 1 2; do
  mkdir -p "$work/w$workers"
  start=$(date +%s.%N)
  (cd "$work/w$workers" && "$bin/robo-rl" "${grid[@]}" --workers "$workers" > log.txt 2>&1)
  wall[$workers]=$(echo "$(date +%s.%N) - $start" | bc)
  echo "workers=$workers: ${wall[$workers]} s"
done
echo "ratio (2 workers / 1 worker): $(echo "scale=3; ${wall[2]} / ${wall[1]}" | bc)"
# The same results apart from timings?
"$bin/python" - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
def load(w):
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "wall_s"}
            for p in sorted((work / w / "benchmarks/results/learn").glob("Hopper-v5__*.json"))}
a, b = load("w1"), load("w2")
print(f"result files: {len(a)} and {len(b)}; identical apart from timings: {a == b}")
PY
# A worker killed with SIGKILL mid-training: its job is retried and the grid completes.
mkdir -p "$work/kill"
(cd "$work/kill" && "$bin/robo-rl" "${grid[@]}" --workers 2 > log.txt 2>&1) &
grid_pid=$!
victim=""
for _ in $(seq 1 600); do
  victim=$(pgrep -f "ray::_call" | head -n 1 || true)
  [ -n "$victim" ] && [ -d "$work/kill/runs/bench/learn" ] && break
  sleep 0.2
done
sleep 8
victim=$(pgrep -f "ray::_call" | head -n 1 || true)
echo "killing Ray worker $victim with SIGKILL"
kill -9 "$victim"
wait "$grid_pid" && echo "grid with a killed worker: exit 0" || echo "grid with a killed worker: exit $?"
ls "$work/kill/benchmarks/results/learn" | grep -c "Hopper-v5__sac__s" | sed 's/^/result files: /'
"$bin/python" - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
def load(w):
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "wall_s"}
            for p in sorted((work / w / "benchmarks/results/learn").glob("Hopper-v5__*.json"))}
print(f"the grid with a killed worker gives the same results as without: {load('kill') == load('w2')}")
PY
