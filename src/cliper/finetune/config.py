"""Settings of a contrastive CLIP training run (JSON-serialisable, compared on resume)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cliper.errors import ConfigError

DEFAULT_VIEWS = ("title", "brand", "categories", "global")
SCRATCH_LR = 1e-3
PRETRAINED_LR = 1e-5


@dataclass
class FinetuneConfig:
    """Training run settings. ``lr=None`` picks 5e-4 from scratch, 1e-5 from pretrained weights."""

    epochs: int = 20
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    seed: int = 0
    held_out_fraction: float = 0.15
    views: tuple[str, ...] = DEFAULT_VIEWS
    view_spec: str = "cliper"  # a cliper.views preset or a YAML spec file
    # Sampling weight of each training view per item and epoch (missing views: weight 1).
    view_weights: dict[str, float] = field(default_factory=lambda: {"title": 2.0})
    eval_views: tuple[str, ...] = ("title", "global")
    select_metric: str = "title_i2t_R@5"  # held-out metric that picks best/
    augment: bool = True
    keep_checkpoints: int = 2
    # CPU threads for torch while training; None: 1 for a from-scratch model (tiny matrices only
    # lose time to thread synchronisation, ~10x on a busy 2-core machine), torch's default otherwise.
    threads: int | None = None
    # Scratch model (ignored with ``init``): see cliper.encoders.tiny.tiny_clip_config.
    # tokenizer "catalog": BPE learned on the training items' texts; "bytes": the byte-level one.
    tokenizer: str = "catalog"
    bpe_merges: int = 2000
    # Defaults measured on the demo catalogue: as accurate as a 128-wide 64px model at half the time.
    image_size: int = 32
    patch_size: int = 4
    hidden_size: int = 64
    layers: int = 2
    heads: int = 2
    projection_dim: int = 64
    max_text_length: int = 77

    def __post_init__(self) -> None:
        self.views = tuple(self.views)
        self.eval_views = tuple(self.eval_views)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 for a contrastive loss (got {self.batch_size})")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive (got {self.lr})")
        if self.keep_checkpoints < 1:
            raise ConfigError("keep_checkpoints must be >= 1")
        for name in ("image_size", "patch_size", "hidden_size", "layers", "heads", "projection_dim", "bpe_merges"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_text_length < 3:
            raise ConfigError(f"max_text_length must be >= 3: start, end and one token (got {self.max_text_length})")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (got {self.threads})")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("weight_decay and warmup_epochs must be >= 0")
        if not 0 <= self.held_out_fraction < 1:
            raise ConfigError(f"held_out_fraction must be in [0, 1) (got {self.held_out_fraction})")
        if self.tokenizer not in ("catalog", "bytes"):
            raise ConfigError(f"tokenizer must be 'catalog' or 'bytes' (got {self.tokenizer!r})")
        if self.hidden_size % self.heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be divisible by heads {self.heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must be divisible by patch_size {self.patch_size}")

    def learning_rate(self, pretrained: bool) -> float:
        return self.lr if self.lr is not None else (PRETRAINED_LR if pretrained else SCRATCH_LR)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["views"] = list(self.views)
        d["eval_views"] = list(self.eval_views)
        return d
