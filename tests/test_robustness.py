"""The evaluation sets off the expert's demos have the properties they claim; the metrics give known values."""
from __future__ import annotations

import numpy as np
import pytest

from robo_rl.rewards.robustness import (Trajectory, as_demo, exploitability, failed_rollouts, make_sets, object_scale, occluded,
                                        pairwise_end_accuracy, rank_correlation, score_signal, time_order)


# The tests that read the drawer sets run on one pytest-xdist worker: each worker would play them again.
ON_THE_DRAWER_SETS_WORKER = pytest.mark.xdist_group("drawer_sets")


@pytest.fixture(scope="module")
def drawer_sets():
    from robo_rl.envs.experts import expert_policy

    # an agent's "snapshots": one that holds still (early in training), then one that has learned the task
    snapshots = [lambda obs: np.zeros(4), expert_policy("drawer-open-v3").get_action]
    return make_sets("drawer-open-v3", ["corner", "corner2"], 16, 2, seed=0, scale=object_scale("drawer-open-v3", 3),
                     agents={"agent late": snapshots})


@ON_THE_DRAWER_SETS_WORKER
def test_an_agent_set_holds_one_rollout_per_snapshot_in_order(drawer_sets):
    still, learned = drawer_sets["agent late"]
    assert not still.succeeded and still.progress.max() < 0.1
    assert learned.succeeded and still.kind == learned.kind == "agent late"


@ON_THE_DRAWER_SETS_WORKER
def test_noisy_experts_fail_part_of_the_time_and_random_rollouts_never_succeed(drawer_sets):
    noisy = drawer_sets["noisy 2.0"] + drawer_sets["noisy 1.0"]
    assert any(not t.succeeded for t in noisy)
    assert all(not t.succeeded for t in drawer_sets["random"])
    assert max(t.progress.max() for t in drawer_sets["random"]) < 0.5
    for t in noisy:   # a success is a state the meter calls well advanced
        if t.succeeded:
            assert t.progress[np.argmax(t.success)] > 0.6


@ON_THE_DRAWER_SETS_WORKER
def test_a_regression_trajectory_goes_down_and_up_again(drawer_sets):
    for t in drawer_sets["regression"]:
        drops = np.flatnonzero(np.diff(t.progress) < -0.2)
        assert drops.size >= 1, t.progress
        at = drops[0]
        assert t.progress[at] > 0.5                                  # it had made progress
        assert t.progress[at + 1:].min() < t.progress[at] - 0.2      # then lost it
        assert t.progress[at + 1:].max() > t.progress[at]            # and got it back
        assert t.succeeded


def test_failed_rollouts_keep_only_the_attempts_that_never_succeed(tmp_path):
    from robo_rl.envs.experts import expert_policy
    from robo_rl.rewards.demos import load_demos, save_demos

    still, expert = (lambda obs: np.zeros(4)), expert_policy("drawer-open-v3").get_action
    kept = failed_rollouts("drawer-open-v3", ["corner", "corner2"], 16, [expert, still, still], seed=7)
    assert [t.seed for t in kept] == [8, 9]            # the expert's rollout (seed 7) succeeded and is dropped
    assert all(not t.success.any() for t in kept)
    assert kept[0].frames["corner"].shape == (201, 16, 16, 3) and set(kept[0].frames) == {"corner", "corner2"}
    # they are the failure class of a reward's next fit: a demo file holds them (one success flag per step)
    save_demos(tmp_path / "failed.h5", [as_demo(t) for t in kept], "drawer-open-v3", source="robo-rl-agent-failed")
    loaded = load_demos(tmp_path / "failed.h5")
    assert [d.meta["seed"] for d in loaded] == [8, 9] and [len(d.success) for d in loaded] == [200, 200]
    assert not any(d.success.any() for d in loaded) and np.array_equal(loaded[1].frames["corner2"], kept[1].frames["corner2"])


@ON_THE_DRAWER_SETS_WORKER
def test_an_occluded_view_is_constant_and_the_other_view_is_unchanged(drawer_sets):
    original = drawer_sets["regression"][0]
    covered = occluded(original, "corner2")
    assert np.ptp(covered.frames["corner2"]) == 0
    assert np.array_equal(covered.frames["corner"], original.frames["corner"])
    assert np.ptp(original.frames["corner2"]) > 0


def trajectory(progress, success) -> Trajectory:
    return Trajectory({}, np.asarray(progress, float), np.asarray(success, bool), "hand-made", 0)


def test_metrics_on_hand_made_sequences():
    assert rank_correlation([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert rank_correlation([4, 3, 2, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(-1.0)
    assert pairwise_end_accuracy([0.2, 0.9, 0.5], [False, True, False]) == 1.0
    assert pairwise_end_accuracy([0.95, 0.9], [False, True]) == 0.0
    assert pairwise_end_accuracy([0.1, 0.2], [True, True]) is None   # no failure: the set cannot tell
    up = trajectory([0, 0.5, 1.0, 1.0], [False, False, True, True])
    assert time_order([np.array([0.0, 0.3, 0.9, 0.1])], [up]) == pytest.approx(1.0)   # only up to first success
    failed = trajectory([0, 0.2, 0.1], [False, False, False])
    assert exploitability([np.array([0.1, 0.5, 0.2])], [failed], success_value=0.25) == pytest.approx(2.0)
    assert exploitability([np.array([0.1, 0.5, 0.2])], [up], success_value=0.25) is None


def test_a_constant_reward_ranks_nothing_and_fails_the_pairwise_test():
    trajectories = [trajectory([0, 0.5, 1.0], [False, False, True]), trajectory([0, 0.1, 0.2], [False, False, False])]
    constant = [np.full(3, 0.7), np.full(3, 0.7)]
    scores = score_signal(constant, trajectories, success_value=0.7)
    assert scores["rho_progress"] == 0.0
    assert scores["pairwise_end"] == 0.0
    assert scores["exploitability"] == pytest.approx(1.0)   # a failure scores as much as success: exploitable
    truthful = [t.progress.copy() for t in trajectories]
    good = score_signal(truthful, trajectories, success_value=1.0)
    assert good["rho_progress"] > 0.9 and good["pairwise_end"] == 1.0 and good["exploitability"] < 0.5
