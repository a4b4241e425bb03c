"""benchmarks/robustness.py --quick: one tiny world, one seed, the table written, numbers in [0, 1], a rerun resumes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "robustness.py"


def _script():
    spec = importlib.util.spec_from_file_location("robustness", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_family_writes_the_table_and_resumes(tmp_path, capsys, one_thread):
    robustness = _script()
    args = ["--quick", "--worlds", "small-default", "--seeds", "1", "--threads", "1", "--out", str(tmp_path / "out"),
            "--doc", str(tmp_path / "robustness.md")]
    text = robustness.main(args)
    assert (tmp_path / "robustness.md").read_text() == text
    for section in ("## The worlds", "## Validation AP (model selection)", "## Test AP", "## Seconds per cell"):
        assert section in text
    test_part = text.split("## Test AP")[1].split("## Seconds")[0]
    rows = [line for line in test_part.splitlines() if line.startswith("| small-default |")]
    assert {row.split(" | ")[1] for row in rows} == {"promotions_stream", "ads_stream", "click", "like", "follow"}
    for row in rows:  # oracle, informed oracle, unified, logreg AP and both ratios: all in [0, 1]
        numbers = [float(x) for x in re.findall(r"(?<![\d.+-])\d\.\d{3,4}(?!\d)", row.split(" | ", 2)[2])]
        assert len(numbers) >= 6 and all(0.0 <= x <= 1.0 for x in numbers[:6])
        assert re.search(r" [+-]\d\.\d{4} \|$", row)  # the gap to the baseline, last
    assert len(list((tmp_path / "out" / "cells").rglob("seed0.json"))) == 2

    capsys.readouterr()
    assert robustness.main(args) == text  # every cell read back, nothing trained again
    assert "all 2 cells already done" in capsys.readouterr().out


def test_the_shipped_world_is_the_one_reproduce_draws_and_stays_out_of_the_family():
    from unitarget.synth import WorldParams

    robustness = _script()
    assert robustness.SHIPPED.params(quick=False).to_dict() == WorldParams().to_dict()
    assert robustness.SHIPPED.name not in {w.name for w in robustness.WORLDS}


def test_a_refit_models_validation_ap_is_the_selected_models():
    robustness = _script()
    valid = {"format": "unitarget.evaluation/1", "rows": [
        {"target": "ads_stream", "segment": "all", "ap": 0.9, "oracle_ap": 0.5, "roc_auc": 0.99, "log_loss": 0.1,
         "calibration": 1.0}]}
    assert robustness.selected_on_validation(valid, None) == valid
    (row,) = robustness.selected_on_validation(valid, {"selected_valid_ap": {"ads_stream": 0.2}})["rows"]
    assert (row["ap"], row["oracle_ap"], row["roc_auc"]) == (0.2, 0.5, None)  # trained on these rows: not its AP


def test_earlier_days_test_on_days_before_the_newest(tmp_path, one_thread):
    from unitarget.config import Config

    robustness = _script()
    world = robustness.WORLDS[0]
    config = robustness.merge(Config(), robustness.QUICK)
    newest = robustness.prepare_world(tmp_path, world, config, True, print)[1]
    earlier = robustness.prepare_world(tmp_path, robustness.replace(world, earlier_days=7.0), config, True, print)[1]
    assert earlier.column("ts").to_numpy().max() < newest.column("ts").to_numpy().min()
    assert robustness.replace(world, earlier_days=7.0).label == f"{world.name}-7d-earlier"
    assert "earlier_days" not in robustness.cell_key(world, robustness.parse_variant("unified"), 0, config,
                                                    True)["world"]
