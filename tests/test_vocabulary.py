import numpy as np
import pyarrow as pa

from unitarget.data.vocabulary import OOV, HashedVocabulary, Vocabulary, vocabulary_from_dict


def test_min_count_and_unknown_ids_go_to_the_oov_row():
    vocab = Vocabulary(min_count=2).fit(pa.array(["a", "a", "b", "c", "c", None]))
    assert vocab.size == 3  # OOV + a + c
    ids = vocab.transform(pa.array(["a", "b", "c", "zzz", None]))
    assert ids[1] == OOV and ids[3] == OOV and ids[4] == OOV
    assert ids[0] != ids[2] and min(ids[0], ids[2]) >= 1


def test_vocabulary_does_not_depend_on_row_order_and_round_trips():
    a = Vocabulary().fit(pa.array(["x", "y", "z"]))
    b = Vocabulary().fit(pa.array(["z", "x", "y"]))
    probe = pa.array(["y", "z", "x"])
    assert np.array_equal(a.transform(probe), b.transform(probe))
    c = vocabulary_from_dict(a.to_dict())
    assert np.array_equal(a.transform(probe), c.transform(probe))


def test_dictionary_columns_encode_like_strings():
    vocab = Vocabulary().fit(pa.array(["a", "b"]))
    plain = vocab.transform(pa.array(["b", "a"]))
    dictionary = vocab.transform(pa.array(["b", "a"]).dictionary_encode())
    assert np.array_equal(plain, dictionary)


def test_hashing_is_stable_and_bounded():
    vocab = HashedVocabulary(buckets=16)
    values = pa.chunked_array([pa.array([f"id{i}" for i in range(1000)]), pa.array(["id1", None])])
    ids = vocab.transform(values)
    assert ids.min() >= 0 and ids.max() <= 16 and ids[-1] == OOV
    assert ids[1] == ids[1000]  # same id, same bucket, across chunks
    assert np.array_equal(ids, HashedVocabulary(16).transform(values))


def test_python_lookup_maps_values_as_the_arrow_transform_does():
    """``lookup`` (request path) and ``transform`` (log path) share one OOV rule, saved or not."""
    values = ["a", "b", "c", "zzz", None, "a", ""]
    fitted = [Vocabulary(min_count=2).fit(pa.array(["a", "a", "b", "c", "c", None])), HashedVocabulary(7)]
    for vocab in fitted + [vocabulary_from_dict(v.to_dict()) for v in fitted]:
        assert vocab.lookup(values).tolist() == vocab.transform(pa.array(values, pa.string())).tolist()
        assert vocab.lookup([]).shape == (0,)
