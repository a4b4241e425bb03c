"""Hyper-parameter search: ``tune`` runs a resumable Optuna study of ``space.SEARCH_SPACE`` (``unitarget tune``)."""

from unitarget.tuning.study import TuneResult, tune

__all__ = ["TuneResult", "tune"]
