"""What an exported model directory holds, and the check that its files are the ones exported.

An export directory::

    model.onnx      (ids int32 (B, C), dense float32 (B, D)) -> probabilities float32 (B, T)
    model.pt        the PyTorch weights (a tensor dict, read with weights_only=True), for parity checks
    encoder.json    the fitted FeatureEncoder: serving encodes exactly as training did
    config.json     the configuration the model was trained with
    training.json   the training record (data range, metrics), when the run had one
    manifest.json   tasks, inputs, feature spec, version, training range and metrics, and the
                    sha256 and size of every file above

None of these can execute code when loaded. The sha256 catches a truncated copy, a disk error or
an edited file before any of it is parsed; it is an integrity check, not a signature.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final

from unitarget.errors import UnitargetError

MANIFEST_FILE: Final = "manifest.json"
ONNX_FILE: Final = "model.onnx"
FORMAT: Final = "unitarget-export"
FORMAT_VERSION: Final = 1
#: Input and output names of the ONNX graph.
IDS_INPUT: Final = "ids"
DENSE_INPUT: Final = "dense"
OUTPUT: Final = "probabilities"
#: A manifest larger than this is not one of ours (it is read before anything is verified).
MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``, the digest the manifest records for each file."""
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """{"sha256", "bytes"} of one file, read in 1 MiB blocks (weights can be large)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "bytes": size}


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an export directory, checked for shape (not yet for file hashes)."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise UnitargetError(f"{directory} is not an exported unitarget model: {MANIFEST_FILE} is missing "
                             f"(create one with `unitarget export --model RUN --out DIR`)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UnitargetError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes: not a unitarget manifest")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UnitargetError(f"{path} is damaged (not valid JSON): {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnitargetError(f"{path} is not a unitarget export manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UnitargetError(f"{path} has format_version {manifest.get('format_version')!r}; this unitarget "
                             f"reads version {FORMAT_VERSION} (re-export the model)")
    files = manifest.get("files")
    if not isinstance(files, dict) or ONNX_FILE not in files:
        raise UnitargetError(f"{path} lists no {ONNX_FILE}")
    for name in files:  # plain names only: a manifest cannot point outside its directory
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise UnitargetError(f"{path} lists {name!r}, which is not a file name inside the export")
    return manifest


def read_verified(directory: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of ``name``, after checking its size and sha256 against the manifest.

    Reading once and handing the same bytes to the parser means the file checked is the file used.
    """
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict):
        raise UnitargetError(f"{directory / MANIFEST_FILE} does not list {name}")
    path = directory / name
    if not path.is_file():
        raise UnitargetError(f"{path} is missing (listed in {MANIFEST_FILE})")
    data = path.read_bytes()
    if len(data) != entry.get("bytes"):
        raise UnitargetError(f"{path} is {len(data)} bytes but the manifest says {entry.get('bytes')}: "
                             f"the file is truncated or was replaced; re-export the model")
    if sha256_bytes(data) != entry.get("sha256"):
        raise UnitargetError(f"{path} does not match the sha256 in {MANIFEST_FILE}: the file was modified "
                             f"or damaged after export; re-export the model")
    return data


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Check every listed file; raise on the first that differs from the manifest."""
    for name in manifest["files"]:
        read_verified(directory, manifest, name)
