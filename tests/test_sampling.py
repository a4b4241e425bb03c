from dataclasses import replace

import pytest
import torch

from tests.helpers import tiny_batch, tiny_layout
from unitarget.config import DEFAULT_TASKS, Config, merge
from unitarget.training.batches import InMemoryRows, source_weights
from unitarget.training.sampling import NaturalSampler, SourceBalancedSampler, apportion
from unitarget.training.tasks import TaskSet, labels_of


def _sources(n_ads=8000, n_promos=2000):
    return torch.cat([torch.zeros(n_ads, dtype=torch.int64), torch.ones(n_promos, dtype=torch.int64)])


def test_balanced_batches_hold_half_of_each_source_despite_a_4_to_1_log():
    source = _sources()
    sampler = SourceBalancedSampler(source, 256, {0: 0.5, 1: 0.5}, seed=1)
    for index in sampler.epoch(0):
        assert len(index) == 256
        assert int((source[index] == 1).sum()) == 128


def test_balanced_ratio_is_configurable():
    source = _sources()
    sampler = SourceBalancedSampler(source, 100, {0: 0.7, 1: 0.3}, seed=1)
    counts = [int((source[i] == 1).sum()) for i in sampler.epoch(0)]
    assert set(counts) == {30}


def test_natural_mix_follows_the_volumes():
    source = _sources()
    sampler = NaturalSampler(len(source), 1000, seed=1)
    share = torch.cat([source[i] for i in sampler.epoch(0)]).float().mean()
    assert abs(float(share) - 0.2) < 0.01


def test_each_epoch_is_reproducible_and_epochs_differ():
    source = _sources()
    a = SourceBalancedSampler(source, 256, {0: 0.5, 1: 0.5}, seed=3)
    b = SourceBalancedSampler(source, 256, {0: 0.5, 1: 0.5}, seed=3)
    first = torch.cat(list(a.epoch(0)))
    assert torch.equal(first, torch.cat(list(b.epoch(0))))
    assert not torch.equal(first, torch.cat(list(a.epoch(1))))


def test_minority_source_is_cycled_without_repeats_within_a_pass():
    source = _sources(n_ads=900, n_promos=100)
    sampler = SourceBalancedSampler(source, 100, {0: 0.5, 1: 0.5}, seed=0)
    promos = torch.cat([i[source[i] == 1] for i in sampler.epoch(0)])
    assert len(promos) == 500
    assert len(torch.unique(promos[:100])) == 100  # first pass is a permutation


def test_apportion_sums_to_batch_size():
    assert sum(apportion(7, {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}).values()) == 7


# ------------------------------------------------------------------------------------------------
# sampling.mode = "reweight": a natural pass, each row's loss weighted by its source
# ------------------------------------------------------------------------------------------------

def _reweight_config(ratios):
    return merge(Config(), {"sampling": {"mode": "reweight", "ratios": ratios}, "train": {"batch_size": 64, "seed": 4}})


def test_reweight_draws_each_row_at_most_once_an_epoch_and_weights_give_the_configured_shares():
    layout = tiny_layout()
    sources = [0] * 600 + [1] * 150  # ads 4 : promotions 1
    rows = tiny_batch(layout, sources, n_labels=len(labels_of(DEFAULT_TASKS)), seed=2)
    rows.features.dense[:, 0] = torch.arange(len(sources), dtype=torch.float32)  # each row's number
    config = _reweight_config({"ads": 0.5, "promotions": 0.5})
    stream = InMemoryRows(rows).batches(config)
    batches = list(stream.epoch(0))
    drawn = torch.cat([b.features.dense[:, 0] for b in batches])
    assert len(batches) == 750 // 64 and len(torch.unique(drawn)) == len(drawn)  # no row twice
    weights = torch.cat([b.targets.weight for b in batches])
    source = torch.cat([b.targets.source for b in batches])
    # w_s = c_s / p_s: 0.5 / 0.8 for ads, 0.5 / 0.2 for promotions; mean 1 over the rows
    assert set(weights[source == 0].tolist()) == {0.5 / (600 / 750)}
    assert set(weights[source == 1].tolist()) == {0.5 / (150 / 750)}
    everything = InMemoryRows(rows).batches(merge(config, {"train": {"batch_size": 750}}))
    whole = next(everything.epoch(0)).targets
    assert float(whole.weight.mean()) == pytest.approx(1.0)
    for s in (0, 1):  # each source's share of the summed weight is its configured share
        assert float(whole.weight[whole.source == s].sum() / whole.weight.sum()) == pytest.approx(0.5)


def test_the_weighted_loss_is_the_hand_computed_weighted_mean_over_the_batch():
    layout = tiny_layout()
    config = _reweight_config({"ads": 0.7, "promotions": 0.3})
    tasks = TaskSet(config.tasks, config.sources)
    rows = tiny_batch(layout, [0] * 300 + [1] * 100, n_labels=len(tasks.labels), seed=5)
    batch = next(InMemoryRows(rows).batches(config).epoch(0))
    logits = torch.randn(len(batch), len(tasks), generator=torch.Generator().manual_seed(1))
    t = batch.targets
    w = {0: 0.7 / 0.75, 1: 0.3 / 0.25}
    expected = []
    for k, spec in enumerate(config.tasks):
        y = t.labels[:, tasks.labels.index(spec.label)]
        total = 0.0
        for x in range(len(batch)):
            source = config.sources[int(t.source[x])]
            if source in spec.sources:  # the directional mask: a promo task never learns from an ad row
                p = torch.sigmoid(logits[x, k])
                total += w[int(t.source[x])] * -float(y[x] * torch.log(p) + (1 - y[x]) * torch.log(1 - p))
        expected.append(total / len(batch))
    assert tasks.losses(logits, t).tolist() == pytest.approx(expected, rel=1e-5)
    unweighted = tasks.losses(logits, replace(t, weight=None))
    assert not torch.allclose(unweighted, tasks.losses(logits, t))


def test_reweight_is_a_function_of_seed_and_epoch_and_a_later_start_skips_the_done_batches():
    layout = tiny_layout()
    rows = tiny_batch(layout, [0] * 500 + [1] * 100, seed=1)
    config = _reweight_config({"ads": 0.5, "promotions": 0.5})
    whole = list(InMemoryRows(rows).batches(config).epoch(3))
    later = list(InMemoryRows(rows).batches(config).epoch(3, start=4))
    assert all(torch.equal(a.features.ids, b.features.ids) and torch.equal(a.targets.weight, b.targets.weight)
               for a, b in zip(whole[4:], later))
    assert len(later) == len(whole) - 4


def test_a_source_without_a_ratio_weighs_nothing_and_no_positive_ratio_is_an_error():
    config = _reweight_config({"ads": 1.0, "promotions": 0.0})
    assert source_weights(config, {0: 300, 1: 100}) == {0: 400 / 300, 1: 0.0}
    with pytest.raises(ValueError, match="positive share"):
        source_weights(config, {1: 100})


def test_reweight_without_balancing_is_the_plain_natural_mix():
    config = merge(Config(), {"sampling": {"mode": "reweight", "balanced": False}, "train": {"batch_size": 64}})
    rows = tiny_batch(tiny_layout(), [0] * 300 + [1] * 100, n_labels=len(labels_of(DEFAULT_TASKS)), seed=2)
    stream = InMemoryRows(rows).batches(config)
    assert isinstance(stream.sampler, NaturalSampler)  # no source weights: every row's loss counts once
    assert all(b.targets.weight is None for b in stream.epoch(0))
