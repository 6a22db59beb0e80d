"""Registries of the experiment suite: datasets (``registry.datasets``) and friends."""
