"""Packages: zoo, every family under modalities/, and the top-level hub_configs/ and
model_cards/ folders shipped inside the wheel as the data packages zoo.hub_configs and
zoo.model_cards (metadata lives in pyproject.toml)."""

from setuptools import find_packages, setup

DATA_PACKAGES = {"zoo.hub_configs": "hub_configs", "zoo.model_cards": "model_cards"}

setup(
    packages=find_packages(include=["zoo", "zoo.*", "modalities", "modalities.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
)
