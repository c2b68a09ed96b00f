"""Whole six-site rollouts on the lab: the rig (rig.py, its fixtures in conftest.py) and two
files of tests, which pytest-xdist runs on two workers at once."""
