"""Shared test helpers: small networks, fusion scenes, ROS spinning."""
