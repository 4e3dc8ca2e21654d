"""The fork server that starts the suite's Python processes behaves as a fresh interpreter would."""
import os
import signal
import subprocess
import sys

import pytest
from conftest import run_process, spawn
from forkserver import ForkedProcess

PROBE = ("import os, sys; print(os.getcwd()); print(os.environ.get('PROBE_MARK')); print(sys.path[:2]); "
         "print(__name__, sys.argv[1:]); print('to stderr', file=sys.stderr); sys.exit(int(sys.argv[1]))")


@pytest.mark.parametrize("code", ["0", "3"])
def test_a_forked_command_sees_what_a_fresh_interpreter_sees(tmp_path, code):
    env = {**os.environ, "PROBE_MARK": "forked?", "PYTHONPATH": str(tmp_path / "extra")}
    cmd = [sys.executable, "-c", PROBE, code]
    fresh = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    forked = run_process(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == int(code) and str(tmp_path / "extra") in fresh.stdout


def test_signals_exceptions_and_timeouts_end_a_forked_command_as_they_end_a_process(tmp_path):
    sleeper = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = spawn(sleeper, stdout=subprocess.PIPE, text=True)
        assert isinstance(proc, ForkedProcess) and proc.stdout.readline() == "up\n" and proc.poll() is None
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == -sig
        proc.stdout.close()
    failing = run_process([sys.executable, "-c", "raise ValueError('boom')"], capture_output=True, text=True, timeout=60)
    assert failing.returncode == 1 and "ValueError: boom" in failing.stderr
    with pytest.raises(subprocess.TimeoutExpired):
        run_process(sleeper, timeout=0.5, stdout=subprocess.DEVNULL)
