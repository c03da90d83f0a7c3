"""The plugin's yaml defaults live in the top-level ``properties/`` folder, where a RecBole user
looks for them, and travel inside the package as ``recbole_collm/properties`` (package data):
a wheel without them would run every model with RecBole's settings alone. One copy in the tree;
``recbole_collm.config.PROPERTIES_DIR`` reads the packaged copy, else the checkout's folder."""
from pathlib import Path

from setuptools import find_packages, setup

PROPERTIES = ["properties", *sorted(f"properties/{d.name}" for d in Path(__file__).parent.joinpath("properties").iterdir() if d.is_dir())]

setup(
    packages=find_packages(include=["recbole_collm*"]) + ["recbole_collm." + p.replace("/", ".") for p in PROPERTIES],
    package_dir={"recbole_collm." + p.replace("/", "."): p for p in PROPERTIES},
    package_data={"recbole_collm." + p.replace("/", "."): ["*.yaml"] for p in PROPERTIES},
)
