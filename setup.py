"""Kept for users and tools that still run `python setup.py ...`; the metadata lives in pyproject.toml."""
from setuptools import setup

setup()
