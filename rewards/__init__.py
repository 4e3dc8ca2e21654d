"""Learned rewards. The default reward is the environment's own (`reward=env`)."""
