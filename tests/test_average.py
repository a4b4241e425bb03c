"""train.refit_average: the published model is the mean of the refit model's and the selected model's logits, the
selected one reading the refit encoder's inputs through a map of its own."""

import numpy as np
import pytest
import torch

from unitarget.config import merge
from unitarget.models import MultiTaskModel
from unitarget.models.average import InputMap, LogitAverage, members
from unitarget.pipeline import load_model, split_training_log, train
from unitarget.training.setup import encoder_for


def test_the_input_map_gives_the_older_encoders_rows_and_layout(tiny_log, fast_config):
    split = split_training_log(tiny_log, fast_config)
    older = encoder_for(fast_config).fit(split.older)
    newer = encoder_for(fast_config).fit(tiny_log)
    assert newer.layout_.table_rows > older.layout_.table_rows  # the newest days brought ids of their own
    input_map = InputMap.between(newer, older)
    assert input_map.layout_of_older(newer.layout_) == older.layout_
    rows = tiny_log.slice(0, 2_000)
    mapped = input_map(newer.transform_features(rows))
    direct = older.transform_features(rows)
    assert torch.equal(mapped.ids, direct.ids)  # ids the older encoder never saw land on its OOV rows
    assert torch.allclose(mapped.dense, direct.dense, atol=1e-5)  # log counts moved to the older mean and scale


@pytest.fixture(scope="module")
def averaged_and_selected(tiny_log, tmp_path_factory):
    from tests.conftest import FAST
    from unitarget.config import Config

    config = merge(Config(), FAST)
    out = tmp_path_factory.mktemp("average")
    averaged = train(tiny_log, out / "averaged", config)
    selected = train(tiny_log, out / "selected", merge(config, {"train": {"refit": False}}))
    alone = train(tiny_log, out / "alone", merge(config, {"train": {"refit_average": False}}))
    return out, averaged, selected, alone


def test_the_published_model_averages_the_refit_and_the_selected_models_logits(averaged_and_selected, tiny_log):
    _, averaged, selected, alone = averaged_and_selected
    assert isinstance(averaged.model, LogitAverage) and isinstance(alone.model, MultiTaskModel)
    refit_member, selected_member = members(averaged.model)
    # the same selection (one thread, one seed) and the same refit as the runs that publish each alone
    for member, model in ((selected_member, selected.model), (refit_member, alone.model)):
        assert all(torch.equal(a, b) for a, b in zip(member.state_dict().values(), model.state_dict().values()))
    rows = split_training_log(tiny_log, averaged.config).newest
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    expected = 1 / (1 + np.exp(-(logit(selected.probabilities(rows).astype(np.float64))
                                 + logit(alone.probabilities(rows).astype(np.float64))) / 2))
    assert np.allclose(averaged.probabilities(rows), expected, atol=1e-5)
    assert averaged.record.parameters == sum(p.numel() for m in (selected.model, alone.model) for p in m.parameters())


def test_an_averaged_run_loads_as_it_was_published(averaged_and_selected, tiny_log):
    out, averaged, _, _ = averaged_and_selected
    loaded = load_model(out / "averaged")
    assert isinstance(loaded.model, LogitAverage)
    rows = tiny_log.slice(0, 3_000)
    assert np.array_equal(loaded.probabilities(rows), averaged.probabilities(rows))


def test_an_averaged_run_exports_to_one_graph_within_the_parity_bound(averaged_and_selected, tmp_path):
    from unitarget.serving.export import PARITY_TOLERANCE, export_model

    out, averaged, _, _ = averaged_and_selected
    report = export_model(out / "averaged", tmp_path / "v1")
    assert report.max_abs_diff <= PARITY_TOLERANCE and report.tasks == tuple(averaged.model.task_names)
