"""A real PostgreSQL for the suite: the embedded server, in a temp folder, on a free port.

Wired in by tests/conftest.py (`pytest_plugins = ["pg_fixture"]`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from movierec import pg_server, postgres


@pytest.fixture(scope="session")
def pg_dir() -> Path:
    # Not under tmp_path_factory: its /tmp/pytest-of-<user> is 0700, which the server's own OS
    # user (the suite runs as root, and PostgreSQL will not) could not traverse.
    base = Path(tempfile.mkdtemp(prefix="movierec-pg-"))
    yield base
    pg_server.stop(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_settings(pg_dir) -> postgres.PgSettings:
    return pg_server.start(pg_dir)


@pytest.fixture
def pg_env(pg_settings, monkeypatch) -> postgres.PgSettings:
    """Points connection_settings(), and so every job, at the suite's server."""
    monkeypatch.delenv(postgres.ENV_URL, raising=False)
    for name, value in postgres.env_for(pg_settings).items():
        monkeypatch.setenv(name, value)
    return pg_settings
