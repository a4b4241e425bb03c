import pytest

from unitarget.config import Config, load_config, merge
from unitarget.errors import ConfigError
from unitarget.evaluation.heads import serving_head
from unitarget.presets import PRESETS, apply_preset


def test_defaults_are_the_papers_unified_model():
    config = Config()
    assert [t.name for t in config.tasks] == ["promo_stream", "ad_stream", "click", "like", "follow"]
    assert config.sampling.balanced
    assert config.training_sources == ("ads", "promotions")


def test_toml_and_yaml_load(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nseed = 7\nbatch_size = 512\n")
    (tmp_path / "c.yaml").write_text("train:\n  seed: 7\n  batch_size: 512\n")
    assert load_config(tmp_path / "c.toml") == load_config(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.toml").train.seed == 7


def test_unknown_key_fails_naming_the_field(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nbatchsize = 512\n")
    with pytest.raises(ConfigError, match="train.batchsize"):
        load_config(tmp_path / "c.toml")


def test_bad_value_fails_naming_the_field(tmp_path):
    (tmp_path / "c.yaml").write_text("optim:\n  lr: -1\n")
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(tmp_path / "c.yaml")


def test_task_with_undeclared_source_is_rejected():
    with pytest.raises(ConfigError, match="undeclared sources"):
        merge(Config(), {"tasks": [{"name": "x", "label": "stream", "sources": ["radio"]}]})


def test_malformed_file_is_a_config_error(tmp_path):
    (tmp_path / "c.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_config(tmp_path / "c.toml")


@pytest.mark.parametrize(
    ("preset", "sources", "promo_task", "ads_task"),
    [
        ("promo-baseline", ("promotions",), "promo_stream", "promo_stream"),
        ("promo-stream-only", ("promotions",), "promo_stream", "promo_stream"),
        ("ads-stream-only", ("ads",), "ad_stream", "ad_stream"),
        ("ads-anc", ("ads",), "ad_stream", "ad_stream"),
        ("unified", ("ads", "promotions"), "promo_stream", "ad_stream"),
    ],
)
def test_presets_select_data_and_scoring_heads(preset, sources, promo_task, ads_task):
    config = apply_preset(Config(), preset)
    assert config.training_sources == sources
    assert serving_head(config, "stream", source="promotions") == promo_task
    assert serving_head(config, "stream", source="ads") == ads_task


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="promo-baseline"):
        apply_preset(Config(), "nope")
    assert len(PRESETS) == 7  # Table 1's five, the paper's configuration and the linear baseline


def test_paper_is_the_unified_setup_without_what_the_defaults_add():
    paper, unified = apply_preset(Config(), "paper"), apply_preset(Config(), "unified")
    assert paper.tasks == unified.tasks
    assert unified.model.wide and unified.model.dropout > 0 and unified.train.validate_every == 0.25
    assert not paper.model.wide and paper.model.dropout == 0 and paper.train.validate_every == 1.0  # epoch ends
    assert not any(paper.model.embedding_dropout.values())
    assert unified.sampling.mode == "reweight" and paper.sampling.mode == "resample"  # the paper repeats rows
    assert (unified.optim.warmup_steps, paper.optim.warmup_steps) == (50, 200)
    assert paper.model.attention.bags == () and paper.model.attention.history_loss == 0
    assert unified.model.attention.bags and unified.model.attention.history_loss > 0
    assert paper.model.encoder == unified.model.encoder
    assert paper.optim.model_copy(update={"warmup_steps": 50}) == unified.optim


def test_logreg_is_the_unified_setup_on_the_linear_model():
    logreg, unified = apply_preset(Config(), "logreg"), apply_preset(Config(), "unified")
    assert logreg.tasks == unified.tasks and logreg.model.encoder == "linear"


def test_bf16_auto_follows_the_cpu_and_explicit_values_are_kept(monkeypatch):
    import unitarget.config as config_module

    auto = merge(Config(), {"train": {"bf16": "auto"}}).train
    monkeypatch.setattr(config_module, "native_bf16", lambda: True)
    assert auto.use_bf16 is True
    monkeypatch.setattr(config_module, "native_bf16", lambda: False)
    assert auto.use_bf16 is False
    assert merge(Config(), {"train": {"bf16": True}}).train.use_bf16 is True
    assert Config().train.use_bf16 is False
