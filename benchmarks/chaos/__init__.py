"""Fault harness (`make chaos`): see run.py."""
