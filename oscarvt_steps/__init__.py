"""Buildbot steps for oscarvt: one per driver phase (see steps.py)."""
