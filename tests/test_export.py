"""Export: ONNX Runtime matches PyTorch, the manifest describes and protects the files, and a
tampered, truncated or pickle-bearing file is refused with a clear error (and executes nothing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.serving_fixtures import Exported, exported_model
from unitarget.errors import UnitargetError
from unitarget.models.average import members
from unitarget.models.regularisers import EmbeddingRegulariser
from unitarget.pipeline import load_model
from unitarget.scoring import predict_probabilities
from unitarget.serving import manifest as mf
from unitarget.serving.export import PARITY_TOLERANCE, export_model, onnx_runner, parity_difference
from unitarget.serving.runtime import load_exported


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


@pytest.fixture
def copy(exported, tmp_path) -> Path:
    """A private copy of the export that a test may damage."""
    return Path(shutil.copytree(exported.v1, tmp_path / "v1"))


def test_export_writes_the_graph_encoder_config_and_a_manifest(exported):
    names = {p.name for p in exported.v1.iterdir()}
    assert {"model.onnx", "model.pt", "encoder.json", "config.json", "training.json", "manifest.json"} <= names
    manifest = json.loads((exported.v1 / "manifest.json").read_text())
    assert manifest["tasks"] == ["promo_stream", "ad_stream", "click", "like", "follow"]
    assert manifest["unitarget_version"] and manifest["training"]["train_range"][0].startswith("2026-")
    assert "valid_score" in manifest["training"]["metrics"]
    assert {f["name"] for f in manifest["features"]} >= {"user_id", "show_id", "user_history_shows"}
    for name, entry in manifest["files"].items():
        assert mf.file_entry(exported.v1 / name) == entry
    assert "max abs difference" in exported.export_output
    assert manifest["parity"]["max_abs_diff"] <= 1e-4


def test_onnx_runtime_matches_pytorch_on_real_log_rows(exported, tiny_log):
    trained = load_model(exported.run)
    served = load_exported(exported.v1)
    rows = tiny_log.slice(0, 2_000)
    onnx = served.score(rows)
    torch_probs = trained.probabilities(rows)
    diff = float(np.abs(onnx - torch_probs).max())
    print(f"ONNX Runtime vs PyTorch on 2,000 log rows: max abs difference {diff:.3g}")
    assert diff <= 1e-4
    assert served.parity_max_abs_diff is not None and served.parity_max_abs_diff <= 1e-4


def test_export_refuses_to_replace_an_existing_version(exported):
    with pytest.raises(UnitargetError, match="already exists"):
        export_model(exported.run, exported.v1)


def test_a_modified_graph_fails_its_sha256(copy):
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(UnitargetError, match="model.onnx does not match the sha256"):
        load_exported(copy)


def test_a_truncated_weights_file_is_named(copy):
    data = (copy / "model.pt").read_bytes()
    (copy / "model.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(UnitargetError, match="model.pt is .* bytes but the manifest says .*truncated"):
        load_exported(copy)


def test_missing_or_damaged_manifest(copy):
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(UnitargetError, match="manifest.json is damaged"):
        load_exported(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(UnitargetError, match="not an exported unitarget model"):
        load_exported(copy)


def test_a_manifest_cannot_point_outside_its_directory(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"sha256": "0", "bytes": 0}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnitargetError, match="not a file name inside the export"):
        load_exported(copy)


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_bearing_weights_file_is_refused_without_running_it(copy, tmp_path):
    marker = tmp_path / "code-ran"
    state = load_model(copy).model.state_dict()
    torch.save({"model": state, "payload": _Exploit(marker)}, copy / "model.pt")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.pt"] = mf.file_entry(copy / "model.pt")  # an attacker also fixes the hash
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnitargetError, match="cannot be loaded safely|damaged"):
        load_exported(copy)
    assert not marker.exists()


def test_a_graph_from_other_weights_fails_the_parity_check(copy, exported):
    state = torch.load(copy / "model.pt", weights_only=True)
    state["model"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, copy / "model.pt")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.pt"] = mf.file_entry(copy / "model.pt")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnitargetError, match="ONNX Runtime and PyTorch disagree"):
        load_exported(copy)
    assert load_exported(copy, check_parity=False).version == "v1"



def test_parity_holds_with_embedding_dropout_and_decay_configured(exported, tiny_log):
    """Neither regulariser reaches inference: the model with dropout and decay configured scores as the exported graph
    does, and the same rows twice alike. (The graph is the session's export: the regularisers have no weights, so
    the same trained weights with them configured are the model a regularised run saves.)"""
    trained = load_model(exported.run)
    layout = trained.encoder.layout_
    layouts = [layout] + [inputs.layout_of_older(layout) for inputs in list(trained.model.inputs)[1:]]
    for member, member_layout in zip(members(trained.model), layouts):  # an average's members read their own
        member.embedder.regulariser = EmbeddingRegulariser(
            member_layout, {"user": 1e-3}, {"user": 0.3, "content": 0.3, "creative": 0.3})
    graph = onnx_runner((exported.v1 / "model.onnx").read_bytes())
    assert parity_difference(trained, graph) <= PARITY_TOLERANCE
    rows = trained.encoder.transform_features(tiny_log.slice(0, 300))
    assert np.array_equal(predict_probabilities(trained.model, rows), predict_probabilities(trained.model, rows))
