"""The install's own files: the locked dependency set must satisfy pyproject.toml's ranges."""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def locked_versions() -> dict[str, str]:
    versions = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: '{line}' is not pinned with =="
            versions[canonicalize_name(name)] = version
    return versions


def test_the_lock_satisfies_every_range_of_pyproject_and_leaves_torch_to_the_setup():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["ray"], *project["optional-dependencies"]["test"]]
    locked = locked_versions()
    assert "torch" not in locked  # installed first, as the CPU (or CUDA) build the user asked for
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue
        assert name in locked, f"{requirement.name} is in pyproject.toml but not in requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (text, locked[name])
    # extras' own packages (gymnasium[mujoco], ray[default]) are checked by `pip check` in the setup
