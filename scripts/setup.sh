#!/usr/bin/env bash
# One setup path for a fresh machine: system packages, then .venv with the CPU build of torch
# first (otherwise pip resolves a multi-GB CUDA build), then the project with pinned dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
# Debian packages the suite needs: osmesa for headless MuJoCo rendering; ROS 1 (roscore, rospy and
# the message packages) for `robo-rl deploy` and its tests against a real roscore.
APT_PACKAGES=(libosmesa6 ros-core python3-rospy python3-sensor-msgs python3-trajectory-msgs
              python3-geometry-msgs python3-std-msgs)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "setup: installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run as root: apt-get install -y ${missing[*]}   (then run make again)" >&2
    exit 2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
"$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null || {
  echo "setup: installing torch==$TORCH_VERSION (CPU build)"
  "${PIP[@]}" install "torch==$TORCH_VERSION"
}
echo "setup: installing robo-rl and its pinned dependencies"
"${PIP[@]}" install -e ".[ray,test]"
touch "$VENV/.installed"
echo "setup: done ($VENV)"
