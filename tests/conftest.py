"""Test-wide fixtures: real servers start once per test session (see tests/servers/)."""

from __future__ import annotations

pytest_plugins = [
    "tests.servers.s3",
    "tests.servers.mongodb",
    "tests.servers.sshd",
    "tests.servers.docker",
    "tests.servers.kubeapi",
    "tests.servers.slurm",
    "tests.servers.browser",
]
