"""End to end on a tiny world: train, predict, evaluate, determinism, resume, atomic failure."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from unitarget import contract
from unitarget.config import merge
from unitarget.errors import ContractError, UnitargetError
from unitarget.pipeline import load_model, train, write_predictions
from unitarget.presets import apply_preset
from unitarget.training.hooks import SilentHooks
from unitarget.training.loop import TrainingDivergedError


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_writes_a_loadable_run_and_predicts_row_for_row(tiny_log_path, tmp_path, fast_config):
    trained = train(tiny_log_path, tmp_path / "run", fast_config)
    for name in ("config.json", "encoder.json", "model.pt", "training.json"):
        assert (tmp_path / "run" / name).is_file()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    loaded = load_model(tmp_path / "run")
    assert _same_weights(trained, loaded)
    assert write_predictions(loaded, tiny_log_path, tmp_path / "preds.parquet") == pq.read_metadata(tiny_log_path).num_rows
    predictions = pq.read_table(tmp_path / "preds.parquet")
    log = pq.read_table(tiny_log_path)
    assert predictions.column("impression_id").equals(log.column("impression_id"))
    assert predictions.column_names == ["impression_id"] + [f"p_{t.name}" for t in fast_config.tasks]
    p = predictions.column("p_ad_stream").to_numpy()
    assert ((p > 0) & (p < 1)).all()


def test_unknown_ids_and_missing_features_score_without_failing(tiny_log, tmp_path, fast_config):
    trained = train(tiny_log, tmp_path / "run", fast_config)
    n = 100
    fresh = tiny_log.slice(0, n)
    for column in ("user_id", "show_id", "creative_id"):
        fresh = fresh.set_column(fresh.schema.get_field_index(column), column, pa.array([f"new-{i}" for i in range(n)]))
    fresh = fresh.drop_columns(["stream", "click", "like", "follow", "user_history_shows", "device"])
    assert write_predictions(trained, fresh, tmp_path / "p.parquet") == n
    predictions = pq.read_table(tmp_path / "p.parquet")
    assert not pc.any(pc.is_nan(predictions.column("p_promo_stream"))).as_py()


def test_same_seed_gives_identical_weights(tiny_log, tmp_path, fast_config):
    a = train(tiny_log, tmp_path / "a", fast_config)
    b = train(tiny_log, tmp_path / "b", fast_config)
    c = train(tiny_log, tmp_path / "c", merge(fast_config, {"train": {"seed": 1}}))
    assert _same_weights(a, b)
    assert not _same_weights(a, c)


class _InterruptAfterFirstEpoch(SilentHooks):
    def on_epoch_end(self, record) -> None:
        raise KeyboardInterrupt


def test_resume_continues_an_interrupted_run_to_the_same_weights(tiny_log, tmp_path, fast_config):
    config = merge(fast_config, {"train": {"max_epochs": 3, "patience": 3}})
    uninterrupted = train(tiny_log, tmp_path / "full", config)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_log, tmp_path / "run", config, hooks=_InterruptAfterFirstEpoch())
    assert not (tmp_path / "run").exists()  # nothing published until the run finishes
    resumed = train(tiny_log, tmp_path / "run", config, resume=True)
    assert _same_weights(uninterrupted, resumed)


def test_resume_refuses_a_different_configuration(tiny_log, tmp_path, fast_config):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_log, tmp_path / "run", fast_config, hooks=_InterruptAfterFirstEpoch())
    with pytest.raises(UnitargetError, match="differ"):
        train(tiny_log, tmp_path / "run", merge(fast_config, {"optim": {"lr": 0.01}}), resume=True)


def test_bad_input_leaves_an_existing_run_untouched(tiny_log, tmp_path, fast_config):
    train(tiny_log, tmp_path / "run", fast_config)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    bad = tiny_log.set_column(tiny_log.schema.get_field_index("source"), "source",
                              pa.array(["radio"] * tiny_log.num_rows))
    with pytest.raises(ContractError, match="source"):
        train(bad, tmp_path / "run", fast_config)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_a_diverging_loss_stops_with_a_clear_message(tiny_log, tmp_path, fast_config):
    config = merge(fast_config, {"optim": {"lr": 1e12, "warmup_steps": 0}})
    with pytest.raises(TrainingDivergedError, match="not finite"):
        train(tiny_log, tmp_path / "run", config)


def test_promotions_baseline_trains_on_promotions_only_and_scores_ads(tiny_log, tmp_path, fast_config):
    trained = train(tiny_log, tmp_path / "run", apply_preset(fast_config, "promo-baseline"))
    info = (tmp_path / "run" / "training.json").read_text()
    promos = pc.sum(pc.equal(tiny_log.column("source"), contract.PROMOTIONS)).as_py()
    assert '"train"' in info and trained.model.task_names == ["promo_stream", "click", "like", "follow"]
    result = trained.evaluate(tiny_log)
    ads = result.row("ads_stream")
    assert ads.task == "promo_stream" and ads.n > 0
    assert result.row("promotions_stream").n <= promos


def test_evaluation_reports_every_target_segment_and_the_oracle(tiny_log, tmp_path, fast_config):
    trained = train(tiny_log, tmp_path / "run", fast_config)
    result = trained.evaluate(tiny_log)
    assert set(result.targets) == {"promotions_stream", "ads_stream", "click", "like", "follow"}
    row = result.row("ads_stream")
    assert 0 < row.ap <= 1 and 0 < row.oracle_ap <= 1
    tier_rows = sum(result.row("ads_stream", f"tier_{t}").n for t in range(8))
    assert tier_rows == row.n


def test_predictions_stream_in_chunks_with_the_same_values(tiny_log, tmp_path, fast_config):
    trained = train(tiny_log, tmp_path / "run", fast_config)
    seen: list[int] = []
    write_predictions(trained, tiny_log, tmp_path / "whole.parquet")
    write_predictions(trained, tiny_log, tmp_path / "chunked.parquet", chunk_rows=5_000, on_chunk=seen.append)
    assert seen == [min(5_000 * (i + 1), tiny_log.num_rows) for i in range(len(seen))] and len(seen) > 3
    whole, chunked = pq.read_table(tmp_path / "whole.parquet"), pq.read_table(tmp_path / "chunked.parquet")
    assert chunked.column_names == whole.column_names and chunked.column(0).equals(whole.column(0))
    for name in whole.column_names[1:]:  # float32 matmuls of other slice shapes may round differently
        np.testing.assert_allclose(chunked.column(name).to_numpy(), whole.column(name).to_numpy(), atol=1e-6)


def test_a_bad_row_in_a_later_chunk_is_named_by_its_row_in_the_log_and_nothing_is_replaced(
        tiny_log, tmp_path, fast_config):
    trained = train(tiny_log, tmp_path / "run", fast_config)
    out = tmp_path / "p.parquet"
    out.write_bytes(b"previous predictions")
    ts = tiny_log.column("ts").to_pylist()
    ts[12_345] = None
    bad = tiny_log.set_column(tiny_log.schema.get_field_index("ts"), "ts", pa.array(ts, tiny_log.schema.field("ts").type))
    with pytest.raises(ContractError, match="12345") as caught:
        write_predictions(trained, bad, out, chunk_rows=5_000)
    assert caught.value.rows == [12_345] and caught.value.column == "ts"
    assert out.read_bytes() == b"previous predictions"


def test_one_fingerprint_decides_run_reuse_and_ignores_what_does_not_train(tiny_log, tmp_path, fast_config):
    from unitarget.pipeline import trained_on
    from unitarget.runs import TRAINING_FILE, run_fingerprint

    run = tmp_path / "run"
    trained = train(tiny_log, run, fast_config)
    assert trained_on(run, tiny_log, fast_config)
    # the simulation, the test split and the thread count do not change the weights
    assert trained_on(run, tiny_log, merge(fast_config, {"simulate": {"markets": 7}, "train": {"threads": 2},
                                                           "evaluation": {"test_days": 3}}))
    assert not trained_on(run, tiny_log, merge(fast_config, {"optim": {"lr": 1e-3}}))
    assert not trained_on(run, tiny_log.slice(0, tiny_log.num_rows - 500), fast_config)  # other rows
    # a run written before run_format 2 (no such key) is recognised the same way
    record = trained.record.to_dict()
    assert record["run_format"] == 2
    del record["run_format"]

    (run / TRAINING_FILE).write_text(json.dumps(record))
    assert run_fingerprint(run) is not None and trained_on(run, tiny_log, fast_config)
    assert load_model(run).record.run_format == 1


def test_a_run_that_predates_a_training_setting_is_not_taken_for_todays_defaults(tiny_log, tmp_path, fast_config):
    from unitarget.pipeline import trained_on
    from unitarget.runs import CONFIG_FILE

    run = tmp_path / "run"
    train(tiny_log, run, fast_config)
    stored = json.loads((run / CONFIG_FILE).read_text())
    del stored["train"]["threads"]  # outside the training part: an older run without it is still this run
    (run / CONFIG_FILE).write_text(json.dumps(stored))
    assert trained_on(run, tiny_log, fast_config)
    # A run written before model.attention.history_loss existed trained without it, whatever today's default is:
    # read back, the setting would take today's default, and the run must not pass for one trained with it.
    del stored["model"]["attention"]["history_loss"]
    (run / CONFIG_FILE).write_text(json.dumps(stored))
    assert load_model(run).config.model.attention.history_loss == fast_config.model.attention.history_loss
    assert not trained_on(run, tiny_log, fast_config)


def test_resume_accepts_a_configuration_that_differs_only_outside_training(tiny_log, tmp_path, fast_config):
    config = merge(fast_config, {"train": {"max_epochs": 3, "patience": 3}})
    uninterrupted = train(tiny_log, tmp_path / "full", config)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_log, tmp_path / "run", config, hooks=_InterruptAfterFirstEpoch())
    resumed = train(tiny_log, tmp_path / "run", merge(config, {"simulate": {"markets": 5}}), resume=True)
    assert _same_weights(uninterrupted, resumed)
