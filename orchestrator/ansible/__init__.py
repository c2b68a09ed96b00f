"""Ansible through ansible-runner's Python API: typed events, per-host results."""
