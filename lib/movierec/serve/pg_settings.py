"""Where the served PostgreSQL is: settings from the environment, else the embedded server.

MOVIEREC_PG_URL, or MOVIEREC_PG_HOST/_PORT/_DB/_USER/_PASSWORD; with none of them set, the
embedded server (movierec_embedded.postgres) is started or reused, on the driver only. The
password is a SecretStr: it never shows in repr(), str() or a log line.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from movierec.core.config import Config, secret
from movierec.core.errors import UserError

log = logging.getLogger(__name__)

ENV_URL = "MOVIEREC_PG_URL"
ENV_HOST, ENV_PORT, ENV_DB = "MOVIEREC_PG_HOST", "MOVIEREC_PG_PORT", "MOVIEREC_PG_DB"
ENV_USER, ENV_PASSWORD = "MOVIEREC_PG_USER", "MOVIEREC_PG_PASSWORD"
DEFAULT_PORT, DEFAULT_DB, DEFAULT_USER = 5432, "movierec", "movierec"


class PublishError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class PgSettings:
    """Where to connect. The password is a SecretStr (a plain str given is wrapped), so
    printing or logging the settings, or an object holding them, cannot leak it."""

    host: str
    port: int
    database: str
    user: str
    password: SecretStr | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.password, str):
            object.__setattr__(self, "password", SecretStr(self.password))

    def secret(self) -> str | None:
        """The password itself: for connecting, never for logs."""
        return self.password.get_secret_value() if self.password is not None else None

    def _netloc(self, password: str | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = quote(self.user, safe="") + (f":{password}" if password is not None else "")
        return f"{auth}@{host}:{self.port}"

    def url(self) -> str:
        """postgresql:// URL with the password: for libpq tools, never for logs."""
        pw = quote(self.secret(), safe="") if self.password is not None else None
        return f"postgresql://{self._netloc(pw)}/{quote(self.database, safe='')}"

    def masked(self) -> str:
        pw = "***" if self.password is not None else None
        return f"postgresql://{self._netloc(pw)}/{quote(self.database, safe='')}"

    def jdbc_url(self) -> str:
        """The JDBC URL without credentials: pass user and password as options."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"jdbc:postgresql://{host}:{self.port}/{self.database}"

    def dsn(self) -> str:
        """libpq key=value string, password included, for psycopg.connect()."""
        return make_conninfo(host=self.host, port=self.port, dbname=self.database, user=self.user,
                             password=self.secret())

    def __str__(self) -> str:
        return self.masked()


def parse_url(url: str) -> PgSettings:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise UserError(f"{ENV_URL} wants postgresql://user:password@host:port/db, got "
                        f"scheme {parts.scheme!r} and host {parts.hostname!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise UserError(f"{ENV_URL} has a bad port: {e}") from None
    return PgSettings(parts.hostname, port, unquote(parts.path.lstrip("/")) or DEFAULT_DB,
                      unquote(parts.username) if parts.username else DEFAULT_USER,
                      unquote(parts.password) if parts.password is not None else None)


def env_for(settings: PgSettings) -> dict[str, str]:
    """The MOVIEREC_PG_* variables that point connection_settings() (and every job) at `settings`."""
    values = {ENV_HOST: settings.host, ENV_PORT: settings.port, ENV_DB: settings.database,
              ENV_USER: settings.user, ENV_PASSWORD: settings.secret()}
    return {name: str(value) for name, value in values.items() if value is not None}


def connection_settings(cfg: Config) -> PgSettings:
    """MOVIEREC_PG_URL, then the single MOVIEREC_PG_* variables over it (so a URL without a
    password can take MOVIEREC_PG_PASSWORD); with none set, the embedded server."""
    url = secret(ENV_URL)
    parts = {name: secret(name) for name in (ENV_HOST, ENV_PORT, ENV_DB, ENV_USER, ENV_PASSWORD)}
    if not url and not any(parts.values()):
        settings, source = embedded_server(cfg), "the embedded server"
    else:
        if not url and not parts[ENV_HOST]:
            raise UserError(f"{ENV_HOST} (or {ENV_URL}) must be set when any MOVIEREC_PG_* is")
        base = parse_url(url) if url else PgSettings("", DEFAULT_PORT, DEFAULT_DB, DEFAULT_USER)
        port = parts[ENV_PORT] or base.port
        if not str(port).isdigit():
            raise UserError(f"{ENV_PORT} wants a number, got {port!r}")
        settings = PgSettings(parts[ENV_HOST] or base.host, int(port), parts[ENV_DB] or base.database,
                              parts[ENV_USER] or base.user, parts[ENV_PASSWORD] or base.password)
        source = "the environment"
    log.info("PostgreSQL: %s (from %s)", settings.masked(), source)
    return settings


def embedded_dir(cfg: Config) -> Path:
    """postgres.data_dir, else the embedded server's per-project folder for this checkout."""
    from movierec_embedded import postgres as embedded   # driver only: executors never need it

    return cfg.path("postgres.data_dir") if cfg.postgres.data_dir else embedded.default_dir(cfg.root)


def embedded_server(cfg: Config) -> PgSettings:
    """Starts (or reuses) the embedded server and says where it is."""
    from movierec_embedded import postgres as embedded

    try:
        server = embedded.start(embedded_dir(cfg))
    except embedded.PgServerError as e:
        raise PublishError(f"the embedded PostgreSQL did not start: {e}") from None
    return PgSettings(server.host, server.port, server.database, server.user, server.password)


def reachable(settings: PgSettings) -> PgSettings:
    """`settings`, once a connection has worked: jobs call it first, so a server that is down
    fails the job before its Spark work instead of after it."""
    with connect(settings) as conn:
        conn.execute("SELECT 1")
    return settings


@contextmanager
def connect(settings: PgSettings, **kwargs) -> Iterator[psycopg.Connection]:
    """An autocommit connection; an unreachable server is a one-line UserError."""
    try:
        conn = psycopg.connect(settings.dsn(), autocommit=True, connect_timeout=10,
                               application_name="movierec", **kwargs)
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PublishError(f"cannot connect to PostgreSQL at {settings.masked()}: {first}") from None
    with conn:
        yield conn


