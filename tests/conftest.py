import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
# Keep each test process on one thread: pytest-xdist already runs one worker per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


# Python processes start from a per-worker fork server that has imported torch & co. already
# (tests/forkserver.py); ROBO_RL_TEST_FORK=0 starts every one as a fresh interpreter instead.
_SERVER = None
_SERVER_FOLDER: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _forkserver_folder(tmp_path_factory):
    """The server's socket and log (what each command cost) live in the worker's temp folder."""
    global _SERVER_FOLDER
    _SERVER_FOLDER = tmp_path_factory.mktemp("forkserver")


def _forkserver():
    """The worker's fork server, started on first use; None (fresh interpreters) if it cannot start."""
    global _SERVER
    if _SERVER is None:
        import tempfile

        from forkserver import ForkServer

        folder = _SERVER_FOLDER
        if folder is None or len(str(folder)) > 80:   # a Unix socket's path has at most 107 bytes
            folder = Path(tempfile.mkdtemp(prefix="robo_rl_fork_"))
        try:
            _SERVER = ForkServer(folder)
        except (OSError, RuntimeError) as exc:
            print(f"tests: no fork server ({exc}); starting fresh interpreters", file=sys.stderr)
            _SERVER = False
    return _SERVER or None


def pytest_runtest_setup(item):
    """Under `--dist loadgroup`, pytest-xdist keeps each `xdist_group` on one worker by suffixing the
    tests' ids with the group (one roscore, one trained arm policy, one local Ray per run). A pytest that
    drops the suffix (9.2 does: pytest-dev/pytest-xdist#1386) runs a group on every worker at once, slower
    and with competing Ray starts: its tests fail, saying so, rather than lose the grouping silently."""
    if getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
        pytest.fail(f"--dist loadgroup: pytest {pytest.__version__} dropped this test's xdist_group; install the "
                    "pinned pytest (requirements.lock)", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    if _SERVER:
        _SERVER.close()


def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(cmd, **kwargs)`, through the fork server where it can run the command."""
    from forkserver import ForkedProcess, handled

    if os.environ.get("ROBO_RL_TEST_FORK", "1") != "0" and handled(cmd, kwargs) and _forkserver() is not None:
        return ForkedProcess(_forkserver(), cmd, **kwargs)
    return subprocess.Popen(cmd, **kwargs)


def run_process(cmd: list[str], timeout: float | None = None, capture_output: bool = False, check: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run`, with the process started by `spawn`."""
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = spawn(cmd, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `robo-rl <args>` in a process of its own, as a user would."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return run_process([sys.executable, "-m", "robo_rl.cli", *args], cwd=cwd, capture_output=True,
               text=True, timeout=timeout, env=full_env)


# One process for many CLI invocations that fail fast (bad input): the real `main`, the real stderr,
# the exit code it returns or raises; only the interpreter start and imports are shared between them.
_BATCH = """
import contextlib, io, json, sys, traceback
from robo_rl.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


def run_cli_batch(invocations: list[list[str]], cwd: Path, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run `robo-rl <argv>` for each argv in one fresh interpreter, one after the other."""
    import json

    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    done = run_process([sys.executable, "-c", _BATCH, json.dumps(invocations)], cwd=cwd, capture_output=True,
               text=True, timeout=timeout, env=full_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [subprocess.CompletedProcess(argv, r["returncode"], r["stdout"], r["stderr"])
            for argv, r in zip(invocations, json.loads(done.stdout.splitlines()[-1]))]


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, **kwargs):
        return run_cli(*args, cwd=kwargs.pop("cwd", tmp_path), **kwargs)

    return _run


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`<shared temp folder>/<name>`, made by `build(path)` once per test run: pytest-xdist workers
    share the folder above their own base temp folder, and a file lock makes the others wait for the
    first. `build` must leave the path complete or absent (write it atomically)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):   # a worker's base is <run folder>/popen-gwN
        shared = shared.parent
    path = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not path.exists():
            build(path)
    return path


# matplotlib's first four default line colours
PLOT_COLOURS = {"C0": (0x1F, 0x77, 0xB4), "C1": (0xFF, 0x7F, 0x0E), "C2": (0x2C, 0xA0, 0x2C), "C3": (0xD6, 0x27, 0x28)}


def assert_png_shows(path: Path, *colours: str, min_pixels: int = 30) -> None:
    """The PNG at `path` is a real plot: it decodes, and each named line colour covers some pixels
    (a blank or unplotted figure fails)."""
    import imageio.v3 as iio
    import numpy as np

    image = iio.imread(path)[..., :3].astype(int)
    assert image.shape[0] > 100 and image.shape[1] > 100, image.shape
    for name in colours:
        target = np.array(PLOT_COLOURS[name])
        close = (np.abs(image - target).sum(-1) < 40).sum()
        assert close >= min_pixels, f"{path.name}: {close} pixels of {name}"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every Ray test of the run (they share a worker: xdist group "ray"); a
    module-scoped one was started again whenever that worker ran another module's test in between."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from robo_rl.jobs import ray_init

    ray_init({"workers": 2})
    yield
    ray.shutdown()


@pytest.fixture
def local_ray(ray_session, request):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(request.module)  # the workers cannot import tests/
