"""Deployment of trained policies to ROS arms."""
