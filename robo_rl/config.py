"""Config composition (Hydra) and validation: every bad input becomes one line naming the bad key.

Checks before any work: group choices exist (agent=, env=, ...), every overridden key exists in
the composed config, and every value has the type of the default it replaces.
"""
from __future__ import annotations

from importlib import resources
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_MODULE = "robo_rl.configs"
GROUPS = ("agent", "env", "reward", "train")
DEPLOY_GROUPS = ("robot",)
MBTL_GROUPS = ("family",)
PRETRAIN_GROUPS = ("agent",)
FINETUNE_GROUPS = ("agent", "sequence")


class ConfigError(ValueError):
    """A bad config key or value; the message is the one line shown to the user."""


def group_options(group: str) -> list[str]:
    """Config names available in a group (files starting with '_' are shared parts, not choices)."""
    folder = resources.files(CONFIG_MODULE) / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_"))


def compose(overrides: Iterable[str] = (), config_name: str = "config") -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException:
            raise ConfigError(f"cannot parse override '{text}' (expected key=value)") from None
    return parsed


def _values(override: Any) -> list[Any]:
    from hydra.core.override_parser.types import IntervalSweep

    value = override.value()
    if isinstance(value, IntervalSweep):   # a search space (the Optuna sweeper's interval): its two ends are checked
        return [value.start, value.end]
    if override.is_sweep_override():
        return list(override.sweep_iterator())
    return [value]


def _type_name(value: Any) -> str:
    if isinstance(value, (DictConfig, dict)):
        return "mapping"
    if isinstance(value, (ListConfig, list, tuple)):
        return "list"
    return type(value).__name__


def _check_type(key: str, default: Any, value: Any) -> None:
    if default is None or value is None:
        return
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
    }
    if isinstance(default, (DictConfig, dict)):
        good = isinstance(value, dict)
    elif isinstance(default, (ListConfig, list)):
        good = isinstance(value, list)
    else:
        good = ok.get(type(default), lambda v: True)(value)
    if not good:
        raise ConfigError(f"config key '{key}' expects {_type_name(default)}, got {value!r}")


def validate_overrides(overrides: list[str], config_name: str = "config", groups: tuple[str, ...] = GROUPS) -> None:
    """Raise ConfigError for an unknown group choice, unknown key or wrongly typed value."""
    parsed = [o for o in _parse(overrides) if not o.is_hydra_override()]
    choices: dict[str, str] = {}
    for o in parsed:
        key = o.key_or_group
        if key in groups:
            valid = group_options(key)
            for value in _values(o):
                if str(value) not in valid:
                    raise ConfigError(f"unknown {key} '{value}' (valid: {', '.join(valid)})")
            choices.setdefault(key, str(_values(o)[0]))
    base = compose([f"{g}={v}" for g, v in choices.items()], config_name)
    for o in parsed:
        key = o.key_or_group
        if key in groups:
            continue
        if o.is_add() or o.is_force_add():
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            if not isinstance(OmegaConf.select(base, parent) if parent else base, DictConfig):
                raise ConfigError(f"cannot add key '{key}': '{parent}' is not a mapping")
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(base, parent_key) if parent_key else base
        if not isinstance(parent, DictConfig) or leaf not in parent.keys():
            where = f"'{parent_key}'" if parent_key else "the top level"
            known = ", ".join(sorted(str(k) for k in parent.keys())) if isinstance(parent, DictConfig) else "none"
            raise ConfigError(f"unknown config key '{key}' (valid keys at {where}: {known})")
        if o.is_delete():
            continue
        default = parent[leaf] if not OmegaConf.is_missing(parent, leaf) else None
        for value in _values(o):
            _check_type(key, default, value)


def sweep_samples(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each sweep (others at their first value): enough to check
    every value once without composing the whole product of a multirun."""
    parsed = _parse(overrides)
    firsts = [f"{o.input_line.split('=', 1)[0]}={_format(_values(o)[0])}" for o in parsed]
    samples = [firsts]
    for i, o in enumerate(parsed):
        if o.is_sweep_override():
            prefix = o.input_line.split("=", 1)[0]
            samples += [firsts[:i] + [f"{prefix}={_format(v)}"] + firsts[i + 1:] for v in _values(o)[1:]]
    return samples


def _format(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return OmegaConf.to_yaml(OmegaConf.create({"v": value})).split(":", 1)[1].strip().replace("\n", " ")
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_run_config(cfg: DictConfig) -> None:
    """Value checks on a composed config that types alone cannot catch."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"config key '{missing[0]}' must be set (e.g. {missing[0]}=<value>)")
    train = cfg.train
    for key in ("steps", "eval_episodes", "checkpoint_every", "log_every"):
        if train[key] <= 0:
            raise ConfigError(f"config key 'train.{key}' must be > 0, got {train[key]}")
    for key in ("eval_every", "video_steps", "snapshot_every"):
        if train[key] < 0:
            raise ConfigError(f"config key 'train.{key}' must be >= 0, got {train[key]}")
    if cfg.agent.get("learning_starts", 0) < 0:
        raise ConfigError(f"config key 'agent.learning_starts' must be >= 0, got {cfg.agent.learning_starts}")
    if "_target_" not in cfg.agent:
        raise ConfigError("config key 'agent._target_' is missing: an agent config names its class there")


def to_container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node
