"""A real PostgreSQL for the suite: the embedded server, in a temp folder, on a free port.

Each test module that publishes gets its own database on it (helpers.pg_database), so one
module's tables never stand in another's way. Wired in by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from movierec.serve import pg_settings as pgs
from movierec.serve.pg_settings import PgSettings
from movierec_embedded import postgres as embedded


@pytest.fixture(scope="session")
def pg_dir() -> Path:
    base = Path(tempfile.mkdtemp(prefix="movierec-pg-"))
    yield base
    embedded.stop(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_settings(pg_dir) -> PgSettings:
    server = embedded.start(pg_dir)
    return PgSettings(server.host, server.port, server.database, server.user, server.password)


def point_jobs_at(settings: PgSettings, monkeypatch) -> PgSettings:
    """Points connection_settings(), and so every job in this process, at `settings`."""
    monkeypatch.delenv(pgs.ENV_URL, raising=False)
    for name, value in pgs.env_for(settings).items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
def pg_env(pg_settings, monkeypatch) -> PgSettings:
    """Points every job at the suite's server."""
    return point_jobs_at(pg_settings, monkeypatch)
