"""The validated run configuration. Unknown keys anywhere are errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cliper.evaluation.metrics import METRICS, parse_metric


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetSection(_Strict):
    path: str | None = None
    name: str | None = None


class TrainSection(_Strict):
    epochs: int = Field(1000, ge=1)
    batch_size: int = Field(2048, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_decay: float = Field(1.0, gt=0)
    lr_decay_step: int = Field(50, ge=1)
    patience: int = Field(21, ge=1)  # MMRec: stopping_step 20 stops after 21 evaluations without gain
    eval_step: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0)
    checkpoint: bool = True
    # early stopping's tie rule: improved iff round(value, d) > round(best, d) + min_delta
    min_delta: float = Field(0.0, ge=0)
    metric_decimals: int | None = Field(4, ge=0, le=12)  # None: compare unrounded values
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # training forward/backward (autocast)


class EvalSection(_Strict):
    topk: list[int] = [10, 20, 50]
    metrics: list[str] = ["recall", "ndcg", "precision", "map", "hit"]
    valid_metric: str = "recall@20"
    batch_size: int = Field(4096, ge=1)

    @field_validator("topk")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(k <= 0 for k in v):
            raise ValueError("topk must be a non-empty list of positive integers")
        return sorted(set(v))

    @field_validator("metrics")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; known: {sorted(METRICS)}")
        return v

    @model_validator(mode="after")
    def _valid_metric_is_computed(self) -> "EvalSection":
        name, k = parse_metric(self.valid_metric)
        if name not in self.metrics or k not in self.topk:
            raise ValueError(f"valid_metric {self.valid_metric!r} must be among the computed metrics and topk")
        return self


class FeatureSection(_Strict):
    store: str | None = None
    image: str | None = None
    text: str | None = None
    fusion: Literal["sum", "mean", "concat", "mlp", "sa", "attention"] = "sa"
    tau: float = Field(0.1, gt=0)
    views: list[str] | None = None
    use_image: bool = True
    use_text: bool = True
    random_image_dim: int | None = Field(None, gt=0)
    random_text_dim: int | None = Field(None, gt=0)
    random_seed: int = Field(0, ge=0, lt=2**32)

    @model_validator(mode="after")
    def _one_source(self) -> "FeatureSection":
        sources = [self.store is not None, self.image is not None or self.text is not None,
                   self.random_image_dim is not None or self.random_text_dim is not None]
        if sum(sources) > 1:
            raise ValueError("choose one feature source: features.store, features.image/text files, or features.random_*")
        return self

    @property
    def configured(self) -> bool:
        return any(
            v is not None for v in (self.store, self.image, self.text, self.random_image_dim, self.random_text_dim)
        )


class GraphSection(_Strict):
    """kNN item-graph search (LATTICE, FREEDOM); see docs/item-graphs.md."""

    knn_backend: Literal["auto", "torch", "faiss-exact", "faiss-ivf", "faiss-hnsw"] = "auto"
    knn_approx_min_items: int = Field(100_000, ge=1)
    knn_ivf_nlist: int | None = Field(None, ge=1)
    knn_ivf_nprobe: int = Field(32, ge=1)
    knn_hnsw_m: int = Field(32, ge=2)
    knn_hnsw_ef_construction: int = Field(40, ge=1)
    knn_hnsw_ef_search: int = Field(128, ge=1)
    knn_recall_sample: int = Field(1000, ge=1)


class RuntimeSection(_Strict):
    """Process-level memory settings (docs/training.md#memory)."""

    keep_freed_memory: bool = False  # glibc keeps ALL freed large blocks: fewest page faults, highest peak RSS
    freed_memory_cap_mib: int | None = Field(64, ge=0)  # else glibc keeps at most this much freed heap (null: its defaults)
    huge_pages: bool = True  # torch backs blocks >= 2 MiB with transparent huge pages (far fewer page faults)


class RunConfig(_Strict):
    seed: int = Field(2024, ge=0, lt=2**32)  # numpy seeds must be 0..2**32-1
    device: str = "cpu"
    threads: int | None = Field(None, ge=1)
    runtime: RuntimeSection = RuntimeSection()
    dataset: DatasetSection = DatasetSection()
    model: dict[str, Any] = {"name": "lightgcn"}
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    features: FeatureSection = FeatureSection()
    graph: GraphSection = GraphSection()
    grid: dict[str, list[Any]] = {}

    @field_validator("model")
    @classmethod
    def _has_name(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "name" not in v or not isinstance(v["name"], str):
            raise ValueError("model.name is required")
        return v

    @field_validator("grid")
    @classmethod
    def _axes_have_values(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, values in v.items() if not values]
        if empty:
            raise ValueError(f"grid axis {empty[0]!r} has no values; give at least one, e.g. {empty[0]}=[1e-4,1e-3]")
        return v

    @property
    def model_name(self) -> str:
        return self.model["name"].lower()

    def model_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}
