"""Start the suite's Python processes from one interpreter that has already imported torch & co.

Most of the suite's time used to go on starting interpreters: every `robo-rl ...` a test runs, every
deploy process and sim arm node, paid about 3 CPU-seconds of imports before doing anything. Here one
server process per pytest worker imports the heavy modules once; each command is then a fork of it
that runs `python -m <module> ...`, `python <script> ...` or `python -c <code>` as a fresh interpreter
would (its own pid, environment, working folder, stdio, signals, exit code). The processes are real:
they can be signalled, killed and waited for like any other.

`ForkedProcess` behaves like `subprocess.Popen` for what the tests use (pid, poll, wait, send_signal,
terminate, kill, communicate, stdout/stderr pipes, returncode). Commands that are not Python, or that
ask for an option the server does not handle, go to `subprocess.Popen` instead (see `spawn`).

Run as a script, this file is the server: `python forkserver.py <socket path>`.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# What every forked command finds imported already: the bulk of an interpreter's start-up here
# (torch._dynamo is imported by the first optimizer a process makes, about 2 CPU-seconds).
PRELOAD = ("numpy", "scipy", "torch", "torch._dynamo", "gymnasium", "mujoco", "metaworld", "dm_control.suite",
           "shimmy", "omegaconf", "hydra", "stable_baselines3", "matplotlib.pyplot", "imageio", "safetensors",
           "sklearn.gaussian_process", "robo_rl.config", "robo_rl.runs", "robo_rl.train", "robo_rl.checkpoint",
           "robo_rl.evaluate", "robo_rl.fas", "robo_rl.report", "robo_rl.mbtl", "robo_rl.envs.factory",
           "robo_rl.envs.pixels", "robo_rl.agents.sac", "robo_rl.agents.sb3", "robo_rl.agents.srl",
           "robo_rl.agents.symphony", "robo_rl.rewards.pipeline", "robo_rl.real_robot.deploy",
           "robo_rl.real_robot.sim_arm_node")


# ----------------------------------------------------------------------------------------------------
# server side


def _serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:   # a module the command needs will raise in the command itself, as it would
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print("forkserver: ready", flush=True)
    children: dict[int, tuple[socket.socket, list[str]]] = {}
    parent = os.getppid()
    while True:
        ready, _, _ = select.select([listener], [], [], 0.02)
        if ready:
            conn, _ = listener.accept()
            _start_one(conn, listener, children)
        _reap(children)
        if os.getppid() != parent:   # the pytest worker is gone
            return


def _start_one(conn: socket.socket, listener: socket.socket, children: dict) -> None:
    message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size = int.from_bytes(message[:8], "big")
    while len(message) < 8 + size:
        message += conn.recv(1 << 16)
    request = json.loads(message[8:].decode())
    # Signals sent right after the fork must not be lost: the interpreter drops those that arrive
    # before its after-fork reset, so they wait blocked in the kernel until the child is ready.
    caught = signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
    pid = os.fork()
    if pid == 0:
        for other in (listener, conn, *(c for c, _ in children.values())):
            other.close()
        _child(request, fds, caught)   # never returns
    signal.pthread_sigmask(signal.SIG_SETMASK, caught)
    for fd in fds:
        os.close(fd)
    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    children[pid] = (conn, request["argv"])


def _reap(children: dict[int, tuple[socket.socket, list[str]]]) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        entry = children.pop(pid, None)
        if entry is not None:
            conn, argv = entry
            # the server's log: what each command cost (CPU seconds, its own and its children's)
            print(json.dumps({"argv": argv[:4], "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}),
                  file=sys.stderr, flush=True)
            try:
                conn.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            except OSError:
                pass
            conn.close()


def _child(request: dict, fds: list[int], mask: set) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if request["new_session"]:
            os.setsid()
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _fresh_stdio(unbuffered=bool(os.environ.get("PYTHONUNBUFFERED")))
        # sys.path as a fresh interpreter builds it: [the command's own folder, *PYTHONPATH, *the rest]
        rest = sys.path[1:]
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in rest]
        sys.path[:] = ["", *extra, *rest]
        import numpy as np

        np.random.seed(None)   # a fresh interpreter's global numpy RNG is seeded from the OS
        code = _run(request["argv"])
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)   # as the interpreter does on an uncaught Ctrl-C
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    _flush()
    os._exit(code)


def _run(argv: list[str]) -> int:
    import runpy

    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        sys.modules.pop(argv[1], None)   # imported by the server: run as __main__ afresh, as `-m` does
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
        import types

        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(argv[1], "<string>", "exec"), vars(main))
    else:
        sys.argv = list(argv)
        sys.path[0] = str(Path(argv[0]).resolve().parent)
        runpy.run_path(argv[0], run_name="__main__")
    return 0


def _exit_code(value) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _fresh_stdio(unbuffered: bool) -> None:
    import io

    for name, fd in (("stdout", 1), ("stderr", 2)):
        raw = io.FileIO(fd, "w", closefd=False)
        line = name == "stderr" or raw.isatty()
        setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace",
                                            line_buffering=line, write_through=unbuffered))
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.__stdout__, sys.__stderr__, sys.__stdin__ = sys.stdout, sys.stderr, sys.stdin


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# ----------------------------------------------------------------------------------------------------
# client side


class ForkServer:
    """One server per pytest worker, started on first use."""

    def __init__(self, folder: Path):
        self.path = str(folder / "forkserver.sock")
        self.log = open(folder / "forkserver.log", "w")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"forkserver did not start: {line!r}")

    def spawn(self, argv: list[str], env: dict, cwd: str | Path, stdio: tuple[int, int, int],
              new_session: bool) -> tuple[socket.socket, int]:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        request = json.dumps({"argv": argv, "env": env, "cwd": str(cwd), "new_session": new_session}).encode()
        message = len(request).to_bytes(8, "big") + request
        sent = socket.send_fds(conn, [message], list(stdio))
        conn.sendall(message[sent:])
        reply = _read_line(conn, None)
        return conn, json.loads(reply)["pid"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def _read_line(conn: socket.socket, timeout: float | None) -> str | None:
    """One newline-ended message from the server, or None if none came within `timeout`."""
    data = b""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([conn], [], [], left)
        if not ready:
            if data:
                continue
            return None
        chunk = conn.recv(4096)
        if not chunk:
            raise RuntimeError("forkserver closed the connection")
        data += chunk
    return data.decode()


class ForkedProcess:
    """A command run by the fork server, with the parts of `subprocess.Popen` that the tests use."""

    def __init__(self, server: ForkServer, args: list[str], env: dict | None = None, cwd: str | Path | None = None,
                 stdin=None, stdout=None, stderr=None, text: bool = False, start_new_session: bool = False):
        self.args = args
        self.returncode: int | None = None
        self.stdout = self.stderr = None
        self._text = text
        opened: list[int] = []   # our copies of the child's ends, closed once it has them
        null = os.open(os.devnull, os.O_RDWR)
        opened.append(null)
        stdin_fd = null if stdin in (None, subprocess.DEVNULL) else _fd(stdin)
        out_fd = self._target(stdout, "stdout", opened, null)
        if stderr == subprocess.STDOUT:
            err_fd = out_fd
        else:
            err_fd = self._target(stderr, "stderr", opened, null)
        try:
            self._conn, self.pid = server.spawn(args[1:], dict(os.environ if env is None else env),
                                                cwd or os.getcwd(), (stdin_fd, out_fd, err_fd), start_new_session)
        finally:
            for fd in opened:
                os.close(fd)

    def _target(self, spec, name: str, opened: list[int], null: int) -> int:
        if spec is None:
            return 1 if name == "stdout" else 2
        if spec == subprocess.DEVNULL:
            return null
        if spec == subprocess.PIPE:
            read_end, write_end = os.pipe()
            opened.append(write_end)
            text = {"mode": "r", "encoding": "utf-8", "errors": "replace"} if self._text else {"mode": "rb"}
            setattr(self, name, open(read_end, **text))
            return write_end
        return _fd(spec)

    def poll(self) -> int | None:
        if self.returncode is None:
            line = _read_line(self._conn, 0.0)
            if line is not None:
                self._finish(line)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = _read_line(self._conn, timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._finish(line)
        return self.returncode

    def _finish(self, line: str) -> None:
        self.returncode = json.loads(line)["returncode"]
        self._conn.close()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None):
        """Read both pipes to their end and wait for the exit, as Popen.communicate does."""
        outputs: dict[str, object] = {}
        readers = []
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                reader = threading.Thread(target=lambda n=name, s=stream: outputs.__setitem__(n, s.read()), daemon=True)
                reader.start()
                readers.append(reader)
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                stream.close()
        return outputs.get("stdout"), outputs.get("stderr")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                stream.close()
        self.wait()


def _fd(spec) -> int:
    return spec if isinstance(spec, int) else spec.fileno()


def handled(cmd: list[str], kwargs: dict) -> bool:
    """Whether the fork server can run this command: a Python interpreter with -m, -c or a script,
    and only the Popen options ForkedProcess implements."""
    allowed = {"env", "cwd", "stdin", "stdout", "stderr", "text", "start_new_session"}
    return (len(cmd) >= 2 and cmd[0] == sys.executable and (cmd[1] in ("-m", "-c") or cmd[1].endswith(".py"))
            and set(kwargs) <= allowed)


if __name__ == "__main__":
    _serve(sys.argv[1])
