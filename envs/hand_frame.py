"""Meta-World observations in the hand's frame: object and goal positions relative to the gripper.

Meta-World v3 observes 39 numbers: two frames (now, and the previous step) of
    hand xyz (3) | gripper opening (1) | object 1 xyz (3) + quaternion (4) | object 2 xyz (3) + quaternion (4)
followed by the goal xyz (3). Every position there is absolute, in the world. A policy fitted to one
demonstration then ties its actions to where the demo's object was: moved 10 cm, the object is out of
its data, and the policy drives the hand to the demo's old spot (`robo-rl bench demos --coverage`).

With `env.hand_frame=true` every position is given relative to the hand now:
    object 1/2 xyz - hand xyz, goal xyz - hand xyz, previous hand xyz - hand xyz (its last displacement),
and the hand's own position is 0. Meta-World's actions move the hand by a displacement, so a task whose
whole scene is translated keeps the same actions in this frame, and one demo speaks for every start that
differs from it by a translation. The Fetch tasks observe relative positions for the same reason (Plappert et
al. 2018, "Multi-Goal Reinforcement Learning", the `object_rel_pos` of their observation). What the frame
gives up: the hand's absolute position (the table's edges and joint limits are no longer observed).
An absent second object, or a hidden goal, observed as zeros by Meta-World, stays 0 (not "minus the hand").
The layout and size stay Meta-World's, so index-based readers (obs[4:7]: the object) keep their meaning.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

FRAME = 18                     # numbers per frame (now, previous)
HAND = slice(0, 3)
POSITIONS = (4, 11)            # object 1 xyz and object 2 xyz, within a frame
GOAL = slice(36, 39)


def hand_frame(obs: np.ndarray) -> np.ndarray:
    """Meta-World observations (39,) or (N, 39) with every position relative to the hand now."""
    obs = np.asarray(obs, dtype=np.float32)
    rows = obs.reshape(-1, obs.shape[-1])
    if rows.shape[-1] != 2 * FRAME + 3:
        raise ValueError(f"env.hand_frame: expects Meta-World's 39 observations, got {rows.shape[-1]}")
    hand = rows[:, HAND]
    out = rows.copy()
    for base in (0, FRAME):
        for start in POSITIONS:
            cols = slice(base + start, base + start + 3)
            out[:, cols] = relative(rows[:, cols], hand)
        out[:, base : base + 3] = rows[:, base : base + 3] - hand
    out[:, GOAL] = relative(rows[:, GOAL], hand)
    return out.reshape(obs.shape)


def relative(position: np.ndarray, hand: np.ndarray) -> np.ndarray:
    """position - hand where the position is observed; 0 where Meta-World observes none (all zeros)."""
    observed = np.any(position != 0.0, axis=-1, keepdims=True)
    return np.where(observed, position - hand, 0.0).astype(np.float32)


class HandFrame(gym.ObservationWrapper):
    """Observations in the hand's frame (hand_frame above). Demo states recorded in the world frame are mapped
    the same way (`transform_states`, read by rewards/demos.py's demo_transitions)."""

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return hand_frame(observation)

    def transform_states(self, states: np.ndarray) -> np.ndarray:
        return hand_frame(states)
