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
