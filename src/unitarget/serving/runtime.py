"""An exported model loaded for inference: verified files, an ONNX Runtime session, the encoder.

Loading checks, in order: the manifest's shape, the size and sha256 of every file it lists, that
the graph's inputs and outputs match the encoder and the tasks, and (``check_parity``) that ONNX
Runtime agrees with the PyTorch weights on a sample; then one warm-up inference runs through the
whole request path. Any failure is one ``UnitargetError`` naming the file and what is wrong, so a
server can keep serving its previous version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from unitarget import contract
from unitarget.data.features import FeatureEncoder
from unitarget.data.vocabulary import OOV, Vocabulary, as_string
from unitarget.errors import UnitargetError
from unitarget.pipeline import ENCODER_FILE, load_model
from unitarget.serving import manifest as mf
from unitarget.serving.export import PARITY_TOLERANCE, onnx_runner, parity_difference


class CachedVocabulary(Vocabulary):
    """A fitted ``Vocabulary`` whose id -> row hash table is built once, for serving.

    ``Vocabulary.transform`` hands the whole value set to ``pc.index_in``, which rebuilds its hash
    table on every call: about 0.5 ms for 40,000 user ids, paid per feature per request, most of a
    request's encoding time. Here the table is a dict built at load, and a call of up to
    ``DICT_LOOKUP_MAX`` values costs one lookup per value. Larger calls (batch scoring) go through
    ``pc.index_in``, where the hash build is amortised and no per-row Python runs. Same rows as
    ``Vocabulary.transform`` for every input (tests/test_export.py).
    """

    #: Above this many values per call, the vectorised lookup is faster than per-value dict lookups.
    DICT_LOOKUP_MAX = 4_096

    def __init__(self, fitted: Vocabulary) -> None:
        super().__init__(fitted.min_count)
        self.values_ = fitted.values_
        self._rows = {value: row + 1 for row, value in enumerate(fitted.values_.to_pylist())}

    def transform(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        if len(values) > self.DICT_LOOKUP_MAX:
            return super().transform(values)
        items = as_string(values).to_pylist()  # null -> None -> OOV
        row = self._rows.get
        return np.fromiter((row(v, OOV) for v in items), dtype=np.int64, count=len(items))


def serving_encoder(encoder_dict: dict[str, Any]) -> FeatureEncoder:
    """The saved encoder with cached vocabulary lookups (hashed vocabularies need no table)."""
    try:
        encoder = FeatureEncoder.from_dict(encoder_dict)
    except (KeyError, TypeError, ValueError) as err:
        raise UnitargetError(f"{ENCODER_FILE} is not a fitted unitarget encoder: {type(err).__name__}: {err}") from None
    for name, vocabulary in encoder.vocabularies_.items():
        if isinstance(vocabulary, Vocabulary):
            encoder.vocabularies_[name] = CachedVocabulary(vocabulary)
    return encoder


@dataclass
class ExportedModel:
    """One loaded model version. Immutable once loaded, so requests may share it across threads."""

    directory: Path
    manifest: dict[str, Any]
    encoder: FeatureEncoder
    run_graph: Callable[[np.ndarray, np.ndarray], np.ndarray]
    parity_max_abs_diff: float | None = None
    loaded_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def version(self) -> str:
        return self.directory.name

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.manifest["tasks"])

    def score(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, T) float32, ids (N, C) int32) of a table with the contract's columns.

        Encoding is ``FeatureEncoder.transform``, the code path training used; unknown ids land on
        each feature's OOV row and missing columns read as unknown.
        """
        batch = self.encoder.transform(table)
        ids, dense = batch.ids.numpy(), batch.dense.numpy()
        return self.run_graph(ids, dense), ids

    def oov(self, table: pa.Table, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Field -> (N,) bool: the row gave a value that encoded to the OOV row (a bag: any token).

        Fields the row left out (null or absent) are not reported: the caller knows it sent none.
        Hashed features never report OOV (every id has a bucket).
        """
        layout, present = self.encoder.layout_, set(table.column_names)
        flags: dict[str, np.ndarray] = {}
        for j, name in enumerate(layout.categorical):
            if name in present:
                given = table.column(name).is_valid().to_numpy(zero_copy_only=False)
                flags[name] = given & (ids[:, j] == layout.offsets[name] + OOV)
        for name, start, stop in layout.bags:
            if name in present:
                flags[name] = (ids[:, start:stop] == layout.offsets[name] + OOV).any(axis=1)
        return flags

    def warm_up(self) -> None:
        """One inference through the whole path (encode -> graph) on a row of unknown ids."""
        now = pa.array([datetime.now(timezone.utc)], pa.timestamp("us", tz="UTC"))
        table = pa.table({contract.USER_ID: ["warm-up"], contract.SHOW_ID: ["warm-up"],
                          contract.SOURCE: pa.nulls(1, pa.string()), contract.TS: now})
        probabilities, _ = self.score(table)
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
        encoder = serving_encoder(json.loads(contents[ENCODER_FILE]))
    except ValueError as err:
        raise UnitargetError(f"{directory / ENCODER_FILE} is not valid JSON: {err}") from None
    run_graph = onnx_runner(contents[mf.ONNX_FILE], threads)
    _check_signature(directory, manifest, encoder)
    model = ExportedModel(directory, manifest, encoder, run_graph)
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
    width = layout.bags[-1][2] if layout.bags else layout.n_categorical
    try:
        declared = (manifest["inputs"][mf.IDS_INPUT]["shape"][1], manifest["inputs"][mf.DENSE_INPUT]["shape"][1])
        tasks = manifest["tasks"]
    except (KeyError, IndexError, TypeError):
        raise UnitargetError(f"{directory / mf.MANIFEST_FILE} does not describe the graph's inputs") from None
    if declared != (width, layout.dense_dim):
        raise UnitargetError(f"{directory}: the graph expects ids/dense widths {declared} but {ENCODER_FILE} "
                             f"produces {(width, layout.dense_dim)}")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise UnitargetError(f"{directory / mf.MANIFEST_FILE} lists no tasks")
