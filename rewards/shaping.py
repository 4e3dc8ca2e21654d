"""Potential-based reward shaping (Ng, Harada, Russell 1999), used by every learned progress reward.

    r'(s, a, s') = r(s, a, s') + gamma * Phi(s') - Phi(s),    with Phi(s') = 0 when s' is terminal

Summed along any trajectory the extra terms telescope to gamma^T Phi(s_T) - Phi(s_0), so every policy's
value moves by the same -Phi(s_0) and the optimal policy is unchanged. The terminal rule matters: an
episode that ends cannot collect the potential of its last state, otherwise ending early would be
penalised by gamma * Phi(goal) relative to waiting. A time-limit cut (truncation) is not terminal: the
state goes on and keeps its potential. Adding progress itself, r + Phi(s'), is the "semantic trap": it pays
for sitting in high-progress states instead of finishing.

`gamma` must be the learner's discount (for n-step targets, gamma^n with Phi(s_{t+n})).
"""
from __future__ import annotations

import numpy as np


def shaped_reward(reward: float | np.ndarray, phi: float | np.ndarray, next_phi: float | np.ndarray, gamma: float,
                  terminated: bool | np.ndarray) -> float | np.ndarray:
    next_phi = np.where(terminated, 0.0, next_phi)
    return reward + gamma * next_phi - phi


def value_iteration(transitions: np.ndarray, rewards: np.ndarray, terminal: np.ndarray, gamma: float,
                    iterations: int = 5000, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Optimal Q and greedy policy of a deterministic tabular MDP.

    transitions[s, a] = next state, rewards[s, a] = reward, terminal[s'] = episode ends on entering s'.
    """
    n_states, n_actions = transitions.shape
    q = np.zeros((n_states, n_actions))
    for _ in range(iterations):
        v = q.max(axis=1)
        target = rewards + gamma * np.where(terminal[transitions], 0.0, v[transitions])
        if np.max(np.abs(target - q)) < tol:
            q = target
            break
        q = target
    return q, q.argmax(axis=1)


def shape_table(transitions: np.ndarray, rewards: np.ndarray, terminal: np.ndarray, phi: np.ndarray, gamma: float,
                naive: bool = False) -> np.ndarray:
    """The reward table with potential-based shaping, or with the naive progress bonus r + Phi(s')."""
    next_phi = phi[transitions]
    if naive:
        return rewards + next_phi
    return shaped_reward(rewards, phi[:, None], next_phi, gamma, terminal[transitions])
