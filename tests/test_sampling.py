import torch

from unitarget.training.sampling import NaturalSampler, SourceBalancedSampler, apportion


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
