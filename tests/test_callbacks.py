from robo_rl.agents.base import Agent
from robo_rl.agents.sb3 import SB3Agent
from robo_rl.callbacks import CheckpointCallback, EvalCallback, EveryNSteps
from robo_rl.envs import env_config, make_env

HYPER = {"batch_size": 32, "net_arch": [32, 32]}


def test_checkpoint_and_eval_callbacks(tmp_path):
    cfg = env_config("mujoco", "InvertedPendulum-v5", max_episode_steps=50)
    env = make_env(cfg, seed=0)
    agent = SB3Agent(env.observation_space, env.action_space,
                     {"algo": "SAC", "learning_starts": 50, "replay_size": 500, "hyperparams": HYPER}, seed=0)
    checkpoints = CheckpointCallback(100, tmp_path / "snapshots")
    evals = EvalCallback(make_env(cfg, seed=1), every=100, episodes=2, folder=tmp_path / "eval")
    calls = []
    agent.learn(300, env, callbacks=[checkpoints, evals, EveryNSteps(150, lambda t: calls.append(t.step))], progress=False)
    assert [p.name for p in checkpoints.saved] == ["agent_100.safetensors", "agent_200.safetensors", "agent_300.safetensors"]
    assert [r["step"] for r in evals.results] == [100, 200, 300] and calls == [150, 300]
    best = Agent.load(tmp_path / "eval" / "best.safetensors")
    assert isinstance(best, SB3Agent)


def test_eval_callback_stops_training_at_threshold():
    cfg = env_config("mujoco", "InvertedPendulum-v5", max_episode_steps=20)
    env = make_env(cfg, seed=0)
    agent = SB3Agent(env.observation_space, env.action_space,
                     {"algo": "SAC", "learning_starts": 1000, "replay_size": 1000, "hyperparams": HYPER}, seed=0)
    stop = EvalCallback(make_env(cfg, seed=1), every=50, episodes=1, stop_at=-1e9)  # any return passes
    from robo_rl.train import Trainer

    trainer = Trainer(agent, env, total_steps=1000, progress=False, callbacks=[stop])
    trainer.run()
    assert trainer.step == 50
