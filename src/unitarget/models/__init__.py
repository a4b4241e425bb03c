"""Models: embedder -> encoder -> one tower per task; each returns logits and nothing else."""

from unitarget.models.multitask import MultiTaskModel, build_model

__all__ = ["MultiTaskModel", "build_model"]
