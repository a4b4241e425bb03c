"""Each ablation switch really changes what the model sees."""

import pytest
import torch

from unitarget.config import Config, ModelConfig
from unitarget.contract import Group
from unitarget.data.features import FeatureEncoder
from unitarget.models import build_model
from unitarget.training.batches import make_sampler
from unitarget.studies.ablation import cold_ad_history_mask, paper_variants
from unitarget.training.sampling import NaturalSampler, SourceBalancedSampler
from unitarget.training.tasks import TaskSet
from tests.helpers import tiny_batch, tiny_layout

ADS, PROMOS = 0, 1
VARIANTS = {v.name: v for v in paper_variants()}


def _tower_grads(config: Config, source_rows: list[int]) -> dict[str, float]:
    torch.manual_seed(0)
    layout = tiny_layout()
    tasks = TaskSet(config.tasks, config.sources)
    model = build_model(ModelConfig(hidden=(8,), tower_hidden=(4,)), layout, tasks.names)
    batch = tiny_batch(layout, source_rows, n_labels=len(tasks.labels))
    tasks.losses(model(batch.features), batch.targets).sum().backward()
    return {name: sum(float(p.grad.abs().sum()) for p in tower.parameters()) for name, tower in model.towers.items()}


def test_reversed_mask_makes_gradients_flow_the_other_way():
    config = VARIANTS["mask-reversed"].config(Config(), seed=0)
    from_ads = _tower_grads(config, [ADS] * 4)
    from_promos = _tower_grads(config, [PROMOS] * 4)
    assert from_ads["promo_stream"] > 0 and from_ads["ad_stream"] > 0
    assert from_promos["ad_stream"] == 0 and from_promos["promo_stream"] > 0


def test_without_the_mask_ads_update_the_promotion_tower():
    config = VARIANTS["no-mask"].config(Config(), seed=0)
    assert _tower_grads(config, [ADS] * 4)["promo_stream"] > 0
    unified = VARIANTS["unified"].config(Config(), seed=0)
    assert _tower_grads(unified, [ADS] * 4)["promo_stream"] == 0


def test_natural_mix_switches_the_sampler(tiny_log):
    for name, expected in (("natural-mix", NaturalSampler), ("unified", SourceBalancedSampler)):
        config = VARIANTS[name].config(Config(), seed=0)
        tasks = TaskSet(config.tasks, config.sources)
        batch = FeatureEncoder(config.features, config.sources, tasks.labels).fit(tiny_log).transform(tiny_log)
        assert isinstance(make_sampler(config, batch.targets), expected)


@pytest.mark.parametrize("group", list(Group))
def test_a_removed_group_is_absent_from_the_encoder_input(group, tiny_log):
    config = VARIANTS[f"without-{group.value}"].config(Config(), seed=0)
    tasks = TaskSet(config.tasks, config.sources)
    layout = FeatureEncoder(config.features, config.sources, tasks.labels).fit(tiny_log).layout_
    assert group.value not in layout.groups.values()
    assert len(set(layout.groups.values())) == 3


def test_seed_reaches_the_training_config():
    assert VARIANTS["loss-pcgrad"].config(Config(), seed=4).train.seed == 4
    assert VARIANTS["loss-pcgrad"].config(Config(), seed=4).loss.method == "pcgrad"


def test_cold_ad_history_slice_selects_ads_of_shows_promoted_but_rarely_advertised(tiny_log):
    from unitarget.data.split import split_newest_days

    split = split_newest_days(tiny_log, 5, purpose="test")
    train_rows, test_rows = split.older, split.newest
    mask = cold_ad_history_mask(train_rows, test_rows)
    sources = test_rows.column("source").to_numpy(zero_copy_only=False)
    assert mask.any() and (sources[mask] == "ads").all()


def test_study_writes_tables_charts_and_the_learning_curve(tiny_log, tmp_path, fast_config):
    from unitarget.data.split import split_newest_days
    from unitarget.reports.ablation import write_ablation_report
    from unitarget.reports.new_objective import new_objective_section
    from unitarget.studies.ablation import run_ablation
    from unitarget.studies.new_objective import run_new_objective_study

    config = fast_config.model_copy(update={"train": fast_config.train.model_copy(update={"max_epochs": 1})})
    split = split_newest_days(tiny_log, 4, purpose="test")
    train_rows, test_rows = split.older, split.newest
    chosen = [VARIANTS[n] for n in ("promo-baseline", "unified", "ads-stream-only")]
    runs = run_ablation(train_rows, test_rows, tmp_path, config, variants=chosen, seeds=[0, 1])
    text = write_ablation_report(runs, tmp_path, heading="# test")
    assert "± " in text and "Promo + Ads 5-task MTL" in text
    for name in ("ablation.png", "ablation_tiers.png", "ablation.csv"):
        assert (tmp_path / name).stat().st_size > 0
    curve = run_new_objective_study(train_rows, test_rows, tmp_path / "curve", config, fractions=(0.5, 1.0))
    methods = {p.method for p in curve.points}
    assert methods == {"zero-shot", "fine-tune, frozen encoder", "fine-tune, all layers", "from scratch"}
    assert set(curve.old_heads_after) == {"promotions_stream", "ads_stream"}
    assert "learning_curve.png" in new_objective_section(curve, tmp_path)


def test_a_run_with_the_identical_configuration_is_reused_and_a_different_one_is_not(tiny_log, tmp_path,
                                                                                      fast_config):
    from unitarget.data.split import split_newest_days
    from unitarget.pipeline import train
    from unitarget.studies.ablation import run_ablation

    split = split_newest_days(tiny_log, 4, purpose="test")
    train_rows, test_rows = split.older, split.newest
    unified = VARIANTS["unified"]
    train(train_rows, tmp_path / "main-unified", unified.config(fast_config, seed=0))
    messages: list[str] = []
    runs = run_ablation(train_rows, test_rows, tmp_path / "study", fast_config, variants=[unified], seeds=[0, 1],
                        log=messages.append, trained_runs={("unified", 0): tmp_path / "main-unified",
                                                           ("unified", 1): tmp_path / "main-unified"})
    assert "reuses" in messages[0] and "training unified" in messages[1]  # seed 1's config differs
    assert not (tmp_path / "study" / "runs" / "unified-seed0").exists()
    assert (tmp_path / "study" / "runs" / "unified-seed1").is_dir()
    retrained = run_ablation(train_rows, test_rows, tmp_path / "again", fast_config, variants=[unified], seeds=[0])
    assert retrained[0].result.ap("ads_stream") == runs[0].result.ap("ads_stream")  # same weights either way
    messages.clear()  # a study run again in its own directory (resumed) trains nothing
    run_ablation(train_rows, test_rows, tmp_path / "study", fast_config, variants=[unified], seeds=[1],
                 log=messages.append)
    assert messages == [f"seed 1: unified reuses the identical run {tmp_path / 'study' / 'runs' / 'unified-seed1'}"]
    messages.clear()  # other training rows: retrained, not reused
    run_ablation(train_rows.slice(1_000), test_rows, tmp_path / "study", fast_config, variants=[unified],
                 seeds=[1], log=messages.append)
    assert messages == ["seed 1: training unified"]


class _Result:
    """An EvaluationResult stand-in: Promotions AP and Ads AP only."""

    targets = ("promotions_stream", "ads_stream")

    def __init__(self, promotions: float, ads: float) -> None:
        self.values = {"promotions_stream": promotions, "ads_stream": ads}

    def ap(self, target: str, segment: str = "all") -> float:
        return self.values[target]


def _runs(aps: dict[str, list[tuple[float, float]]]):
    from unitarget.studies.ablation import AblationRun

    return [AblationRun(VARIANTS[name], seed, _Result(*pair), float("nan"), 0.0)
            for name, pairs in aps.items() for seed, pair in enumerate(pairs)]


def test_claims_are_judged_on_paired_seed_differences():
    from unitarget.reports.ablation import claim_lines
    from unitarget.studies.ablation import paired_change

    runs = _runs({
        "unified": [(0.100, 0.040), (0.110, 0.042), (0.090, 0.038)],
        "no-mask": [(0.095, 0.040), (0.105, 0.042), (0.085, 0.038)],   # always 0.005 lower: separable
        "natural-mix": [(0.101, 0.041), (0.109, 0.043), (0.092, 0.037)],  # noise around unified
        "loss-pcgrad": [(0.104, 0.040), (0.114, 0.042), (0.094, 0.038)],  # always better on promotions
        "loss-gradnorm": [(0.100, 0.040), (0.110, 0.042), (0.090, 0.038)],
        "loss-uncertainty": [(0.100, 0.040), (0.110, 0.042), (0.090, 0.038)],
    })
    change = paired_change(runs, "no-mask", "unified", "promotions_stream")
    assert change.seeds == 3 and abs(change.mean + 0.005) < 1e-12 and change.separable
    assert abs(change.relative + 0.05) < 1e-9  # −0.005 against a mean of 0.100
    assert not paired_change(runs, "natural-mix", "unified", "promotions_stream").separable
    text = claim_lines(runs)
    mask_line = next(line for line in text.splitlines() if "directional mask" in line)
    assert "−5.0%" in mask_line and "**agrees**" in mask_line
    assert "not separable" in next(line for line in text.splitlines() if "natural mix" in line)
    assert "pcgrad: Promotions AP +4.0%" in text and "better than static weights on promotions" in text
    assert "gradnorm: Promotions AP 0.0%" in text


def test_a_claim_measured_the_other_way_is_a_disagreement():
    from unitarget.reports.ablation import claim_lines

    runs = _runs({"unified": [(0.100, 0.040), (0.110, 0.042)], "natural-mix": [(0.120, 0.050), (0.131, 0.052)]})
    assert "**disagrees**" in next(line for line in claim_lines(runs).splitlines() if "natural mix" in line)


def test_a_setup_from_the_command_line_is_a_preset_with_dotted_overrides():
    from unitarget.config import merge
    from unitarget.errors import ConfigError
    from unitarget.presets import apply_preset, parse_variant

    variant = parse_variant('unified:train.patience=3,optim.lr=0.002,features.drop_groups=["creative"]')
    assert variant.preset == "unified" and "/" not in variant.name and ":" not in variant.name
    config = variant.config(Config(), seed=4)
    assert (config.train.patience, config.optim.lr, config.train.seed) == (3, 0.002, 4)
    assert config.features.drop_groups == (Group.CREATIVE,)
    assert parse_variant("logreg").config(Config(), 0) == apply_preset(merge(Config(), {"train": {"seed": 0}}),
                                                                       "logreg")
    for bad in ("nope", "unified:train.patience"):
        with pytest.raises(ConfigError):
            parse_variant(bad)
    with pytest.raises(ConfigError, match="no_such_option"):
        parse_variant("unified:train.no_such_option=0.25").setup(Config())
