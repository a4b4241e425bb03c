"""Any log that follows the contract trains with the default configuration and scores."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from unitarget.config import merge
from unitarget.io import read_log
from unitarget.pipeline import load_model, train, write_predictions


def _minimal_log(n: int = 6000, seed: int = 0) -> pa.Table:
    """Only the required columns, written the way another team might: ms timestamps, dictionary
    strings, a bool label with nulls, ids that are not the synthetic world's."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    ts = [start + dt.timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 20 * 24 * 60, n))]
    users = rng.integers(0, 300, n)
    shows = rng.integers(0, 40, n)
    stream = rng.random(n) < 0.05 + 0.1 * (users % 7 == shows % 7)
    stream_values = [None if i % 97 == 0 else bool(s) for i, s in enumerate(stream)]
    return pa.table({
        "impression_id": pa.array([f"imp-{i}" for i in range(n)]),
        "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        "source": pa.array(np.where(rng.random(n) < 0.7, "ads", "promotions")).dictionary_encode(),
        "user_id": pa.array([f"listener/{u}" for u in users]).dictionary_encode(),
        "show_id": pa.array([f"podcast:{s}" for s in shows]),
        "stream": pa.array(stream_values, pa.bool_()),
    })


def test_a_log_with_only_the_required_columns_trains_and_scores(tmp_path, fast_config):
    log = _minimal_log()
    day = pa.array([t.strftime("%Y-%m-%d") for t in log.column("ts").to_pylist()])
    pq.write_to_dataset(log.append_column("date", day), tmp_path / "logs", partition_cols=["date"])
    config = merge(fast_config, {"train": {"max_epochs": 1}})
    train(tmp_path / "logs", tmp_path / "run", config)
    model = load_model(tmp_path / "run")
    info = (tmp_path / "run" / "training.json").read_text()
    assert '"tier_source": "training_stream_counts"' in info
    unseen = log.slice(0, 100).drop_columns(["stream"])
    assert write_predictions(model, unseen, tmp_path / "preds.parquet") == 100
    predictions = pq.read_table(tmp_path / "preds.parquet")
    assert np.isfinite(predictions.column("p_ad_stream").to_numpy()).all()
    result = model.evaluate(read_log(tmp_path / "logs").drop_columns(["date"]))
    assert result.ap("ads_stream") > 0
    assert np.isnan(result.ap("click"))  # no click column: not observed, never read as 0
