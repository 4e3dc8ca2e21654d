"""robo-rl: continuous-control and robotics reinforcement learning."""
import os

# MuJoCo picks its GL backend at import time; headless machines have no display and usually no GPU,
# so default to osmesa unless the user chose otherwise (e.g. MUJOCO_GL=egl on a GPU box).
os.environ.setdefault("MUJOCO_GL", "osmesa")
if os.environ["MUJOCO_GL"] == "osmesa":
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

__version__ = "0.1.0"
