"""A version switch releases the version it drops and settles the heap (serving/heap.py): after
alternating reloads only the current and the previous versions are alive, in a registry and in the
app (whose start-up must not keep the first version), the heap is frozen and the young
generation's threshold raised."""

from __future__ import annotations

import gc
import weakref

import pytest
from fastapi.testclient import TestClient

from tests.serving_fixtures import Exported, exported_model, models_copy
from unitarget.serving import heap
from unitarget.serving.app import create_app
from unitarget.serving.registry import ModelRegistry
from unitarget.serving.settings import ServiceSettings


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_log_path) -> Exported:
    return exported_model(tmp_path_factory.mktemp("serving"), tiny_log_path)


@pytest.fixture
def gc_state():
    """Python's GC thresholds and an unfrozen heap again after the test."""
    thresholds = gc.get_threshold()
    gc.set_threshold(700, *thresholds[1:])
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_reloads_keep_two_versions_alive_and_settle_the_heap(exported, tmp_path, gc_state):
    registry = ModelRegistry(models_copy(exported, tmp_path), check_parity=False)
    loaded = [weakref.ref(registry.start("v1"))]
    loaded += [weakref.ref(registry.load(version)) for version in ("v2", "v1", "v2", "v1")]
    alive = [model() for model in loaded if model() is not None]
    assert alive == [registry.previous, registry.current]
    assert registry.current.version == "v1" and registry.previous.version == "v2"
    assert gc.get_threshold()[0] == heap.GC_YOUNG_THRESHOLD and gc.get_freeze_count() > 0


def test_the_app_releases_the_version_it_started_with(exported, tmp_path, gc_state):
    models = models_copy(exported, tmp_path)
    with TestClient(create_app(ServiceSettings.for_model(models / "v1", check_parity=False))) as client:
        first = weakref.ref(client.app.state.serving.registry.current)
        for version in ("v2", "v1", "v2"):
            assert client.post("/v1/reload", json={"version": version}).status_code == 200
        assert first() is None  # v1 was loaded again; the start-up's copy is gone
