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
