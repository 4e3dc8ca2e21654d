"""Learned rewards judged off the expert's trajectories: evaluation sets made in the simulator, and metrics.

Sets (per Meta-World task with an articulated object: drawer, door, button), each trajectory with camera
frames and the true progress of every frame:
  noisy <sigma>  the scripted expert with Gaussian action noise (1.0, 2.0; at 0.3-0.6 the experts of these
                 tasks still succeed every time): it fails part of the time on some tasks
  regression     the expert, but once it has moved the object 60% of the way, the object is put back 70% of
                 the way to where it started (a scripted perturbation of the object's joints); the expert
                 then recovers, so true progress goes down and up again
  random         uniform random actions
  <agent>        one rollout of each snapshot of a trained policy (for example the RL agents of
                 `robo-rl bench rewards`, early and late in their training)
True progress, from the simulator's state: 0.5 x reach + 0.5 x object, with reach = 1 - (gripper-object
distance / its value at reset) and object = (distance of the object's joints from their reset values) /
(the task's median of that distance at the expert's first success), each clipped to [0, 1].
Metrics (`score_signal`): Spearman rank correlation with true progress over all frames of a set; on its
successful trajectories, rank correlation with time up to first success (the held-out-demo metric);
pairwise end-state accuracy (the share of (failed, successful) pairs whose failed trajectory ends lower;
a tie counts as wrong); exploitability (the highest value any frame of a non-succeeding rollout reaches,
over the mean value at the demos' success frames: above 1, a policy can score more without succeeding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

ARM_JOINTS = 9          # Meta-World: the arm's 7 joints and 2 fingers come first in qpos; the rest are the task's objects
REGRESSION_AT = 0.6     # the object's share of its way at which the regression set's perturbation happens
REGRESSION_KEEP = 0.3   # the share of the object's displacement left after it
NOISE_LEVELS = (1.0, 2.0)


@dataclass
class Trajectory:
    frames: dict[str, np.ndarray]   # camera -> (T+1, H, W, 3) uint8
    progress: np.ndarray            # (T+1,) true progress in [0, 1]
    success: np.ndarray             # (T+1,) the env's success flag at each observation (False at reset)
    kind: str
    seed: int

    @property
    def succeeded(self) -> bool:
        return bool(self.success.any())


def _object_joints(env: Any) -> np.ndarray:
    from robo_rl.envs.render import mujoco_handles

    return mujoco_handles(env)[1].qpos[ARM_JOINTS:].copy()


def _gripper_object_distance(env: Any) -> float:
    base = env.unwrapped
    return float(np.linalg.norm(base.tcp_center - base._get_pos_objects()[:3]))


class ProgressMeter:
    """True progress of the current state, relative to the episode's reset state."""

    def __init__(self, object_scale: float) -> None:
        if not object_scale > 0:
            raise ValueError(f"object scale must be > 0, got {object_scale}")
        self.object_scale = float(object_scale)

    def reset(self, env: Any) -> float:
        self.joints0, self.distance0 = _object_joints(env), max(_gripper_object_distance(env), 1e-6)
        return self(env)

    def moved(self, env: Any) -> float:
        """The object's share of its way (1 where the expert is at first success)."""
        return float(np.clip(np.linalg.norm(_object_joints(env) - self.joints0) / self.object_scale, 0.0, 1.0))

    def __call__(self, env: Any) -> float:
        reach = np.clip(1.0 - _gripper_object_distance(env) / self.distance0, 0.0, 1.0)
        return float(0.5 * reach + 0.5 * self.moved(env))


def object_scale(task: str, episodes: int = 5, seed: int = 0) -> float:
    """The median distance the expert moves the object's joints by its first success (the unit of `object`)."""
    from robo_rl.envs.experts import expert_policy
    from robo_rl.envs.factory import env_config, make_env

    env, policy, moved = make_env(env_config("metaworld", task, max_episode_steps=300), seed=seed), expert_policy(task), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        start = _object_joints(env)
        for _ in range(300):
            obs, _, terminated, truncated, info = env.step(policy.get_action(obs).astype(np.float32))
            if info["success"] or terminated or truncated:
                break
        if info["success"]:
            moved.append(float(np.linalg.norm(_object_joints(env) - start)))
    env.close()
    scale = float(np.median(moved)) if moved else 0.0
    if scale <= 1e-6:
        from robo_rl.config import ConfigError

        raise ConfigError(f"task '{task}': the expert's successes do not move an articulated object, so true progress "
                          "is not defined (use tasks such as drawer-open-v3, door-open-v3, button-press-topdown-v3)")
    return scale


def _perturb_object(env: Any, joints0: np.ndarray, keep: float) -> None:
    import mujoco

    from robo_rl.envs.render import mujoco_handles

    model, data = mujoco_handles(env)
    data.qpos[ARM_JOINTS:] = joints0 + keep * (data.qpos[ARM_JOINTS:] - joints0)
    data.qvel[ARM_JOINTS:] = 0.0
    mujoco.mj_forward(model, data)


def rollout(env: Any, renderer: Any, cameras: Sequence[str], policy: Callable[[np.ndarray], np.ndarray], meter: ProgressMeter,
            seed: int, steps: int, kind: str, regress: bool = False) -> Trajectory:
    """One episode of `policy` (a function obs -> action in [-1, 1]) with frames and true progress."""
    obs, _ = env.reset(seed=seed)
    progress, success = [meter.reset(env)], [False]
    views = {cam: [frame] for cam, frame in zip(cameras, renderer.render())}
    perturbed = not regress
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(np.clip(policy(obs), -1, 1).astype(np.float32))
        if not perturbed and meter.moved(env) >= REGRESSION_AT:
            _perturb_object(env, meter.joints0, REGRESSION_KEEP)
            obs, perturbed = env.unwrapped._get_obs(), True
        progress.append(meter(env))
        success.append(bool(info["success"]))
        for cam, frame in zip(cameras, renderer.render()):
            views[cam].append(frame)
        if terminated or truncated:
            break
    return Trajectory({c: np.stack(v) for c, v in views.items()}, np.asarray(progress), np.asarray(success), kind, seed)


def make_sets(task: str, cameras: Sequence[str], size: int, episodes: int, seed: int = 0, steps: int = 200,
              agents: Mapping[str, Sequence[Callable[[np.ndarray], np.ndarray]]] | None = None,
              scale: float | None = None) -> dict[str, list[Trajectory]]:
    """The evaluation sets of one task (see the module's docstring); an agent's set holds one rollout of
    each of its policies (its snapshots along training)."""
    from robo_rl.envs.experts import expert_policy

    meter = ProgressMeter(scale if scale is not None else object_scale(task))
    expert, rng = expert_policy(task), np.random.default_rng(seed)
    noisy = {sigma: (lambda obs, s=sigma: expert.get_action(obs) + s * rng.standard_normal(4)) for sigma in NOISE_LEVELS}
    # per set: the policy of each of its trajectories, and whether the object is perturbed
    policies: dict[str, tuple[list[Callable], bool]] = {f"noisy {s}": ([p] * episodes, False) for s, p in noisy.items()}
    policies["regression"] = ([expert.get_action] * episodes, True)
    policies["random"] = ([lambda obs: rng.uniform(-1, 1, 4)] * episodes, False)
    for name, snapshots in (agents or {}).items():
        policies[name] = (list(snapshots), False)
    return _play(task, cameras, size, policies, meter, seed, steps)


def _play(task: str, cameras: Sequence[str], size: int, policies: Mapping[str, tuple[Sequence[Callable], bool]],
          meter: "ProgressMeter", seed: int, steps: int) -> dict[str, list[Trajectory]]:
    """One trajectory per listed policy, set after set (set k's trajectory i plays seed + 1000 k + i)."""
    from robo_rl.envs.factory import env_config, make_env
    from robo_rl.envs.render import CameraRenderer

    env = make_env(env_config("metaworld", task, max_episode_steps=steps), seed=seed)
    renderer = CameraRenderer(env, list(cameras), size)
    sets = {}
    try:
        for offset, (name, (per_trajectory, regress)) in enumerate(policies.items()):
            sets[name] = [rollout(env, renderer, cameras, policy, meter, seed + 1000 * offset + i, steps, name, regress)
                          for i, policy in enumerate(per_trajectory)]
    finally:
        renderer.close()
        env.close()
    return sets


def failed_rollouts(task: str, cameras: Sequence[str], size: int, policies: Sequence[Callable[[np.ndarray], np.ndarray]],
                    seed: int, steps: int = 200) -> list[Trajectory]:
    """One rollout of each policy (seeds seed, seed+1, ...), keeping those that never succeed: a trained
    agent's failed attempts, the hard negatives of a learned reward's next fit (their frames are what
    counts; true progress is measured in an unnormalised unit)."""
    played = _play(task, cameras, size, {"agent": (list(policies), False)}, ProgressMeter(1.0), seed, steps)["agent"]
    return [t for t in played if not t.succeeded]


def as_demo(trajectory: Trajectory) -> Any:
    """The trajectory as a video demo (frames only): a demo file holds the success flag once per step,
    after its action, so the reset observation's flag is dropped."""
    from robo_rl.rewards.demos import Demo

    return Demo(frames=trajectory.frames, success=trajectory.success[1:],
                meta={"seed": trajectory.seed, "success": trajectory.succeeded})


def occluded(trajectory: Trajectory, camera: str) -> Trajectory:
    """The same trajectory with one camera showing a constant grey image (covered, or pointed away)."""
    frames = dict(trajectory.frames)
    frames[camera] = np.full_like(frames[camera], 128)
    return Trajectory(frames, trajectory.progress, trajectory.success, trajectory.kind + f", {camera} occluded", trajectory.seed)


# --- metrics ------------------------------------------------------------------------------------------------
def rank_correlation(values: np.ndarray, truth: np.ndarray) -> float:
    """Spearman's rho; 0 where either side is constant (a signal that ranks nothing)."""
    from scipy.stats import spearmanr

    values, truth = np.asarray(values, np.float64), np.asarray(truth, np.float64)
    if np.ptp(values) == 0 or np.ptp(truth) == 0:
        return 0.0
    return float(spearmanr(values, truth).correlation)


def pairwise_end_accuracy(end_values: Sequence[float], succeeded: Sequence[bool]) -> float | None:
    """Share of (failed, successful) pairs whose failed trajectory ends strictly lower (ties are wrong)."""
    failed = [v for v, s in zip(end_values, succeeded) if not s]
    passed = [v for v, s in zip(end_values, succeeded) if s]
    if not failed or not passed:
        return None
    return float(np.mean([f < p for f in failed for p in passed]))


def time_order(values: Sequence[np.ndarray], trajectories: Sequence[Trajectory]) -> float | None:
    """Mean rank correlation with time up to first success, over the successful trajectories."""
    rhos = []
    for v, t in zip(values, trajectories):
        if t.succeeded:
            end = int(np.argmax(t.success)) + 1
            rhos.append(rank_correlation(v[:end], np.arange(end)))
    return float(np.mean(rhos)) if rhos else None


def exploitability(values: Sequence[np.ndarray], trajectories: Sequence[Trajectory], success_value: float) -> float | None:
    """The best value of any frame of a non-succeeding trajectory over the demos' mean value at success."""
    worst = [float(np.max(v)) for v, t in zip(values, trajectories) if not t.succeeded]
    if not worst or success_value == 0:
        return None
    return max(worst) / success_value


def score_signal(values: Sequence[np.ndarray], trajectories: Sequence[Trajectory], success_value: float) -> dict[str, Any]:
    """Every metric of one signal on one set (None where the set cannot tell: e.g. no failure in it)."""
    return {
        "rho_progress": rank_correlation(np.concatenate(values), np.concatenate([t.progress for t in trajectories])),
        "rho_time_successful": time_order(values, trajectories),
        "pairwise_end": pairwise_end_accuracy([float(v[-1]) for v in values], [t.succeeded for t in trajectories]),
        "exploitability": exploitability(values, trajectories, success_value),
        "successes": int(sum(t.succeeded for t in trajectories)), "trajectories": len(trajectories),
    }
