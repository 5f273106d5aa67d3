"""Pretrained word vectors from an installed package: shared read-only, defined for every text, fast to serve."""
from __future__ import annotations

import socket

import numpy as np
import pytest

from backends import Example, backend_for
from backends.compiled import compile_pipeline
from backends.features import FEATURE_SETS, MeanWordVectors, WordVectors, mean_vectors, word_key
from tests.conftest import SMS_CONFIG, sms_rows

MULTI_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="topics" toName="text" choice="multiple">'
    '<Choice value="money"/><Choice value="call"/><Choice value="meet"/></Choices></View>'
)


@pytest.fixture(scope="module")
def glove(tmp_path_factory):
    from backends import features

    features.set_cache_dir(tmp_path_factory.mktemp("features"))
    features.WordVectors._loaded.clear()  # a fresh process's view: build the index here
    return WordVectors.get("glove-6b-50d")


def test_the_vectors_load_from_the_installed_package_without_the_network(tmp_path, monkeypatch):
    from backends import features

    def refuse(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    features.set_cache_dir(tmp_path)
    monkeypatch.setattr(features.WordVectors, "_loaded", {})
    vectors = WordVectors.get("glove-6b-50d")
    assert vectors.matrix.shape == (400_000, 50) and isinstance(vectors.matrix, np.memmap)
    assert not vectors.matrix.flags.writeable  # read-only, shared through the page cache
    # The derived index is built once, under the cache folder, and memory-mapped too.
    keys = tmp_path / "glove-6b-50d" / "keys.npy"
    assert keys.exists() and isinstance(np.load(keys, mmap_mode="r"), np.memmap)
    assert WordVectors.get("glove-6b-50d") is vectors  # once per process


def test_known_words_find_their_row_and_unknown_ones_do_not(glove):
    rows = glove.rows(["the", "cat", "zzqxjw-not-a-word", "."])
    assert rows[0] == 0 and rows[1] > 0 and rows[2] == -1  # "the" is GloVe's first word
    assert np.allclose(glove.matrix[rows[1]], glove.matrix[glove.rows(["cat"])[0]])
    assert word_key("cat") == word_key("cat") and word_key("cat") != word_key("cats")


def test_every_text_gets_a_defined_vector_and_texts_without_known_words_get_zeros(glove):
    out = mean_vectors(glove, ["", "😀 🎉", "12345", "the cat sat on the mat", "Der Hund bellt"], weight=2.0)
    assert out.shape == (5, 50) and np.isfinite(out).all()
    assert not out[0].any() and not out[1].any()
    assert np.linalg.norm(out[3]) == pytest.approx(2.0)
    cat = mean_vectors(glove, ["the cat sat on the mat"])[0]
    expected = np.asarray(glove.matrix[glove.rows("the cat sat on the mat".split())], dtype=np.float64).sum(axis=0)
    assert np.allclose(cat, expected / np.linalg.norm(expected))
    # Case and punctuation do not change a text's vector; each text is its own, whatever its batch.
    assert np.allclose(mean_vectors(glove, ["The CAT, sat on the mat!"])[0], cat)
    batch = mean_vectors(glove, ["a dog", "the cat sat on the mat", "a dog"])
    assert np.allclose(batch[1], cat) and np.allclose(batch[0], batch[2])


def test_the_transformer_pickles_without_the_vectors(glove):
    import pickle

    transformer = MeanWordVectors(weight=2.0).fit(["x"])
    assert len(pickle.dumps(transformer)) < 1000  # a name and a weight, not 80 MB
    assert transformer.transform(["the cat"]).shape == (1, 50)


@pytest.mark.parametrize("features", ["tfidf+glove", "glove"])
@pytest.mark.parametrize("config", [SMS_CONFIG, MULTI_CONFIG], ids=["single", "multi"])
def test_compiled_inference_matches_scikit_learn(glove, features, config):
    backend = backend_for(config, features=features)
    rows = sms_rows(300)
    if backend.multiple:
        labels = [("money",) if label == "spam" else ("call", "meet") if i % 3 else ("call",)
                  for i, (label, _) in enumerate(rows)]
        examples = [Example(text, chosen) for (_, text), chosen in zip(rows, labels)]
    else:
        examples = [Example(text, (label,)) for label, text in rows]
    model = backend.fit(examples)
    compiled = compile_pipeline(model.pipeline)
    assert compiled is not None
    texts = [text for _, text in sms_rows(400)[300:]] + ["", "😀", "zzqxjw"]
    assert np.allclose(compiled.predict_proba(texts), model.pipeline.predict_proba(texts), atol=1e-9)
    reference = model.pipeline[:-1].transform(texts)
    reference = reference.toarray() if hasattr(reference, "toarray") else reference
    assert np.allclose(compiled.transform(texts).toarray(), reference)
    assert model.embed(texts).shape == (len(texts), 50 if features == "glove" else 64)


def test_a_backend_names_the_feature_sets_it_knows():
    assert set(FEATURE_SETS) == {"tfidf", "glove", "tfidf+glove"}
    with pytest.raises(ValueError, match="tfidf, glove, tfidf\\+glove"):
        backend_for(SMS_CONFIG, features="bert")
    assert [name for name, _ in backend_for(SMS_CONFIG).make_estimator().steps] == ["tfidf", "clf"]  # as before


def test_a_process_remembers_the_rows_of_words_in_use_within_a_bound(glove, monkeypatch):
    from backends import features

    monkeypatch.setattr(features, "ROW_CACHE", 3)
    glove._cache.clear()
    words = ["the", "cat", "zzqxjw-not-a-word"]
    assert glove.cached_rows(words).tolist() == glove.rows(words).tolist()
    assert glove._cache == dict(zip(words, glove.rows(words).tolist()))  # unknown words are remembered too
    assert glove.cached_rows(["dog", "the"]).tolist() == glove.rows(["dog", "the"]).tolist()
    assert len(glove._cache) <= 3  # over the bound it starts afresh with the words in use
