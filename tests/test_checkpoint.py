import os
import pickle
import sys

import numpy as np
import pytest
import torch
from conftest import run_process, spawn

import robo_rl.checkpoint as ckpt
from robo_rl.checkpoint import CheckpointError, load_checkpoint, read_info, save_checkpoint


def nested_state():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    return {
        "net": {"w": torch.randn(4, 3), "b": torch.zeros(3)},
        "optimizer": opt.state_dict(),  # int keys, nested lists, tuples (betas)
        "rng": np.random.default_rng(1).bit_generator.state,
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "counters": [1, 2.5, None, True, "text"],
        "empty": torch.zeros(0, 5),
    }


def test_round_trip_keeps_structure_and_values(tmp_path):
    state = nested_state()
    path = save_checkpoint(tmp_path / "c.safetensors", state, {"step": 42})
    loaded, info = load_checkpoint(path)
    assert info == {"step": 42} and read_info(path) == {"step": 42}
    torch.testing.assert_close(loaded["net"]["w"], state["net"]["w"])
    assert loaded["optimizer"]["param_groups"][0]["betas"] == state["optimizer"]["param_groups"][0]["betas"]
    assert set(loaded["optimizer"]["state"]) == {0}
    torch.testing.assert_close(loaded["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert loaded["rng"] == state["rng"]
    np.testing.assert_array_equal(loaded["array"], state["array"])
    assert loaded["counters"] == state["counters"] and loaded["empty"].shape == (0, 5)


def test_crash_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"x": torch.ones(2)}, {"step": 1})

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial bytes")
        raise OSError("disk went away")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"x": torch.zeros(2)}, {"step": 2})
    state, info = load_checkpoint(path)
    assert info["step"] == 1 and state["x"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"], "no temp files left behind"


def test_sigkill_during_writes_never_leaves_a_broken_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    code = (
        "import torch, sys\n"
        "from robo_rl.checkpoint import save_checkpoint\n"
        f"p = {str(path)!r}\n"
        "i = 0\n"
        "while True:\n"
        "    save_checkpoint(p, {'x': torch.full((200000,), float(i))}, {'step': i})\n"
        "    i += 1\n"
    )
    proc = spawn([sys.executable, "-c", code])
    try:
        import time

        deadline = time.monotonic() + 300  # the writer must first start (torch's import), however busy the machine
        while time.monotonic() < deadline and not (path.exists() and read_info(path)["step"] >= 3):
            time.sleep(0.05)
        assert proc.poll() is None, "the writer must still be writing when it is killed"
    finally:
        proc.kill()
        proc.wait()
    state, info = load_checkpoint(path)
    assert torch.all(state["x"] == float(info["step"]))


def test_truncated_file_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", {"x": torch.ones(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.ones(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign.safetensors.*without a robo-rl manifest"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.safetensors"):
        load_checkpoint(text)


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/robo_rl_pickle_payload_ran"


def test_malicious_pickle_is_never_executed(tmp_path):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    for name in ("checkpoint.safetensors", "model.pt"):
        path = tmp_path / name
        with open(path, "wb") as handle:
            pickle.dump({"agent": Payload()}, handle)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(path)
    assert not os.path.exists(MARKER)
    # and through the CLI: a run folder holding a pickle gives one line, exit 2
    (tmp_path / "checkpoint.safetensors").replace(tmp_path / "run.safetensors")
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "run.safetensors").replace(run / "checkpoint.safetensors")
    result = run_process([sys.executable, "-m", "robo_rl.cli", "eval", f"run={run}"], capture_output=True, text=True)
    assert result.returncode == 2 and "checkpoint.safetensors" in result.stderr
    assert not os.path.exists(MARKER)


def _crafted_checkpoint(path, target):
    """A well-formed robo-rl checkpoint whose metadata names `target` as the agent class."""
    import gymnasium as gym

    from robo_rl.agents.base import space_to_json

    box = space_to_json(gym.spaces.Box(-1.0, 1.0, (3,), np.float32))
    info = {"agent": {"target": target, "config": {}, "seed": 0, "observation_space": box, "action_space": box}}
    return save_checkpoint(path, {"agent": {}}, info)


@pytest.mark.parametrize("target", ["this.Foo", "antigravity.Agent", "robo_rl.agents.sac.os", "robo_rl.runs.np"])
def test_a_checkpoint_cannot_make_the_loader_import_a_module(tmp_path, target):
    """The agent class comes from an allow-list: a module named by the file is never imported."""
    path = _crafted_checkpoint(tmp_path / "crafted.safetensors", target)
    module = target.rpartition(".")[0]
    script = ("import sys\nfrom robo_rl.cli import main\n"
              f"code = main(['eval', 'run={path}'])\n"
              f"print('IMPORTED' if {module!r} in sys.modules and {module!r} not in ('robo_rl.agents.sac', 'robo_rl.runs') else 'CLEAN', code)\n")
    result = run_process([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "CLEAN 2", result.stdout + result.stderr
    assert "The Zen of Python" not in result.stdout  # `this` prints on import
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"'{target}' is not a known robo-rl agent class" in lines[0], result.stderr


def test_a_registered_agent_loads_and_an_unregistered_one_does_not(tmp_path):
    import gymnasium as gym

    from robo_rl.agents import base

    class Mine(base.Agent):
        def act(self, obs, deterministic=False):
            return np.zeros(self.action_dim, np.float32)

        def train_step(self, replay):
            return {}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    path = Mine(box, box, {}).save(tmp_path / "mine.safetensors")
    with pytest.raises(CheckpointError, match="not a known robo-rl agent class"):
        base.Agent.load(path)
    base.register_agent(Mine)
    try:
        assert isinstance(base.Agent.load(path), Mine)
    finally:
        base._REGISTERED.pop(base.agent_name(Mine))
    with pytest.raises(TypeError):
        base.register_agent(dict)
