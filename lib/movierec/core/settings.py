"""The typed schema of conf/*.yaml: every key, its type and its bounds.

conf/base.yaml gives every value (and says what each key means); this module says what a value
may be. Unknown keys are refused, enums name their allowed values, numbers are bounded, so a
typo or a bad value fails when the config is loaded, before Spark starts.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                      PositiveInt, model_validator)

Fraction = Annotated[float, Field(gt=0, lt=1)]
Grid = Annotated[list[PositiveInt], Field(min_length=1)]
FloatGrid = Annotated[list[NonNegativeFloat], Field(min_length=1)]
PositiveGrid = Annotated[list[PositiveFloat], Field(min_length=1)]
CountGrid = Annotated[list[NonNegativeInt], Field(min_length=1)]
Name = Annotated[str, Field(min_length=1)]


class TrainMode(StrEnum):
    FULL = "full"      # cross-validate, then fit
    REFIT = "refit"    # the champion's cross-validated parameters, no CV


class AlsSolver(StrEnum):
    SPARK = "spark"    # Spark MLlib's ALS: an exact Cholesky solve of every row
    CG = "cg"          # model/als_cg.py: the same objective, a few conjugate-gradient steps per row


class Schedule(StrEnum):
    ALWAYS = "always"
    ON_DRIFT = "on_drift"
    EVERY_N_DAYS = "every_n_days"


RANKING_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate")
POPULATIONS = ("all", "warm", "cold")
# "<metric>_<population>" of the served ranker's test metrics, e.g. ndcg_all.
PrimaryMetric = StrEnum("PrimaryMetric", {f"{m}_{p}": f"{m}_{p}"
                                          for m in RANKING_METRICS for p in POPULATIONS})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(Section):
    master: str | None
    shuffle_partitions: PositiveInt
    session_conf: list[Annotated[str, Field(pattern=r"^spark\.sql\.[\w.]+=.+$")]]
    log_level: Literal["ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]


class IngestSettings(Section):
    source: str | None
    min_year: Annotated[int, Field(ge=1900, le=2100)]
    force: bool


class IncrementSettings(Section):
    source: str | None   # a landing folder of new rating files; None: replay ratings_buffer


class DownloadSettings(Section):
    release: Name
    base_url: Name
    timeout_s: PositiveFloat


class SyntheticSettings(Section):
    scale: Literal["small", "medium", "ml-25m"] | PositiveInt
    seed: NonNegativeInt


class SplitSettings(Section):
    train_frac: Fraction
    test_frac: Fraction
    batch_days: PositiveInt

    @model_validator(mode="after")
    def _leaves_a_buffer(self) -> SplitSettings:
        if self.train_frac + self.test_frac >= 1:
            raise ValueError(f"train_frac + test_frac must leave a buffer: {self.train_frac} + "
                             f"{self.test_frac} >= 1")
        return self


class MlflowSettings(Section):
    tracking_uri: str | None
    artifact_root: Name
    experiment: Name
    model_name: Name
    timeout_s: PositiveFloat


class CvSettings(Section):
    folds: PositiveInt
    val_frac: Fraction
    user_sample: NonNegativeInt


class BiasSettings(Section):
    damping_grid: FloatGrid


class AlsSettings(Section):
    rank_grid: Grid
    reg_grid: FloatGrid
    max_iter: PositiveInt
    solver: AlsSolver
    cg_steps: PositiveInt


class ImplicitSettings(AlsSettings):
    alpha_grid: PositiveGrid
    min_rating: float


class ItemItemSettings(Section):
    min_rating: float
    min_likes: PositiveInt
    max_items: PositiveInt


class EaseSettings(Section):
    reg_grid: PositiveGrid


class KnnSettings(Section):
    neighbours_grid: Grid
    shrink_grid: FloatGrid


class PopularitySettings(Section):
    recent_days: PositiveInt


class HybridSettings(Section):
    min_history_grid: CountGrid
    half_life_grid: PositiveGrid
    candidates_grid: CountGrid


class TrainSettings(Section):
    mode: TrainMode
    schedule: Schedule
    every_n_days: PositiveInt
    seed: int
    k: PositiveInt
    relevant_threshold: float
    served_model: Name
    baseline_model: Name
    primary_metric: PrimaryMetric
    gate_min_improvement: NonNegativeFloat
    gate_window_days: PositiveInt
    gate_min_users: PositiveInt
    gate_bootstrap: PositiveInt
    metric_bootstrap: PositiveInt
    min_train_ratings: PositiveInt
    als_blocks: NonNegativeInt
    cv: CvSettings
    bias: BiasSettings
    als: AlsSettings
    implicit: ImplicitSettings
    item_item: ItemItemSettings
    ease: EaseSettings
    knn: KnnSettings
    popularity: PopularitySettings
    hybrid: HybridSettings


class RecommendSettings(Section):
    k: PositiveInt
    retention_days: PositiveInt
    publish_postgres: bool


class PostgresSettings(Section):
    data_dir: str | None


class DriftSettings(Section):
    weeks: Annotated[int, Field(ge=2)]
    psi_threshold: PositiveFloat
    p_value_threshold: Annotated[float, Field(gt=0, lt=1)]
    per_user_ratio_threshold: Annotated[float, Field(gt=1)]
    new_user_share_threshold: Annotated[float, Field(gt=0, le=1)]
    new_movie_share_threshold: Annotated[float, Field(gt=0, le=1)]
    mean_z_threshold: PositiveFloat


class Settings(Section):
    # the lake's path reaches Spark SQL inside backticks (delta.`<path>`), where a backtick or a
    # control character would end or break the identifier
    lake: Annotated[str, Field(pattern=r"^[^`\x00-\x1f]+$")]
    lake_lock_timeout_s: PositiveFloat
    raw_dir: Name
    spark: SparkSettings
    ingest: IngestSettings
    increment: IncrementSettings
    download: DownloadSettings
    synthetic: SyntheticSettings
    split: SplitSettings
    mlflow: MlflowSettings
    train: TrainSettings
    recommend: RecommendSettings
    postgres: PostgresSettings
    drift: DriftSettings
