import numpy as np
import pytest

from robo_rl.replay import ReplayBuffer


def fill(buffer, n, start=0):
    for i in range(start, start + n):
        buffer.add(np.full(3, i, np.float32), np.full(2, i / 100, np.float32), float(i), np.full(3, i + 1, np.float32), i % 7 == 0)


def test_ring_overwrites_oldest_and_keeps_fields_aligned():
    buffer = ReplayBuffer((3,), 2, capacity=10, seed=0)
    fill(buffer, 25)
    assert len(buffer) == 10 and buffer.added == 25
    assert sorted(buffer.reward[:, 0].tolist()) == list(range(15, 25))
    batch = buffer.sample(64)
    assert batch["obs"].shape == (64, 3) and batch["action"].shape == (64, 2)
    np.testing.assert_array_equal(batch["next_obs"][:, 0].numpy(), batch["obs"][:, 0].numpy() + 1)
    np.testing.assert_array_equal(batch["reward"][:, 0].numpy(), batch["obs"][:, 0].numpy())
    np.testing.assert_array_equal(batch["terminated"][:, 0].numpy(), (batch["reward"][:, 0].numpy() % 7 == 0))


def test_state_round_trip_continues_identically():
    a = ReplayBuffer((3,), 2, capacity=10, seed=1)
    fill(a, 13)
    a.sample(5)
    b = ReplayBuffer((3,), 2, capacity=10, seed=99)
    b.load_state_dict(a.state_dict())
    fill(a, 4, start=13)
    fill(b, 4, start=13)
    for name in ("obs", "reward", "terminated"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.sample(8)["obs"].numpy(), b.sample(8)["obs"].numpy())


def test_uint8_pixels_and_errors():
    buffer = ReplayBuffer((3, 8, 8), 1, capacity=4, obs_dtype=np.uint8)
    assert buffer.obs.dtype == np.uint8
    with pytest.raises(RuntimeError, match="empty"):
        buffer.sample(1)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer((3,), 1, capacity=0)


def test_relabeled_rewards_reach_every_tiled_copy_but_not_newer_data():
    buffer = ReplayBuffer((3,), 2, capacity=12, seed=0)
    fill(buffer, 4)
    buffer.tile(3)  # slots 0-3 hold transitions 0-3, and so do 4-7 and 8-11
    fill(buffer, 2, start=4)  # transitions 4 and 5 overwrite slots 0 and 1 (the oldest copies)
    buffer.set_rewards(np.array([2, 3]), np.array([-2.5, -3.5]))  # transitions 2 and 3, relabeled late
    np.testing.assert_array_equal(buffer.reward[:, 0], [4, 5, -2.5, -3.5, 0, 1, -2.5, -3.5, 0, 1, -2.5, -3.5])
    buffer.set_rewards(np.array([0]), np.array([-4.0]))  # transition 4, which has no copies
    np.testing.assert_array_equal(buffer.reward[:, 0], [-4, 5, -2.5, -3.5, 0, 1, -2.5, -3.5, 0, 1, -2.5, -3.5])
    restored = ReplayBuffer((3,), 2, capacity=12, seed=0)
    restored.load_state_dict(buffer.state_dict())
    restored.set_rewards(np.array([2]), np.array([-6.0]))  # copies are still known after a checkpoint
    np.testing.assert_array_equal(restored.reward[:, 0], [-4, 5, -6, -3.5, 0, 1, -6, -3.5, 0, 1, -6, -3.5])
    with pytest.raises(ValueError, match="2 slots but 1 rewards"):
        buffer.set_rewards(np.array([0, 1]), np.array([1.0]))


def by_age(buffer):
    """Rewards (= transition numbers here) from the oldest to the newest."""
    order = (buffer.oldest + np.arange(buffer.size)) % buffer.capacity
    return buffer.reward[order, 0].tolist()


@pytest.mark.parametrize("keep_terminals", [False, True])
def test_a_store_resumed_with_a_larger_capacity_keeps_contents_order_and_ages(keep_terminals):
    from robo_rl.replay import FadingSampler

    small = ReplayBuffer((3,), 2, capacity=10, seed=4, keep_terminals=keep_terminals)
    fill(small, 27)  # wrapped around: the oldest transition is mid-ring
    big = ReplayBuffer((3,), 2, capacity=16, seed=0, keep_terminals=keep_terminals)
    big.load_state_dict(small.state_dict())
    assert big.capacity == 16 and len(big) == 10 and by_age(big) == by_age(small)
    # Fading sampling draws by age: the same draws pick the same transitions in both stores.
    same = [FadingSampler().indices(store, 256) for store in (small, big)]
    np.testing.assert_array_equal(small.reward[same[0], 0], big.reward[same[1], 0])
    # New transitions fill the new room before anything old is overwritten.
    fill(big, 6, start=27)
    assert by_age(big) == by_age(small) + [float(i) for i in range(27, 33)]


def test_a_grown_tiled_store_still_relabels_every_copy():
    store = ReplayBuffer((3,), 2, capacity=12, seed=0)
    fill(store, 4)
    store.tile(3)
    grown = ReplayBuffer((3,), 2, capacity=20, seed=0)
    grown.load_state_dict(store.state_dict())
    assert grown.tiled and len(grown) == 12 and by_age(grown) == by_age(store)
    grown.set_rewards(np.array([1]), np.array([-5.0]))  # the slot of transition 1: all 3 copies change
    assert by_age(grown).count(-5.0) == 3


def test_a_smaller_configured_capacity_never_drops_stored_transitions():
    big = ReplayBuffer((3,), 2, capacity=16, seed=0)
    fill(big, 12)
    small = ReplayBuffer((3,), 2, capacity=8, seed=0)
    small.load_state_dict(big.state_dict())
    assert small.capacity == 16 and by_age(small) == by_age(big)
