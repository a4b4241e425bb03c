"""`unitarget ablate --study camoe` end to end on a tiny world, and the report's rules."""

import csv
import json

import numpy as np
from typer.testing import CliRunner

from unitarget.cli import app
from unitarget.config import Config
from unitarget.evaluation.formats import FormatRow
from unitarget.reports.camoe import pareto_verdict
from unitarget.studies.camoe_arms import camoe_arms
from unitarget.studies.camoe_results import ArmRun, read_journal, summarise
from unitarget.studies.pareto import dominates, pareto_front

runner = CliRunner()

TINY = """
[model]
hidden = [8]
tower_hidden = [4]
embedding_dim = 4
[model.experts]
hidden = [8]
[train]
batch_size = 512
valid_days = 4
threads = 1
[evaluation]
test_days = 5
"""


def test_ablate_camoe_writes_table_chart_cost_and_report(tiny_log_path, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    out = tmp_path / "study"
    args = ["ablate", "--study", "camoe", "--data", str(tiny_log_path), "--out", str(out), "--seeds", "2",
            "--epochs", "1", "--rows", "6000", "--only", "single-task,camoe",
            "--config", str(tmp_path / "tiny.toml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("CAMOE.md", "camoe_table.md", "camoe_table.csv", "camoe_runs.csv", "camoe_pareto.png",
                 "camoe_cost.md", "camoe_cost.csv", "camoe_facts.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "camoe_table.csv").open()))
    camoe_click = {r["format"]: r for r in rows if r["arm"] == "camoe" and r["label"] == "click"}
    assert set(camoe_click) == {"audio", "video", "display", "all"}
    assert all(r["seeds"] == "2" for r in camoe_click.values())  # spreads over two seeds
    single = {r["format"]: r["task"] for r in rows if r["arm"] == "single-task"}
    assert single["video"] == "click_video"
    assert "stream" not in {r["label"] for r in rows if r["arm"] == "single-task"}
    report = (out / "CAMOE.md").read_text()
    assert "Pareto front" in report and "2 seeds" not in report and "Seeds 0, 1" in report
    assert "6,000 training-day ad impressions" in report
    assert len(read_journal(out / "camoe_runs.jsonl")) == 4  # 2 arms x 2 seeds, saved as they finish
    facts = json.loads((out / "camoe_facts.json").read_text())
    assert {c["name"] for c in facts["costs"]} >= {"shared_bottom", "mmoe", "ple", "camoe", "camoe-masked"}
    # --resume keeps what is done and trains nothing more
    again = runner.invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "training" not in again.output


def test_unknown_arm_is_a_user_error(tiny_log_path, tmp_path):
    result = runner.invoke(app, ["ablate", "--study", "camoe", "--data", str(tiny_log_path), "--out",
                                 str(tmp_path), "--only", "nope"])
    assert result.exit_code == 2 and "unknown arms" in result.output


def test_pareto_front_and_dominance():
    assert dominates([2, 2], [1, 2]) and not dominates([2, 1], [1, 2]) and not dominates([1, 1], [1, 1])
    assert pareto_front({"a": [1, 3], "b": [3, 1], "c": [1, 1], "d": [2, 2]}) == ["a", "b", "d"]


def _run(arm: str, seed: int, aps: list[float]) -> ArmRun:
    formats = ("audio", "video", "display")
    rows = tuple(FormatRow("click", f, f"click_{f}", 100, 5, ap, 0.5) for f, ap in zip(formats, aps))
    return ArmRun(arm, seed, rows, 1.0, 10)


def test_verdict_names_the_front_and_judges_dominance_against_the_seed_spread():
    runs = [_run("camoe", s, [0.10 + d, 0.20 + d, 0.30 + d]) for s, d in enumerate((0.0, 0.002))]
    runs += [_run("mmoe", s, [0.20 + d, 0.30 + d, 0.40 + d]) for s, d in enumerate((0.0, 0.002))]
    runs += [_run("ple", s, [0.101 + d, 0.201 + d, 0.301 + d]) for s, d in enumerate((0.0, 0.05))]
    summary = summarise(runs)
    assert np.isclose(summary["camoe"][("click", "audio")].mean, 0.101)
    text = pareto_verdict(summary, ["camoe", "mmoe", "ple"])
    assert "is not on the Pareto front" in text
    assert "`mmoe`" in text and "beyond the seed spread on every format" in text
    assert "`ple`" in text and "within two standard errors" in text
    assert "is on the Pareto front" in pareto_verdict(summary, ["camoe"])


def test_arms_cover_the_issue_and_each_ablation_changes_one_thing():
    arms = {a.name: a for a in camoe_arms()}
    required = {"single-task", "mtl-pooled", "mmoe", "ple", "camoe", "camoe-no-cross", "camoe-no-mask"}
    assert required <= set(arms)
    assert any(name.startswith("camoe-experts") for name in arms)
    config = {name: arm.configs(Config(), 0)[0] for name, arm in arms.items()}
    camoe = config["camoe"]
    assert camoe.task_groups() == config["camoe-no-mask"].task_groups()  # same groups, only the mask goes
    assert camoe.task_groups()["click_video"] == camoe.task_groups()["click_display"] == "visual"
    assert all(t.formats is None for t in config["camoe-no-mask"].tasks)
    assert all(t.formats == (t.name.split("_")[1],) for t in camoe.tasks)
    assert config["camoe-no-cross"].model.cross.layers == 0 and camoe.model.cross.layers == 2
    no_experts = config["camoe-no-experts"]  # CAMoE minus its experts: same crosses, tasks and mask
    assert no_experts.model.encoder == "shared_bottom" and no_experts.model.cross == camoe.model.cross
    assert no_experts.tasks == camoe.tasks
    assert len(arms["single-task"].configs(Config(), 0)) == 3


def test_camoe_arms_train_with_the_configured_sampler_and_loss_balancer(tiny_log, fast_config, monkeypatch):
    from unitarget.config import merge
    from unitarget.studies import camoe as study
    from unitarget.training.balancing import UncertaintyWeighting
    from unitarget.training.sampling import NaturalSampler

    used = []
    real_fit = study.fit

    def spy(model, tasks, batches, **kwargs):
        state = real_fit(model, tasks, batches, **kwargs)
        used.append((batches.sampler, kwargs["balancer"]))
        return state

    monkeypatch.setattr(study, "fit", spy)
    config = merge(fast_config, {"loss": {"method": "uncertainty"}, "train": {"batch_size": 256, "seed": 3},
                                 "evaluation": {"test_days": 5}})
    encoded = study.EncodedStudy(study.StudyData.split(tiny_log, config, rows=4000), config)
    arm = next(a for a in camoe_arms() if a.name == "mtl-per-format")
    study.train_model(arm.configs(config, seed=3)[0], encoded)
    (sampler, balancer), = used
    assert isinstance(balancer, UncertaintyWeighting)  # not the static weights the study once hard-coded
    assert bool((balancer.log_variance != 0).all())  # and it was optimised with the model
    assert isinstance(sampler, NaturalSampler)  # ads only: nothing to balance
    assert (sampler.batch_size, sampler.seed) == (256, 3)
