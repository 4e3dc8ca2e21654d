"""Environments: Gymnasium MuJoCo, Meta-World v3, dm_control, with pixel and contextual wrappers.

Importing this package registers every env under the `robo_rl/` Gymnasium namespace, e.g.
gymnasium.make("robo_rl/HalfCheetah-v5"), "robo_rl/metaworld-reach-v3", "robo_rl/dmc-cheetah-run-v0".
"""
from robo_rl.envs.factory import check_env_config, env_config, make_env, register_envs

register_envs()

__all__ = ["make_env", "env_config", "check_env_config", "register_envs"]
