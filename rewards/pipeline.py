"""From demo files to fitted reward files: the steps behind `robo-rl demos ...`.

    collect (demos.py) -> pretrain features (features.py) -> fit perceptual / process (this module)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from robo_rl.rewards.demos import Demo, DemoError, load_demos, load_video_demos
from robo_rl.rewards.features import FeatureNet, load_feature_net, pretrain_tcn, save_feature_net
from robo_rl.rewards.learned import save_reward
from robo_rl.rewards.perceptual import fit_perceptual_reward
from robo_rl.rewards.process import ProcessRewardModel


def demo_features(demos: Sequence[Demo], net: FeatureNet, cameras: Sequence[str]) -> list[np.ndarray]:
    """(T+1, V, D) features of every demo, one view per camera."""
    out = []
    for demo in demos:
        missing = [c for c in cameras if c not in demo.frames]
        if missing:
            raise DemoError(f"demo {demo.meta.get('seed', demo.meta.get('source', '?'))} lacks camera(s) {missing}")
        out.append(np.stack([net.features(demo.frames[c]) for c in cameras], axis=1))
    return out


def pretrain_features(demo_files: Sequence[str | Path], out: str | Path, steps: int = 2000, width: int = 32,
                      seed: int = 0, progress: bool = True) -> tuple[Path, list[float]]:
    """Time-contrastive pre-training on the frames of demo files; writes the weights and manifest."""
    episodes = []
    for path in demo_files:
        episodes += [d.frames for d in load_demos(path)]
    net, losses = pretrain_tcn(episodes, steps=steps, width=width, seed=seed, progress=progress)
    info = {"trained_on": [str(p) for p in demo_files], "steps": steps, "seed": seed,
            "final_loss": float(np.mean(losses[-50:])), "objective": "multi-view time-contrastive triplet"}
    return save_feature_net(net, out, info), losses


def _relative(target: Path, base: Path) -> str:
    return os.path.relpath(target.resolve(), base.resolve().parent)


def fit_perceptual_file(demo_file: str | Path, features: str | Path, out: str | Path, camera: str | None = None,
                        n_steps: int = 5, features_per_step: int = 128, limit: int | None = None, image_size: int = 84,
                        failures_file: str | Path | None = None) -> Path:
    """Perceptual reward from the frames of one camera (observation-only: actions are never read).

    `demo_file` may also be a folder of videos (load_video_demos); its frames are then taken to be what
    the env camera `camera` (default 'corner') will see, resized to `image_size`. `failures_file`: a demo
    file of failed attempts (`robo-rl demos collect ... keep=failed`), the final step's hard negatives.
    """
    if Path(demo_file).is_dir():
        camera = camera or "corner"
        demos = load_video_demos(demo_file, image_size=image_size, camera=camera)[:limit]
    else:
        demos = [d.observation_only() for d in load_demos(demo_file, cameras=[camera] if camera else None, limit=limit)]
    camera = camera or next(iter(demos[0].frames))
    net = load_feature_net(features)
    feats = [f[:, 0] for f in demo_features(demos, net, [camera])]
    failed = []
    if failures_file is not None:
        failures = [d.observation_only() for d in load_demos(failures_file, cameras=[camera])]
        size, want = failures[0].frames[camera].shape[1], demos[0].frames[camera].shape[1]
        if size != want:
            raise DemoError(f"failures file '{failures_file}': {camera} frames are {size} px, the demos' {want} px")
        failed = [f[:, 0] for f in demo_features(failures, net, [camera])]
    reward, splits = fit_perceptual_reward(feats, n_steps, features_per_step, failures=failed)
    out = Path(out)
    return save_reward(out, "perceptual", reward.to_arrays(), {
        "cameras": [camera], "image_size": int(demos[0].frames[camera].shape[1]),
        "features": _relative(Path(features), out), "n_steps": n_steps, "features_per_step": features_per_step,
        "demos": str(demo_file), "splits": splits, "failures": None if failures_file is None else str(failures_file)})


def fit_process_file(demo_files: Sequence[str | Path], features: str | Path, out: str | Path, cameras: Sequence[str],
                     steps: int = 1500, adapt_file: str | Path | None = None, adapt_steps: int = 300,
                     n_stages: int = 3, seed: int = 0, limit: int | None = None) -> Path:
    """Process reward model trained on demo files (several tasks), optionally adapted one-shot to the
    first demo of `adapt_file` (the new task). The goal features are those of the last demo's end."""
    net = load_feature_net(features)
    train = []
    for path in demo_files:
        train += demo_features([d.observation_only() for d in load_demos(path, cameras=cameras, limit=limit)], net, cameras)
    model = ProcessRewardModel(train[0].shape[-1], cameras, seed=seed)
    model.fit(train, steps=steps, n_stages=n_stages)
    goal_source = train[-1]
    if adapt_file is not None:
        one = demo_features([load_demos(adapt_file, cameras=cameras, limit=1)[0].observation_only()], net, cameras)[0]
        model = model.adapt(one, steps=adapt_steps, n_stages=n_stages)
        goal_source = one
    out = Path(out)
    tensors = {**{k: v.numpy() for k, v in model.state().items()}, "goal": goal_source[-1]}
    return save_reward(out, "process", tensors, {
        "cameras": list(cameras), "image_size": int(load_demos(demo_files[0], cameras=cameras, limit=1)[0].frames[cameras[0]].shape[1]),
        "features": _relative(Path(features), out), "hidden": 256, "n_stages": n_stages, "steps": steps,
        "demos": [str(p) for p in demo_files], "adapted_on": None if adapt_file is None else str(adapt_file)})
