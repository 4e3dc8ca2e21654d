"""Agents: one module per method. All follow the protocol in `robo_rl.agents.base`."""
