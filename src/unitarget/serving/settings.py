"""The scoring service's settings: typed, validated once, handed to the app factory (never read from
the environment)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from unitarget.errors import ConfigError


class ServiceSettings(BaseModel):
    """How a service runs: the models directory and the version served at start, request limits, ONNX Runtime threads,
    the parity check, batching and how often workers look at the version pointer; frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: Path = Field(description="directory of model versions; reloads may only name its subdirectories")
    version: str = Field(description="the version (subdirectory of models_dir) served at start where models_dir has "
                                     "no version pointer yet (it then becomes the pointer's first version)")
    max_candidates: int = Field(1_000, ge=1, description="candidates per request; more -> 413")
    max_body_bytes: int = Field(1 << 20, ge=1_024, description="request body size; more -> 413 before parsing")
    max_in_flight: int = Field(64, ge=1, description="scoring requests served at once; more -> 503 + Retry-After")
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads per inference; requests "
                                              "already run in parallel, so 1 is best on few cores")
    check_parity: bool = Field(True, description="compare ONNX Runtime with PyTorch on every load")
    batch_window_ms: float = Field(1.0, ge=0, le=100, description="longest a request waits for others in flight to "
                                   "share its ONNX Runtime call (a lone request never waits); 0: no batching")
    batch_max_rows: int = Field(4096, ge=1, description="candidate rows per batched call at most")
    pointer_poll_s: float = Field(0.5, gt=0, le=10, description="how often each worker looks at the version pointer "
                                  "(one stat) to follow a reload or rollback another worker received")

    @classmethod
    def for_model(cls, model: str | Path, models_dir: str | Path | None = None, **options: object) -> "ServiceSettings":
        """Settings serving the export ``model``, whose parent is the models directory unless given."""
        model = Path(model).resolve()
        root = Path(models_dir).resolve() if models_dir is not None else model.parent
        if model.parent != root:
            raise ConfigError(f"{model} is not a directory directly inside the models directory {root}")
        return cls(models_dir=root, version=model.name, **options)
