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


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `robo-rl` entry point as a user would."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "robo_rl.cli", *args], cwd=cwd, capture_output=True,
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
    done = subprocess.run([sys.executable, "-c", _BATCH, json.dumps(invocations)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [subprocess.CompletedProcess(argv, r["returncode"], r["stdout"], r["stderr"])
            for argv, r in zip(invocations, json.loads(done.stdout.splitlines()[-1]))]


@pytest.fixture
def cli(tmp_path):
    def _run(*args: str, **kwargs):
        return run_cli(*args, cwd=kwargs.pop("cwd", tmp_path), **kwargs)

    return _run


# matplotlib's first two default line colours
PLOT_COLOURS = {"C0": (0x1F, 0x77, 0xB4), "C1": (0xFF, 0x7F, 0x0E)}


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
