"""Headless camera frames from any MuJoCo-backed env of the suite (Gymnasium, Meta-World, dm_control).

One `mujoco.Renderer` is shared by the cameras of an env. Shadows, reflections and multisample
anti-aliasing are switched off: on a CPU rasteriser (osmesa) shadows and reflections cost about five
times the rest of the frame, and 4x multisampling nearly doubles it again.
"""
from __future__ import annotations

from typing import Any, Sequence

import mujoco
import numpy as np


def mujoco_handles(env: Any) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """The MjModel/MjData behind an env of any supported family."""
    base = env.unwrapped
    if hasattr(base, "model") and isinstance(getattr(base, "model", None), mujoco.MjModel):
        return base.model, base.data
    physics = getattr(getattr(base, "_env", None), "physics", None)  # shimmy's dm_control wrapper
    if physics is None:
        physics = getattr(base, "physics", None)
    if physics is not None:
        return physics.model.ptr, physics.data.ptr
    raise TypeError(f"{type(base).__name__} is not backed by MuJoCo; cannot render or set its physics")


def family_of(env: Any) -> str:
    base = env.unwrapped
    module = type(base).__module__
    if module.startswith("metaworld"):
        return "metaworld"
    if module.startswith("shimmy") or hasattr(getattr(base, "_env", None), "physics"):
        return "dmc"
    return "mujoco"


class CameraRenderer:
    """Renders RGB frames (H, W, 3 uint8) from named cameras of an env."""

    def __init__(self, env: Any, cameras: Sequence[str], size: int) -> None:
        self.env = env
        self.model, self.data = mujoco_handles(env)
        self.size = int(size)
        self.model.vis.quality.offsamples = 0  # read when the offscreen buffer is made, below
        self.renderer = mujoco.Renderer(self.model, height=self.size, width=self.size)
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self.cameras = [self._camera(name) for name in cameras]

    def _camera(self, name: str) -> mujoco.MjvCamera | int:
        if name != "default":
            cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cam_id < 0:
                names = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)]
                raise ValueError(f"camera '{name}' not in this model; available: {', '.join(n for n in names if n)}")
            return cam_id
        family = family_of(self.env)
        if family == "metaworld":
            return self._camera("corner")
        if family == "dmc" and self.model.ncam > 0:
            return 0
        return self._tracking_camera()

    def _tracking_camera(self) -> mujoco.MjvCamera:
        # Gymnasium's MuJoCo envs carry a default camera configuration; follow it, else track body 1.
        # Tracking is done by hand (a free camera re-aimed before each frame): MuJoCo's own tracking
        # camera low-pass filters its motion, so a frame would depend on earlier frames.
        camera = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(self.model, camera)
        config = dict(getattr(getattr(self.env.unwrapped, "mujoco_renderer", None), "default_cam_config", None) or {})
        self._track_body = int(config.pop("trackbodyid", 1 if self.model.nbody > 1 else -1))
        config.pop("type", None)
        if "distance" not in config:
            camera.distance = 3.0 * float(self.model.stat.extent) ** 0.5
        for key, value in config.items():
            if isinstance(value, np.ndarray):
                getattr(camera, key)[:] = value
            else:
                setattr(camera, key, value)
        self._lookat_offset = camera.lookat.copy() if "lookat" in config else np.zeros(3)
        return camera

    def _aim(self, camera: mujoco.MjvCamera) -> None:
        if self._track_body >= 0:
            camera.lookat[:] = self.data.subtree_com[self._track_body] + self._lookat_offset

    def render(self) -> list[np.ndarray]:
        frames = []
        for camera in self.cameras:
            if isinstance(camera, mujoco.MjvCamera):
                self._aim(camera)
            self.renderer.update_scene(self.data, camera=camera)
            frames.append(self.renderer.render())
        return frames

    def close(self) -> None:
        self.renderer.close()
