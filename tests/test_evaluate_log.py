"""Streaming evaluation: ``evaluate_log`` reads a log chunk by chunk and gets ``evaluate``'s result exactly."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from unitarget import contract
from unitarget.config import Config, merge
from unitarget.errors import ContractError
from unitarget.evaluation.segments import ALL
from unitarget.pipeline import evaluate_log, load_log, train


@pytest.fixture(scope="module")
def model(tiny_log, tmp_path_factory):
    """A small model whose forward passes take 4,096 rows, so chunks of other sizes cut across them."""
    config = merge(Config(), {
        "model": {"hidden": [32, 16], "tower_hidden": [8], "embedding_dim": 8},
        "train": {"batch_size": 512, "max_epochs": 1, "valid_days": 4, "threads": 1, "eval_batch_size": 4_096},
        "optim": {"warmup_steps": 5},
    })
    return train(tiny_log, tmp_path_factory.mktemp("eval") / "run", config)


@pytest.fixture(scope="module")
def grouped_log(tiny_log):
    """The log ordered by source, then show popularity: long runs of one source and one tier, so
    chunk boundaries fall inside them."""
    return tiny_log.sort_by([(contract.SOURCE, "ascending"), (contract.SHOW_STREAMS_30D, "descending")])


@pytest.mark.parametrize("chunk_rows", [999, 4_096, 5_000, 10_007, 100_000])
def test_a_log_streamed_in_chunks_gets_the_in_memory_result_exactly(model, grouped_log, chunk_rows, one_thread):
    source = grouped_log.column(contract.SOURCE).to_numpy(zero_copy_only=False)
    tiers = contract.tier_of(grouped_log.column(contract.SHOW_STREAMS_30D).to_numpy())
    cut = min(chunk_rows, 5_000)  # a boundary inside a run of one source and one tier
    assert source[cut - 1] == source[cut] and tiers[cut - 1] == tiers[cut]
    seen: list[int] = []
    streamed = evaluate_log(model, grouped_log, chunk_rows=chunk_rows, on_chunk=seen.append)
    assert streamed.to_dict() == model.evaluate(load_log(grouped_log, model.config)).to_dict()
    assert seen[-1] == grouped_log.num_rows and seen == sorted(seen)


def test_targets_and_segments_are_passed_on(model, tiny_log, one_thread):
    targets = [t for t in model.evaluation_targets() if t.name == "click"]
    streamed = evaluate_log(model, tiny_log, targets, segments=(ALL,), chunk_rows=7_000)
    assert streamed.to_dict() == model.evaluate(tiny_log, targets, segments=(ALL,)).to_dict()
    assert [(row.target, row.segment) for row in streamed.rows] == [("click", ALL)]


def test_a_bad_row_in_a_later_chunk_is_named_by_its_row_in_the_log(model, tiny_log):
    labels = tiny_log.column("click").to_numpy(zero_copy_only=False).copy()
    labels[17_345] = 2
    bad = tiny_log.set_column(tiny_log.schema.get_field_index("click"), "click",
                              pa.array(labels, tiny_log.schema.field("click").type))
    with pytest.raises(ContractError, match="17345") as caught:
        evaluate_log(model, bad, chunk_rows=5_000)
    assert caught.value.rows == [17_345] and caught.value.column == "click"


def test_an_empty_log_and_a_log_without_labels_are_contract_errors(model, tiny_log):
    with pytest.raises(ContractError, match="empty dataset"):
        evaluate_log(model, tiny_log.slice(0, 0))
    with pytest.raises(ContractError, match="missing required column 'stream'"):
        evaluate_log(model, tiny_log.drop_columns(["stream"]), chunk_rows=5_000)


def test_rows_of_an_unknown_source_join_no_source_target(model, tiny_log, one_thread):
    rows = tiny_log.slice(0, 3_000)
    other = pc.if_else(pc.equal(rows.column(contract.SOURCE), contract.ADS), "elsewhere",
                       rows.column(contract.SOURCE))
    result = model.evaluate(rows.set_column(rows.schema.get_field_index(contract.SOURCE), contract.SOURCE, other))
    assert result.row("ads_stream").n == 0 and result.row("promotions_stream").n > 0
    assert np.isnan(result.ap("ads_stream"))


def test_the_informed_oracle_and_a_baseline_stream_like_the_in_memory_result(model, tiny_log, tiny_log_path,
                                                                             one_thread):
    """With the informed oracle and a baseline (here the model itself: it beats no one, not even itself),
    chunked evaluation still gets the in-memory result exactly."""
    from unitarget.data.split import split_newest_days
    from unitarget.evaluation.informed import InformedOracle

    split = split_newest_days(tiny_log, 5, purpose="testing", setting="test")
    informed = InformedOracle.for_log(tiny_log_path.parent, split.newest)
    streamed = evaluate_log(model, split.newest, chunk_rows=3_000, informed=informed, baseline=model,
                            baseline_name="itself")
    whole = model.evaluate(load_log(split.newest, model.config), informed=informed)
    assert streamed.baseline.to_dict() == whole.to_dict()
    assert streamed.to_dict()["rows"] == whole.to_dict()["rows"]
    assert np.isfinite(whole.row("ads_stream").informed_oracle_ap)
    assert streamed.beats_baseline("ads_stream") is False
