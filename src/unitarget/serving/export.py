"""``unitarget export``: a trained run -> an ONNX graph of probabilities, checked against PyTorch.

The graph takes the encoded tensors, not column names: encoding stays in Python with the saved
``FeatureEncoder`` (the same code path as training), so the graph never has to know a vocabulary.

    probabilities = σ(model(ids, dense))        ids (B, C) int32, dense (B, D) float32 -> (B, T)

The sigmoid lives in the export wrapper, never in the model (models return logits). The embedder's
inference path (one ``embedding_bag`` with per-sample weights) has no cheap ONNX form, so the
wrapper swaps in ``_GatherEmbedder``: the same sums written as one gather, a weighted sum per bag
and a concatenation (plus the target attention's output, already written in such ops). It shares the
trained table; the parity check below is what proves the two agree.
The linear baseline's ``LinearTerms`` is already written in such ops (a gather, integer multiply, add
and remainder for the hashed crosses, a weighted sum), so it is exported as it is.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import unitarget
from unitarget.data.batch import Features
from unitarget.data.encoders import PADDING_ROW
from unitarget.data.features import FeatureEncoder
from unitarget.errors import UnitargetError
from unitarget.io import atomic_write_json, publish_directory
from unitarget.models import MultiTaskModel
from unitarget.models.average import LogitAverage, PublishedModel
from unitarget.models.embeddings import FeatureEmbedder
from unitarget.pipeline import TrainedModel, load_model
from unitarget.runs import CONFIG_FILE, ENCODER_FILE, TRAINING_FILE, WEIGHTS_FILE, best_validation
from unitarget.scoring import predict_probabilities
from unitarget.serving import manifest as mf

#: Largest |ONNX Runtime - PyTorch| probability accepted on the parity sample.
PARITY_TOLERANCE = 1e-4
PARITY_ROWS = 256


@dataclass(frozen=True)
class ExportReport:
    """What an export produced: the published directory, its tasks, and the parity check (rows compared, largest |ONNX
    Runtime - PyTorch| probability) with the seconds it took."""

    out: Path
    tasks: tuple[str, ...]
    parity_rows: int
    max_abs_diff: float
    seconds: float


class _GatherEmbedder(nn.Module):
    """``FeatureEmbedder``'s inference output from ONNX-friendly ops (Gather, Mul, ReduceSum).

    slot k of a categorical feature = table[ids[:, j]]; slot of a bag = Σ_c w_c · table[ids[:, c]]
    with w_c = 1/len(bag) on tokens and 0 on padding (row 0): the bag's mean; then the target
    attention's output (``FeatureEmbedder.attended``, the same code as in training).
    """

    def __init__(self, embedder: FeatureEmbedder) -> None:
        super().__init__()
        self.embedder = embedder

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        e = self.embedder
        tokens = nn.functional.embedding(ids.long(), e.table.weight)  # (B, C, dim)
        present = (ids != PADDING_ROW).to(tokens.dtype)  # (B, C)
        bags = []
        for start, stop in e.bag_slices:
            share = present[:, start:stop] / present[:, start:stop].sum(1, keepdim=True).clamp(min=1.0)
            bags.append((tokens[:, start:stop] * share.unsqueeze(-1)).sum(1, keepdim=True))  # (B, 1, dim)
        pooled = torch.cat([tokens[:, :e.n_categorical], *bags], dim=1)  # (B, slots, dim)
        return torch.cat([pooled.flatten(1), *e.attended(ids), dense], dim=1)


class ProbabilityModel(nn.Module):
    """(ids, dense) -> per-task probabilities; what the ONNX graph computes."""

    def __init__(self, model: PublishedModel) -> None:
        super().__init__()
        self.model = _exportable(model)

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(ids (B, C) int32, dense (B, D) float32) -> (B, T) probabilities σ(logits): the ONNX graph's one output."""
        return torch.sigmoid(self.model(Features(ids, dense)))  # (B, T)


def _exportable(model: PublishedModel) -> PublishedModel:
    """``model`` with each embedder's inference path swapped for ``_GatherEmbedder`` (an average's members each,
    behind the same input maps)."""
    if isinstance(model, LogitAverage):
        return model.with_members([_exportable(m) for m in model.members])
    embedder = _GatherEmbedder(model.embedder) if isinstance(model.embedder, FeatureEmbedder) else model.embedder
    return MultiTaskModel(embedder, model.encoder, dict(model.towers), model.cross, model.wide)


def sample_inputs(encoder: FeatureEncoder, rows: int = PARITY_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random encoded rows covering every feature: known ids, OOV rows, short and empty bags."""
    layout, g = encoder.layout_, np.random.default_rng(seed)
    ids = np.zeros((rows, layout.ids_width), dtype=np.int32)
    for j, name in enumerate(layout.categorical):
        ids[:, j] = layout.offsets[name] + g.integers(0, encoder.vocabularies_[name].size, rows)
    for name, start, stop in layout.bags:
        tokens = layout.offsets[name] + g.integers(0, encoder.vocabularies_[name].size, (rows, stop - start))
        lengths = g.integers(0, stop - start + 1, rows)
        ids[:, start:stop] = np.where(np.arange(stop - start) < lengths[:, None], tokens, PADDING_ROW)
    dense = g.standard_normal((rows, layout.dense_dim)).astype(np.float32)
    return ids, dense


def parity_difference(trained: TrainedModel, run_graph: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      rows: int = PARITY_ROWS) -> float:
    """max |graph(x) - σ(model(x))| over a sample, the PyTorch side through the scoring path."""
    ids, dense = sample_inputs(trained.encoder, rows)
    expected = predict_probabilities(trained.model, Features(torch.from_numpy(ids), torch.from_numpy(dense)))
    got = run_graph(ids, dense)
    if got.shape != expected.shape:
        raise UnitargetError(f"the ONNX graph returns shape {got.shape}, PyTorch {expected.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - expected)))


def onnx_runner(onnx_bytes: bytes, threads: int = 1) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """An ONNX Runtime session over ``onnx_bytes`` as a function of (ids, dense).

    The options are set, not left to defaults that depend on the machine: ``threads`` intra-op
    threads (1 by default: a service runs one worker process per core, and ORT's default of one
    thread per core would make the workers fight over the cores); one inter-op thread and
    ``ORT_SEQUENTIAL`` (the graph is a chain of MLPs, there are no parallel branches worth a pool);
    every graph optimisation (``ORT_ENABLE_ALL``: fusions, constant folding, layout changes, done
    once at load); and no spin-waiting of idle intra-op threads, which would burn the core the
    other worker or the event loop needs (it only matters with ``threads`` > 1).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UnitargetError(f"ONNX Runtime cannot load the graph: {str(err).splitlines()[0]}") from None

    def run(ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        return session.run([mf.OUTPUT], {mf.IDS_INPUT: ids, mf.DENSE_INPUT: dense})[0]

    return run


def export_model(run: str | Path, out: str | Path, *, overwrite: bool = False,
                 tolerance: float = PARITY_TOLERANCE) -> ExportReport:
    """Write ``out`` (see ``manifest``) from the trained run ``run``; fail if parity > ``tolerance``.

    The export is built in ``.<out>.partial/`` and moved into place only when complete and checked,
    so a failed export never leaves a half-written model where a server could load it.
    """
    started = time.perf_counter()
    run, out = Path(run), Path(out)
    if out.exists() and not overwrite:
        raise UnitargetError(f"{out} already exists; export each model version to a new directory "
                             f"(or pass --overwrite)")
    trained = load_model(run)
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        onnx_bytes = write_onnx(trained, staging / mf.ONNX_FILE)
        for name in (CONFIG_FILE, ENCODER_FILE, WEIGHTS_FILE, TRAINING_FILE):
            if (run / name).is_file():
                shutil.copyfile(run / name, staging / name)
        diff = parity_difference(trained, onnx_runner(onnx_bytes))
        if not diff <= tolerance:
            raise UnitargetError(f"ONNX Runtime and PyTorch disagree: max abs difference {diff:.3g} > "
                                 f"{tolerance:g} on {PARITY_ROWS} sample rows; nothing was written to {out}")
        atomic_write_json(staging / mf.MANIFEST_FILE, _manifest(trained, run, staging, diff))
        publish_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(out, tuple(trained.model.task_names), PARITY_ROWS, diff, time.perf_counter() - started)


def write_onnx(trained: TrainedModel, path: Path) -> bytes:
    """Trace ``ProbabilityModel`` with torch.export (the dynamo exporter), batch size dynamic."""
    wrapper = ProbabilityModel(trained.model).eval()
    ids, dense = (torch.from_numpy(a[:4]) for a in sample_inputs(trained.encoder, 4))
    batch = torch.export.Dim("batch")
    # The exporter logs and warns about things that do not concern the user (torchvision ops, axis names).
    quiet = logging.getLogger("torch.onnx")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (ids, dense), dynamo=True, verbose=False, optimize=True,
                input_names=[mf.IDS_INPUT, mf.DENSE_INPUT], output_names=[mf.OUTPUT],
                dynamic_shapes={"ids": {0: batch}, "dense": {0: batch}},
            )
            program.save(str(path))
    except Exception as err:  # the exporter raises many types; none is the user's input
        raise UnitargetError(f"ONNX export failed: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    finally:
        quiet.level = level
    return path.read_bytes()


def _manifest(trained: TrainedModel, run: Path, staging: Path, diff: float) -> dict[str, Any]:
    """Everything a server or a reader needs to know about the export, hashes last."""
    layout = trained.encoder.layout_
    training = json.loads((staging / TRAINING_FILE).read_text()) if (staging / TRAINING_FILE).is_file() else {}
    best = best_validation(training.get("history", []))
    return {
        "format": mf.FORMAT,
        "format_version": mf.FORMAT_VERSION,
        "unitarget_version": unitarget.__version__,
        "torch_version": torch.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source_run": str(run.resolve()),
        "tasks": list(trained.model.task_names),
        "inputs": {
            mf.IDS_INPUT: {"dtype": "int32", "shape": ["batch", layout.ids_width]},
            mf.DENSE_INPUT: {"dtype": "float32", "shape": ["batch", layout.dense_dim]},
        },
        "output": {"name": mf.OUTPUT, "dtype": "float32", "shape": ["batch", len(trained.model.task_names)]},
        "features": [{"name": c.name, "group": c.group.value, "kind": c.kind.value}
                     for c in trained.encoder.columns_],
        "features_skipped": list(trained.encoder.skipped_),
        "layout": {"categorical": list(layout.categorical), "bags": [list(b) for b in layout.bags],
                   "dense": [list(d) for d in layout.dense], "table_rows": layout.table_rows},
        "training": {
            "train_range": training.get("train_range"), "valid_range": training.get("valid_range"),
            "rows": training.get("rows"), "best_epoch": training.get("best_epoch"),
            "best_step": training.get("best_step"),
            "best_valid_score": training.get("best_valid_score"),
            "metrics": {k: v for k, v in best.items() if k.startswith("valid_")},
        },
        "parity": {"rows": PARITY_ROWS, "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE},
        "files": {p.name: mf.file_entry(p) for p in sorted(staging.iterdir())
                  if p.is_file() and p.name != mf.MANIFEST_FILE and not p.name.startswith(".")},
    }

