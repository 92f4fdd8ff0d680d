"""A Spark standalone cluster (one master, N workers) on 127.0.0.1, for tests and for trying the
jobs on a real cluster without installing Spark: pyspark's pip package has no start-master.sh,
but it ships sbin/spark-daemon.sh, which is all that is needed.

Everything the daemons write (logs, pid files, executor work dirs) goes under one work dir, and
the ports are free ones, so several clusters can run side by side.

    from movierec_embedded.cluster import start_cluster
    with start_cluster(Path("work/standalone")) as cluster:
        print(cluster.master_url)   # spark-submit --master <this> ...

or from a shell: `python -m movierec_embedded.cluster start|status|url|stop [--work-dir DIR]`
(see docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from movierec_embedded.procs import alive, cmdline, descendants

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"
STATE_FILE = "cluster.json"

# Variables of the caller's environment that would change what spark-daemon.sh does.
_DROPPED_ENV = ("SPARK_MASTER", "SPARK_NO_DAEMONIZE", "SPARK_ENV_LOADED", "SPARK_IDENT_STRING",
                "PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET")


class ClusterError(RuntimeError):
    pass


def spark_home() -> Path:
    """The pyspark package folder, which pip installs as a complete SPARK_HOME (jars, bin, sbin)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports free right now (all held open together, so no two are the same)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Cluster:
    work_dir: Path
    host: str
    port: int
    webui_port: int
    worker_webui_ports: list[int]
    cores_per_worker: int
    memory_per_worker: str

    # -- where things are --------------------------------------------------------------------
    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    @property
    def webui_url(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    @property
    def workers(self) -> int:
        return len(self.worker_webui_ports)

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.work_dir / "pids"

    @property
    def worker_dir(self) -> Path:
        """SPARK_WORKER_DIR: one folder per application, one per executor inside it."""
        return self.work_dir / "work"

    @property
    def local_dir(self) -> Path:
        """SPARK_LOCAL_DIRS: the executors' shuffle and scratch space (else /tmp)."""
        return self.work_dir / "tmp"

    @property
    def conf_dir(self) -> Path:
        """The daemons' own SPARK_CONF_DIR: the project's spark-defaults.conf is for jobs."""
        return self.work_dir / "conf"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(
            SPARK_HOME=str(spark_home()),
            SPARK_CONF_DIR=str(self.conf_dir),
            SPARK_LOCAL_IP=self.host,
            SPARK_LOG_DIR=str(self.log_dir),
            SPARK_PID_DIR=str(self.pid_dir),
            SPARK_WORKER_DIR=str(self.worker_dir),
            SPARK_LOCAL_DIRS=str(self.local_dir),
            SPARK_IDENT_STRING="movierec",
        )
        return env

    # -- what the master says ------------------------------------------------------------------
    def state(self, timeout: float = 5.0) -> dict:
        """The master's web UI JSON: workers, activeapps, completedapps, status."""
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=timeout) as resp:
            return json.load(resp)

    def alive_workers(self) -> int:
        return sum(1 for w in self.state().get("workers", []) if w.get("state") == "ALIVE")

    def applications(self) -> list[dict]:
        """Running and finished applications, each with at least id, name and state."""
        st = self.state()
        return st.get("activeapps", []) + st.get("completedapps", [])

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of every daemon log, for error messages."""
        out = []
        for log in sorted(self.log_dir.glob("*.out")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log}\n" + "\n".join(tail))
        return "\n".join(out) or f"(no daemon logs in {self.log_dir})"

    def wait_until_ready(self, timeout: float = 90.0) -> None:
        """Waits until the master answers and all workers are registered and ALIVE."""
        deadline, last = time.monotonic() + timeout, "master web UI not reachable yet"
        while time.monotonic() < deadline:
            try:
                alive = self.alive_workers()
                if alive >= self.workers:
                    return
                last = f"{alive} of {self.workers} workers ALIVE"
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = f"master web UI not reachable: {e}"
            if not self._daemons_running():
                last += "; a daemon process has exited"
                break
            time.sleep(0.5)
        raise ClusterError(f"standalone cluster at {self.master_url} not ready after "
                           f"{timeout:.0f}s ({last}). Daemon logs:\n{self.log_tail()}")

    # -- processes -------------------------------------------------------------------------------
    def _daemon(self, action: str, cls: str, instance: int, *args: str) -> str:
        cmd = ["bash", str(spark_home() / "sbin" / "spark-daemon.sh"), action, cls, str(instance),
               *args]
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=60)
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or "failed to launch" in out:
            raise ClusterError(f"`spark-daemon.sh {action} {cls} {instance}` failed "
                               f"(exit {proc.returncode}):\n{out}\n{self.log_tail()}")
        return out

    def _pid_files(self) -> dict[Path, int]:
        pids = {}
        for f in self.pid_dir.glob("*.pid"):
            try:
                pids[f] = int(f.read_text().strip())
            except (OSError, ValueError):
                pass
        return pids

    def _daemons_running(self) -> bool:
        pids = self._pid_files()
        return len(pids) == 1 + self.workers and all(_is_spark(p) for p in pids.values())

    def start(self, timeout: float = 90.0) -> "Cluster":
        for d in (self.log_dir, self.pid_dir, self.worker_dir, self.local_dir, self.conf_dir):
            d.mkdir(parents=True, exist_ok=True)
        (self.work_dir / STATE_FILE).write_text(json.dumps(
            {**asdict(self), "work_dir": str(self.work_dir)}, indent=2))
        try:
            self._daemon("start", MASTER, 1, "--host", self.host, "--port", str(self.port),
                         "--webui-port", str(self.webui_port))
            # spark-daemon.sh waits ~2.5 s per daemon: start the workers side by side.
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                futures = [pool.submit(
                    self._daemon, "start", WORKER, i, "--host", self.host,
                    "--cores", str(self.cores_per_worker), "--memory", self.memory_per_worker,
                    "--webui-port", str(ui), "--work-dir", str(self.worker_dir), self.master_url)
                    for i, ui in enumerate(self.worker_webui_ports, start=1)]
                for f in futures:
                    f.result()
            self.wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the workers, then the master, and kills whatever is left (daemons and their
        executors) after `timeout` seconds. Safe to call twice or on a half-started cluster."""
        pids = self._pid_files()
        # Executors are children of the workers: remember them before the workers go.
        tracked = set(pids.values())
        for pid in list(tracked):
            tracked.update(descendants(pid))
        tracked = {p for p in tracked if _is_spark(p)}
        for i in range(self.workers, 0, -1):
            self._stop_quietly(WORKER, i)
        self._stop_quietly(MASTER, 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(p) for p in tracked):
            time.sleep(0.3)
        for pid in tracked:
            if alive(pid) and _is_spark(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for f in pids:
            f.unlink(missing_ok=True)

    def _stop_quietly(self, cls: str, instance: int) -> None:
        try:
            self._daemon("stop", cls, instance)
        except (ClusterError, subprocess.TimeoutExpired, OSError):
            pass  # the pid sweep in stop() deals with it

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @classmethod
    def load(cls, work_dir: Path) -> "Cluster":
        """The cluster started earlier in work_dir (from its cluster.json)."""
        state_file = Path(work_dir) / STATE_FILE
        if not state_file.is_file():
            raise ClusterError(f"no cluster started in {work_dir} ({state_file} not found)")
        data = json.loads(state_file.read_text())
        data["work_dir"] = Path(data["work_dir"])
        return cls(**data)


def start_cluster(work_dir: Path, workers: int = 2, cores_per_worker: int = 1,
                  memory_per_worker: str = "1g", host: str = "127.0.0.1",
                  timeout: float = 90.0) -> Cluster:
    """Starts a master and `workers` workers on free ports and waits until all are ALIVE.
    Raises ClusterError (with the tail of the daemon logs) if they are not within `timeout`."""
    if workers < 1:
        raise ValueError("a cluster needs at least one worker")
    work_dir = Path(work_dir).resolve()
    if (work_dir / "pids").is_dir() and any((work_dir / "pids").glob("*.pid")):
        raise ClusterError(f"a cluster seems to be running in {work_dir} already: stop it with "
                           f"`python -m movierec_embedded.cluster stop --work-dir {work_dir}`")
    port, webui, *worker_uis = free_ports(2 + workers, host)
    cluster = Cluster(work_dir, host, port, webui, worker_uis, cores_per_worker, memory_per_worker)
    return cluster.start(timeout)


def _is_spark(pid: int) -> bool:
    return any("org.apache.spark" in arg for arg in cmdline(pid) or [])


# -- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m movierec_embedded.cluster",
                                description="A Spark standalone cluster on 127.0.0.1.")
    p.add_argument("action", choices=["start", "status", "url", "stop"],
                   help="url: print the master URL only, for scripts")
    p.add_argument("--work-dir", type=Path, default=Path("work") / "standalone",
                   help="logs, pid files and executor dirs (default: work/standalone here)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=int, default=1, help="cores per worker")
    p.add_argument("--memory", default="1g", help="memory per worker")
    args = p.parse_args(argv)
    try:
        if args.action == "start":
            c = start_cluster(args.work_dir, args.workers, args.cores, args.memory)
            print(f"master: {c.master_url}\nweb UI: {c.webui_url}\nwork dir: {c.work_dir}")
        elif args.action == "url":
            print(Cluster.load(args.work_dir).master_url)
        elif args.action == "status":
            c = Cluster.load(args.work_dir)
            try:
                alive = c.alive_workers()
            except (urllib.error.URLError, OSError) as e:
                print(f"not running: no answer from {c.webui_url} ({e})")
                return 1
            print(f"master: {c.master_url}, {alive} of {c.workers} workers ALIVE, "
                  f"web UI {c.webui_url}")
        else:
            Cluster.load(args.work_dir).stop()
            print(f"stopped the cluster in {args.work_dir}")
    except (ClusterError, urllib.error.URLError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
