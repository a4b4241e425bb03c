"""An exported model loaded for inference: verified files, an ONNX Runtime session, the encoder.

Loading checks, in order: the manifest's shape, the size and sha256 of every file it lists, that
the graph's inputs and outputs match the encoder and the tasks, and (``check_parity``) that ONNX
Runtime agrees with the PyTorch weights on a sample; then one warm-up inference runs through the
whole request path. Any failure is one ``UnitargetError`` naming the file and what is wrong, so a
server can keep serving its previous version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from unitarget import contract
from unitarget.data.features import FeatureEncoder
from unitarget.errors import UnitargetError
from unitarget.pipeline import load_model
from unitarget.runs import ENCODER_FILE
from unitarget.serving import manifest as mf
from unitarget.serving.encoding import Part, RequestEncoder
from unitarget.serving.export import PARITY_TOLERANCE, onnx_runner, parity_difference
from unitarget.serving.schemas import Candidate, Context, User


def _load_encoder(encoder_dict: dict[str, Any]) -> FeatureEncoder:
    """The saved, fitted encoder; a file that is not one is named."""
    try:
        return FeatureEncoder.from_dict(encoder_dict)
    except (KeyError, TypeError, ValueError) as err:
        raise UnitargetError(f"{ENCODER_FILE} is not a fitted unitarget encoder: {type(err).__name__}: {err}") from None


@dataclass
class ExportedModel:
    """One loaded model version. Immutable once loaded, so requests may share it across threads."""

    directory: Path
    manifest: dict[str, Any]
    encoder: FeatureEncoder
    run_graph: Callable[[np.ndarray, np.ndarray], np.ndarray]
    request_encoder: RequestEncoder
    parity_max_abs_diff: float | None = None
    loaded_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def version(self) -> str:
        """The version name: the export's directory name inside the models directory."""
        return self.directory.name

    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names from the manifest, in the order of the graph's probability columns."""
        return tuple(self.manifest["tasks"])

    def encode_request(self, user: User, context: Context, candidates: Sequence[Candidate],
                       now: datetime | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(ids, dense, OOV flags per field) of one request, through the request encoder
        (``encoding.RequestEncoder``: the same ids as ``score`` on the request's table, without
        building one); the service batches the graph call of several requests (``batching``)."""
        return self.request_encoder.encode(*Part.of(user, context, candidates, now))

    def score_request(self, user: User, context: Context, candidates: Sequence[Candidate],
                      now: datetime | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(probabilities (N, T) float32, OOV flags per field) of one request scored alone."""
        ids, dense, flags = self.encode_request(user, context, candidates, now)
        return self.run_graph(ids, dense), flags

    def score(self, table: pa.Table) -> np.ndarray:
        """(N, T) float32 probabilities of a table with the contract's columns (batch scoring).

        Encoding is ``FeatureEncoder.transform_features``, the code path training used; unknown ids land on
        each feature's OOV row and missing columns read as unknown.
        """
        features = self.encoder.transform_features(table)
        return self.run_graph(features.ids.numpy(), features.dense.numpy())

    def warm_up(self) -> None:
        """One inference through each path (request and table) on unknown ids."""
        now = datetime.now(timezone.utc)
        from_request, _ = self.score_request(User(user_id="warm-up"), Context(ts=now), [Candidate(show_id="warm-up")])
        from_table = self.score(pa.table({contract.USER_ID: ["warm-up"], contract.SHOW_ID: ["warm-up"],
                                          contract.SOURCE: pa.nulls(1, pa.string()),
                                          contract.TS: pa.array([now], pa.timestamp("us", tz="UTC"))}))
        for probabilities in (from_request, from_table):
            if probabilities.shape != (1, len(self.tasks)) or not np.all(np.isfinite(probabilities)):
                raise UnitargetError(f"{self.directory}: the warm-up inference returned {probabilities!r}")


def load_exported(directory: str | Path, *, threads: int = 1, check_parity: bool = True) -> ExportedModel:
    """Load and check an export directory (see the module docstring); ``threads``: ONNX intra-op threads."""
    directory = Path(directory)
    manifest = mf.read_manifest(directory)
    contents = {name: mf.read_verified(directory, manifest, name) for name in manifest["files"]}
    if ENCODER_FILE not in contents:
        raise UnitargetError(f"{directory / mf.MANIFEST_FILE} lists no {ENCODER_FILE}")
    try:
        encoder = _load_encoder(json.loads(contents[ENCODER_FILE]))
    except ValueError as err:
        raise UnitargetError(f"{directory / ENCODER_FILE} is not valid JSON: {err}") from None
    run_graph = onnx_runner(contents[mf.ONNX_FILE], threads)
    _check_signature(directory, manifest, encoder)
    model = ExportedModel(directory, manifest, encoder, run_graph, RequestEncoder(encoder))
    if check_parity:
        diff = parity_difference(load_model(directory), run_graph)
        if not diff <= PARITY_TOLERANCE:
            raise UnitargetError(f"{directory}: ONNX Runtime and PyTorch disagree by {diff:.3g} "
                                 f"(> {PARITY_TOLERANCE:g}); the graph does not belong to these weights")
        model.parity_max_abs_diff = diff
    model.warm_up()
    return model


def _check_signature(directory: Path, manifest: dict[str, Any], encoder: FeatureEncoder) -> None:
    """The manifest's input widths and tasks must match the encoder the graph will be fed by."""
    layout = encoder.layout_
    try:
        declared = (manifest["inputs"][mf.IDS_INPUT]["shape"][1], manifest["inputs"][mf.DENSE_INPUT]["shape"][1])
        tasks = manifest["tasks"]
    except (KeyError, IndexError, TypeError):
        raise UnitargetError(f"{directory / mf.MANIFEST_FILE} does not describe the graph's inputs") from None
    if declared != (layout.ids_width, layout.dense_dim):
        raise UnitargetError(f"{directory}: the graph expects ids/dense widths {declared} but {ENCODER_FILE} "
                             f"produces {(layout.ids_width, layout.dense_dim)}")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise UnitargetError(f"{directory / mf.MANIFEST_FILE} lists no tasks")
