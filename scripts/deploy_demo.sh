#!/usr/bin/env bash
# Train a policy on the 7-DoF arm task (ArmReach-v0), then run it over ROS 1 against the MuJoCo sim
# arm node: a dry run first (nothing published), then for real. Loopback only; roscore and the node
# are stopped at the end. TRANSPORT=rosbridge is not offered here: no rosbridge_server exists on
# Debian; see the README for that route.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUN=${RUN:-runs/arm_reach/demo}
PORT=${ROS_PORT:-11311}
LOGS=$(mktemp -d)

if [ ! -f "$RUN/checkpoint.safetensors" ]; then
  "$BIN/robo-rl" train agent=sb3_sac env=arm_reach train=arm agent.learning_starts=1000 \
    agent.hyperparams.learning_rate=1e-3 "agent.hyperparams.net_arch=[128,128]" "hydra.run.dir=$RUN"
fi

export ROS_MASTER_URI=http://127.0.0.1:$PORT ROS_IP=127.0.0.1 ROS_HOME=$LOGS
setsid roscore -p "$PORT" >"$LOGS/roscore.log" 2>&1 &
ROSCORE=$!
NODE=""
cleanup() { [ -n "$NODE" ] && kill "$NODE" 2>/dev/null; kill -INT -- "-$ROSCORE" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "started core service" "$LOGS/roscore.log" && break; sleep 0.2; done
"$BIN/python" -m robo_rl.real_robot.sim_arm_node >"$LOGS/sim_arm.log" 2>&1 &
NODE=$!
for _ in $(seq 100); do grep -q "sim_arm: publishing" "$LOGS/sim_arm.log" && break; sleep 0.2; done

echo "== dry run: commands computed and logged, none published"
"$BIN/robo-rl" deploy "checkpoint=$RUN" dry_run=true steps=40
echo "== deploy: the policy drives the sim arm to robot.goal"
"$BIN/robo-rl" deploy "checkpoint=$RUN" steps=120
