"""docker/ checked statically: this machine has no Docker engine, so nothing is built or started.
What would break the stack silently is checked instead: a COPY of a missing path, a service or
variable left out, a secret written into a file."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
DOCKER = ROOT / "docker"
SERVICES = {"postgres", "mlflow", "spark-master", "spark-worker-1", "spark-worker-2",
            "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"}
AIRFLOW_RUNNERS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"}
SPARK_WORKERS = {"spark-worker-1", "spark-worker-2"}
JOB_ENV = {"MOVIEREC_PG_HOST", "MOVIEREC_PG_PORT", "MOVIEREC_PG_DB", "MOVIEREC_PG_USER",
           "MOVIEREC_PG_PASSWORD", "MLFLOW_TRACKING_URI", "MLFLOW_DFS_TMP", "MOVIEREC_LAKE"}
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example line without '=': {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            word, _, args = current.strip().partition(" ")
            out.append((word.upper(), args.strip()))
        current = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKER / "Dockerfile")


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def mounts(service: dict) -> dict[str, str]:
    """volume or host path -> target path in the container."""
    return {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}


def test_every_service_is_there(services):
    assert SERVICES <= set(services)


def test_postgres_has_a_healthcheck_and_persistent_data(services):
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert mounts(pg)["pgdata"] == "/var/lib/postgresql"        # the 18+ layout
    init = mounts(pg)["./postgres-init"]
    assert init.startswith("/docker-entrypoint-initdb.d")
    assert "CREATE DATABASE airflow" in (DOCKER / "postgres-init" / "10-airflow-db.sql").read_text()


def test_volumes_are_declared_and_the_lake_is_shared(compose, services):
    declared = set(compose["volumes"])
    assert {"pgdata", "lake", "scratch", "mlflow", "airflow-logs"} <= declared
    for name, service in services.items():
        for source in mounts(service):
            assert source.startswith(".") or source in declared, (name, source)
    lake_paths = {name: mounts(services[name]).get("lake") for name in SPARK_WORKERS | AIRFLOW_RUNNERS}
    assert set(lake_paths.values()) == {"/data/lake"}, lake_paths
    scheduler = env_of(services["airflow-scheduler"])
    assert scheduler["MOVIEREC_LAKE"] == "/data/lake"
    # mlflow.spark moves models through MLFLOW_DFS_TMP from the driver and the executors.
    for name in SPARK_WORKERS | {"airflow-scheduler"}:
        assert scheduler["MLFLOW_DFS_TMP"].startswith(mounts(services[name])["scratch"] + "/"), name


def test_ports(services):
    def published(name):
        return {str(p).rsplit(":", 1)[-1] for p in services[name].get("ports", [])}
    assert "8080" in published("airflow-apiserver")
    assert "5000" in published("mlflow")
    assert "5432" in published("postgres")
    assert "8080" in published("spark-master")                    # its web UI
    master = services["spark-master"]["command"]
    assert "org.apache.spark.deploy.master.Master" in master and "7077" in master
    for name in SPARK_WORKERS:
        assert "spark://spark-master:7077" in services[name]["command"]


def test_airflow_3_services_and_their_order(services):
    assert services["airflow-init"]["command"] == ["db", "migrate"]
    assert services["airflow-apiserver"]["command"][0] == "api-server"
    assert services["airflow-scheduler"]["command"] == ["scheduler"]
    assert services["airflow-dag-processor"]["command"] == ["dag-processor"]
    for name in AIRFLOW_RUNNERS:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_jobs_get_the_environment_the_code_reads(services):
    for name in AIRFLOW_RUNNERS:
        env = env_of(services[name])
        assert JOB_ENV <= set(env), (name, JOB_ENV - set(env))
        assert env["MOVIEREC_PG_HOST"] == "postgres"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["AIRFLOW_CONN_SPARK_MOVIEREC"] == "spark://spark-master:7077"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
        assert "postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    for name, service in services.items():
        assert "SPARK_LOCAL_IP" not in env_of(service), name       # containers use their own address


def strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    else:
        yield str(node)


def test_every_interpolated_variable_is_in_env_example(compose, env_example):
    used = {name for text in strings(compose) for name in re.findall(r"\$\{(\w+)", text)}
    assert used and used <= set(env_example), used - set(env_example)


def test_no_literal_secrets(services, env_example):
    for name, service in services.items():
        for key, value in env_of(service).items():
            if SECRET_WORDS.search(key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), (name, key, value)
        conn = env_of(service).get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        if conn:
            assert ":${POSTGRES_PASSWORD:?" in conn, conn
    for key, value in env_example.items():
        if SECRET_WORDS.search(key):
            assert value == "", f".env.example gives {key} a value: leave secrets empty"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_build_context_is_the_repository(services):
    builds = [s["build"] for s in services.values() if "build" in s]
    assert builds
    for build in builds:
        assert (DOCKER / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert build["target"] in {"job", "airflow"}
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", ".venv-airflow", ".jars", "lake", "data", "work"} <= set(ignored)


def test_every_copied_path_exists(dockerfile):
    copies = [shlex.split(args) for word, args in dockerfile if word == "COPY"]
    assert copies
    for parts in copies:
        if any(p.startswith("--from=") for p in parts):
            continue
        for source in [p for p in parts if not p.startswith("--")][:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"


def test_image_has_java_17_python_311_and_the_pinned_package(dockerfile):
    text = "\n".join(f"{w} {a}" for w, a in dockerfile)
    assert "openjdk-17-jre" in text or "temurin:17" in text
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    assert re.search(r"pip install[^\n]* \.(\s|$)", text)          # the package, pyproject's pins
    assert re.search(r"ENV [^\n]*SPARK_CONF_DIR=/opt/spark-conf", text)
    assert "spark-defaults.conf" in text
    assert "-c conf/airflow-constraints.txt" in text


def test_image_gets_the_jars_spark_defaults_names(dockerfile):
    text = "\n".join(f"{w} {a}" for w, a in dockerfile)
    assert "conf/jvm-jars.pom.xml" in text and "dependency:copy-dependencies" in text
    assert "-DexcludeTransitive=true" in text
    assert re.search(r"COPY --from=jars \S+ \.jars/", text)
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(ROOT / "conf" / "jvm-jars.pom.xml").getroot()
    fetched = {f"{d.find('m:artifactId', ns).text}-{d.find('m:version', ns).text}.jar"
               for d in pom.iter(f"{{{ns['m']}}}dependency")}
    defaults = (ROOT / "spark-defaults.conf").read_text()
    named = re.search(r"^spark\.jars\s+(\S+)", defaults, re.MULTILINE).group(1).split(",")
    assert {Path(j).name for j in named} == fetched
    assert all(j.startswith(".jars/") for j in named)   # the image rewrites exactly this prefix


def test_airflow_image_finds_the_repository_from_the_dag(dockerfile):
    workdir = [a for w, a in dockerfile if w == "WORKDIR"][-1]
    env = " ".join(a for w, a in dockerfile if w == "ENV")
    assert f"AIRFLOW__CORE__DAGS_FOLDER={workdir}/dags" in env
    assert f"MOVIEREC_HOME={workdir}" in env
    assert "MOVIEREC_SPARK_CONF_DIR=/opt/spark-conf" in env
    assert re.search(r"MOVIEREC_SPARK_LOCAL_IP=(\s|$)", env)
    dag = (ROOT / "dags" / "movierec_nightly.py").read_text()
    assert "MOVIEREC_SPARK_CONF_DIR" in dag and "MOVIEREC_SPARK_LOCAL_IP" in dag
