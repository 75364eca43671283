"""Embedded checkpoints: one folder per zoo name, shipped inside the package."""
