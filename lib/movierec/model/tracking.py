"""The one module that talks to MLflow: the tracking store, training runs, and the champion gate.

Jobs call `training_run` for one run per training job, log into it with `log_config`,
`log_table` and `log_figure`, and finish with `register_and_gate`, which registers the new model
and moves the registry alias `champion` when gate.decide says the new model is strictly better
than the champion's logged test metrics. Serving loads `load_champion_uri(name)`. Registry
aliases are used, never the deprecated stages.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from movierec.core.config import Config
from movierec.core.errors import UserError
from movierec.core.masking import mask_uri, masked
from movierec.model.gate import Verdict, decide

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Experiment
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
GATE_REASON_TAG = "gate_reason"     # on the new model version
RUN_GATE_TAG = "champion_gate"      # on the training run
SERVED_AS_OF = "served.known_as_of" # on the training run: the date whose known ratings it learned
MAX_PARAM_VALUE_LENGTH = 6000       # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH in MLflow 3.17

# Stores that are reached over the network: only these get the hard deadline (a local SQLite
# store answers on its own, and its first use creates the schema, which may take a few seconds).
_REMOTE_SCHEMES = ("http", "https", "postgresql", "mysql", "mssql", "databricks")
# The stores without a server of their own: MLflow would put artifacts under ./mlruns of
# whatever the working directory happens to be, so the experiment gets cfg's artifact_root.
_LOCAL_SCHEMES = ("sqlite", "file", "")

T = TypeVar("T")


class TrackingError(UserError, RuntimeError):
    pass


# ---------------------------------------------------------------- the store


def tracking_uri(cfg: Config) -> str:
    """cfg mlflow.tracking_uri, else env MLFLOW_TRACKING_URI, else SQLite under the project root."""
    uri = cfg["mlflow.tracking_uri"] or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        folder = Path(cfg.root) / "mlruns"
        uri = f"sqlite:///{folder}/mlflow.db"
    _create_sqlite_folder(str(uri))
    return str(uri)


def _create_sqlite_folder(uri: str) -> None:
    if not uri.startswith("sqlite:///"):
        return
    db = uri[len("sqlite:///"):].split("?", 1)[0]
    if db and db != ":memory:":
        Path(db).parent.mkdir(parents=True, exist_ok=True)


def _scheme(uri: str) -> str:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    return scheme.split("+", 1)[0].lower()   # postgresql+psycopg2 -> postgresql


def connect(cfg: Config) -> mlflow.MlflowClient:
    """Points MLflow at the store, makes sure the experiment exists, and returns a client.

    Raises TrackingError (naming the URI, password masked) when the store fails or does not
    answer within mlflow.timeout_s seconds.
    """
    # Nothing leaves this machine but what the project asks for.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(cfg)
    name = cfg["mlflow.experiment"]
    timeout_s = float(cfg["mlflow.timeout_s"])
    scheme = _scheme(uri)
    artifact_location = (cfg.path("mlflow.artifact_root").as_uri()
                         if scheme in _LOCAL_SCHEMES else None)

    # Fluent calls (log_params, spark.load_model of models:/...) use these globals; note that
    # MLflow also exports them as MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI to this process.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

    def open_experiment() -> Experiment:
        return _open_experiment(client, name, artifact_location)

    try:
        if scheme in _REMOTE_SCHEMES:
            with _fail_fast_http(timeout_s):
                experiment = _within(timeout_s, open_experiment)
        else:
            experiment = open_experiment()
    except TrackingError:
        raise
    except TimeoutError:
        raise TrackingError(f"MLflow tracking store {mask_uri(uri)} did not answer within "
                            f"{timeout_s:g} s (mlflow.timeout_s)") from None
    except Exception as exc:
        # `from None`: the original traceback may carry the unmasked URI.
        raise TrackingError(f"MLflow tracking store {mask_uri(uri)} failed: "
                            f"{type(exc).__name__}: {mask_uri(str(exc))}") from None

    kept_elsewhere = (artifact_location and experiment.artifact_location.rstrip("/")
                      != artifact_location.rstrip("/"))
    if kept_elsewhere:
        log.warning("experiment %r keeps its artifacts at %s, not mlflow.artifact_root %s",
                    name, experiment.artifact_location, artifact_location)
    log.info("MLflow: store %s, experiment %r (id %s)", mask_uri(uri), name,
             experiment.experiment_id)
    return client


def _open_experiment(client: mlflow.MlflowClient, name: str,
                     artifact_location: str | None) -> Experiment:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # lost a race with another job
                raise
        experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise TrackingError(f"MLflow experiment {name!r} could not be created")
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"MLflow experiment {name!r} is deleted: restore it "
                            f"(`mlflow experiments restore --experiment-id "
                            f"{experiment.experiment_id}`) or set mlflow.experiment")
    return experiment


@contextmanager
def _fail_fast_http(timeout_s: float) -> Iterator[None]:
    """MLflow's HTTP defaults (7 retries, 120 s timeout) take minutes to give up on a dead server.

    Only the probe is made impatient: later calls (e.g. uploading a large model) keep MLflow's
    defaults, or whatever the environment sets.
    """
    wanted = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    }
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """fn() with a hard deadline: a store that hangs (e.g. a database host that drops packets)
    is not bounded by any MLflow setting. The abandoned thread is a daemon and dies with the job."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="mlflow-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# ---------------------------------------------------------------- runs


def git_commit(root: Path | str) -> str:
    """HEAD of the project checkout, or 'unknown' (not a checkout, git missing, ...)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(root), capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if re.fullmatch(r"[0-9a-f]{40,64}", commit) else "unknown"


@contextmanager
def training_run(cfg: Config, run_date: str | None, run_name: str,
                 tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run in the experiment; ends FINISHED, or FAILED if the block raises."""
    client = connect(cfg)
    experiment = client.get_experiment_by_name(cfg["mlflow.experiment"])
    commit = git_commit(cfg.root)
    run_tags = {"git_commit": commit, "profile": cfg.profile}
    if run_date is not None:
        run_tags["run_date"] = str(run_date)
    if commit != "unknown":
        run_tags["mlflow.source.git.commit"] = commit
    run_tags.update({k: str(v) for k, v in (tags or {}).items()})
    # The experiment is passed explicitly rather than through mlflow.set_experiment, which
    # would also export MLFLOW_EXPERIMENT_ID to the whole process.
    # ActiveRun.__exit__ ends the run FAILED when the block raises, FINISHED otherwise.
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=run_name,
                          tags=run_tags) as run:
        log.info("MLflow run %s (%s) started", run.info.run_id, run_name)
        yield run


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def log_config(cfg: Config) -> None:
    """The whole config as params (dotted keys) and as config.yaml, credentials in URIs masked."""
    data = masked(cfg.data)
    params = {key: str(value)[:MAX_PARAM_VALUE_LENGTH] for key, value in _flatten(data).items()}
    mlflow.log_params(params)
    mlflow.log_text(yaml.safe_dump(data, sort_keys=True, default_flow_style=False),
                    "config.yaml")


def _artifact_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"artifact name must be a plain file name, got {name!r}")
    return name


def log_table(df: pd.DataFrame, name: str) -> None:
    """A small pandas table as tables/<name>.csv in the active run."""
    name = _artifact_name(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.csv"
        df.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="tables")


def log_figure(fig: Any, name: str) -> None:
    """A matplotlib figure as plots/<name>.png in the active run (the caller closes it)."""
    mlflow.log_figure(fig, f"plots/{_artifact_name(name)}.png")


# ---------------------------------------------------------------- registry and gate


@dataclass
class GateDecision:
    moved: bool
    version: str            # the newly registered version
    champion_version: str   # the champion after the decision
    metric: str
    new_value: float
    old_value: float | None
    reason: str
    verdict: Verdict | None = None   # what decided it (with a paired verdict's users and interval)


def load_champion_uri(model_name: str) -> str:
    return f"models:/{model_name}@{CHAMPION}"


METRICS_ARTIFACT = "tables/test_metrics.csv"   # what log_table(table, "test_metrics") writes


def register_and_gate(client: mlflow.MlflowClient, model_uri: str, model_name: str, run_id: str,
                      metrics: pd.DataFrame | None = None, *, model: str, primary: str,
                      higher_is_better: bool = True, min_improvement: float = 0.0,
                      judge: Callable[[ModelVersion | None], Verdict] | None = None) -> GateDecision:
    """Registers model_uri as a new version; moves `champion` to it if the verdict says so:
    `judge(champion)`'s (the nightly prequential gate), else gate.decide's comparison of
    `metrics` with the champion run's logged test metrics. The reason goes on the version and
    on the run; the version is tagged with its `primary` value."""
    _ensure_registered_model(client, model_name)
    source, model_id = _model_source(client, model_uri)
    champion = current_champion(client, model_name)
    if judge is not None:
        verdict = judge(champion)
    else:
        verdict = decide(metrics, champion_metrics(client, champion, model, primary) if champion else None,
                         model=model, primary=primary, higher_is_better=higher_is_better,
                         min_improvement=min_improvement,
                         champion_version=str(champion.version) if champion else None)
    new = client.create_model_version(model_name, source, run_id=run_id,
                                      tags={primary: repr(verdict.new_value)}, model_id=model_id)
    if verdict.moved:
        client.set_registered_model_alias(model_name, CHAMPION, new.version)
        champion_version = str(new.version)
        reason = f"v{new.version} becomes champion: {verdict.reason}"
    else:
        champion_version = str(champion.version) if champion is not None else ""
        kept = f"champion stays v{champion_version}" if champion is not None else "no champion"
        reason = f"v{new.version} rejected, {kept}: {verdict.reason}"
    client.set_model_version_tag(model_name, new.version, GATE_REASON_TAG, reason)
    client.set_tag(run_id, RUN_GATE_TAG, reason)
    log.info("champion gate for %s: %s", model_name, reason)
    return GateDecision(moved=verdict.moved, version=str(new.version),
                        champion_version=champion_version, metric=primary,
                        new_value=verdict.new_value, old_value=verdict.old_value, reason=reason,
                        verdict=verdict)


def champion_metrics(client: mlflow.MlflowClient, champion: ModelVersion, model: str,
                     primary: str) -> pd.DataFrame:
    """The champion run's test metrics table; for a version whose run logged none, a one-row
    table from the version's `primary` tag (the gate's input before tables were kept)."""
    import pandas as pd

    try:
        text = mlflow.artifacts.load_text(f"runs:/{champion.run_id}/{METRICS_ARTIFACT}")
        return pd.read_csv(io.StringIO(text))
    except Exception as exc:   # a run without the table: fall back to the tag
        log.info("champion v%s has no %s (%s): comparing with its %s tag", champion.version,
                 METRICS_ARTIFACT, type(exc).__name__, primary)
    try:
        value = float(champion.tags.get(primary, "nan"))
    except (TypeError, ValueError):
        value = float("nan")
    metric, _, population = primary.rpartition("_")
    return pd.DataFrame([{"model": model, "metric": metric, "population": population, "value": value}])


def _ensure_registered_model(client: mlflow.MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as again:
            if again.error_code != "RESOURCE_ALREADY_EXISTS":  # created meanwhile
                raise


def _model_source(client: mlflow.MlflowClient, model_uri: str) -> tuple[str, str | None]:
    """(source, model_id) for create_model_version, as mlflow.register_model works them out.

    MLflow 3 flavors that log with `name=` return `models:/m-<id>` (a LoggedModel outside the
    run's artifacts); mlflow.spark.log_model(artifact_path=...) still returns `runs:/<run>/<path>`,
    which is stored as the concrete artifact location so the version does not depend on the run.
    """
    if model_uri.startswith("models:/"):
        rest = model_uri[len("models:/"):]
        if rest.startswith("m-") and "/" not in rest and "@" not in rest:
            return model_uri, rest
        return model_uri, None
    if model_uri.startswith("runs:/"):
        run_id, _, path = model_uri[len("runs:/"):].partition("/")
        path = path.strip("/")
        files = {a.path for a in client.list_artifacts(run_id, path)}
        if f"{path}/MLmodel" in files:
            return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}", None
    return model_uri, None


def current_champion(client: mlflow.MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        # MLflow 3.17's SQL store reports a missing alias as INVALID_PARAMETER_VALUE.
        missing = exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower())
        if missing:
            return None
        raise
