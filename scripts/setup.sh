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
# --no-compile: bytecode is written at first import instead, for the modules actually used (compiling
# every installed file up front took about a third of the install time).
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
INSTALL=(install --no-compile)
# torch: the CPU build unless TORCH_CUDA=1. PyTorch's CPU wheel index is asked first (a plain
# `pip install torch` from the public index resolves to the multi-GB CUDA build); where that index
# cannot be reached, the plain install is tried, and the result is checked either way.
TORCH_CUDA=${TORCH_CUDA:-0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
torch_ok() {
  "$VENV/bin/python" - "$TORCH_VERSION" "$TORCH_CUDA" <<'PY' 2>/dev/null
import sys
import torch
version, want_cuda = sys.argv[1], sys.argv[2] == "1"
sys.exit(torch.__version__.split("+")[0] != version or (torch.version.cuda is not None) != want_cuda)
PY
}
if ! torch_ok; then
  if [ "$TORCH_CUDA" = "1" ]; then
    echo "setup: installing torch==$TORCH_VERSION (CUDA build, TORCH_CUDA=1)"
    "${PIP[@]}" "${INSTALL[@]}" "torch==$TORCH_VERSION"
  else
    echo "setup: installing torch==$TORCH_VERSION (CPU build)"
    "${PIP[@]}" "${INSTALL[@]}" --timeout 30 --retries 1 --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" 2>/dev/null || {
      echo "setup: PyTorch's CPU index is not reachable; trying the default package index"
      "${PIP[@]}" "${INSTALL[@]}" "torch==$TORCH_VERSION"
    }
  fi
  if ! torch_ok; then
    "$VENV/bin/python" -c "import torch; print(f'setup: installed torch {torch.__version__}, CUDA {torch.version.cuda}')" >&2 || true
    if [ "$TORCH_CUDA" = "1" ]; then
      echo "setup: torch==$TORCH_VERSION with CUDA did not install" >&2
    else
      echo "setup: the installed torch is not the CPU build of $TORCH_VERSION; install it by hand with" >&2
      echo "setup:   $VENV/bin/pip install --index-url $TORCH_CPU_INDEX torch==$TORCH_VERSION   (or set TORCH_CUDA=1 for the GPU build)" >&2
    fi
    exit 1
  fi
fi
# The locked set installs without dependency resolution (pip's resolver alone takes minutes over this
# many packages); pip check then verifies it. Any failure, another Python, or ROBO_RL_RESOLVE=1 falls
# back to resolving pyproject.toml's ranges.
LOCK=requirements.lock
locked_python=$("$VENV/bin/python" -c 'import sys, platform; print(sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64")')
if [ -f "$LOCK" ] && [ "${ROBO_RL_RESOLVE:-0}" != "1" ] && [ "$locked_python" = "True" ] \
   && echo "setup: installing robo-rl and the locked dependency set ($LOCK)" \
   && "${PIP[@]}" "${INSTALL[@]}" --no-deps -r "$LOCK" && "${PIP[@]}" "${INSTALL[@]}" --no-deps -e . \
   && "$VENV/bin/python" -m pip check >/dev/null; then
  :
else
  echo "setup: installing robo-rl and its pinned dependencies (resolving pyproject.toml)"
  "${PIP[@]}" "${INSTALL[@]}" -e ".[ray,test,docs]"
fi
touch "$VENV/.installed"
echo "setup: done ($VENV)"
