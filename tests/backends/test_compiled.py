"""The compiled inference path gives scikit-learn's numbers, on real texts and edge cases."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from backends.compiled import compile_pipeline
from backends.label_config import parse_label_config
from backends.text_classification import Example, TextClassificationBackend
from tests.conftest import sms_rows

EDGE_TEXTS = ["", "   ", "a", "!!!", "Ünïcödé Straße STRASSE", "free free free FREE prize", "x" * 5000,
              "call 0800 now\nnew line\ttab", "unseen-word-zzz qqq"]


def fit(vectorizer, classifier, y_kind="single"):
    rows = sms_rows(300)
    texts = [t for _, t in rows]
    if y_kind == "single":
        y = [label for label, _ in rows]
    elif y_kind == "three":
        y = [label if label == "spam" else ("short" if len(t) < 40 else "ham") for label, t in rows]
    else:  # multi-label indicator matrix
        y = np.array([[label == "spam", "call" in t.lower(), len(t) < 40] for label, t in rows], dtype=int)
    return Pipeline([("tfidf", vectorizer), ("clf", classifier)]).fit(texts, y)


@pytest.mark.parametrize(
    "vectorizer",
    [
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(),
        TfidfVectorizer(ngram_range=(2, 2), norm="l1"),
        TfidfVectorizer(lowercase=False, norm=None, max_features=500),
    ],
)
@pytest.mark.parametrize("y_kind, classifier", [("single", LogisticRegression()), ("three", LogisticRegression()),
                                                ("multi", OneVsRestClassifier(LogisticRegression()))])
def test_same_features_and_probabilities_as_scikit_learn(vectorizer, y_kind, classifier):
    pipeline = fit(vectorizer, classifier, y_kind)
    compiled = compile_pipeline(pipeline)
    assert compiled is not None
    texts = [t for _, t in sms_rows()[300:]] + EDGE_TEXTS
    expected_x = pipeline.named_steps["tfidf"].transform(texts)
    got_x = compiled.transform(texts)
    assert got_x.shape == expected_x.shape
    assert abs(got_x - expected_x).max() < 1e-12
    np.testing.assert_allclose(compiled.predict_proba(texts), pipeline.predict_proba(texts), rtol=1e-9, atol=1e-12)


def test_pipelines_it_cannot_reproduce_are_left_to_scikit_learn():
    assert compile_pipeline(fit(TfidfVectorizer(analyzer="char"), LogisticRegression())) is None
    assert compile_pipeline(fit(TfidfVectorizer(stop_words="english"), LogisticRegression())) is None
    assert compile_pipeline(fit(TfidfVectorizer(ngram_range=(1, 3)), LogisticRegression())) is None


# A batch in which no text has a word the model knows: an empty text, emoji, digits only,
# another script. Alone in a batch (no known word anywhere) they once made the compiled
# path fail (an integer array met np.sqrt(out=float)), a 500 on /predict.
UNKNOWN_ONLY = ["", "😀🎉", "4815162342", "日本語のテキスト", "   \n\t", "zzqxj-unseen"]


@pytest.mark.parametrize("features", ["tfidf", "glove", "tfidf+glove"])
@pytest.mark.parametrize("multiple", [False, True])
def test_a_batch_without_one_known_word_gets_scikit_learns_probabilities(features, multiple):
    choice = ' choice="multiple"' if multiple else ""
    config = parse_label_config(f'<View><Text name="text" value="$text"/><Choices name="label" toName="text"{choice}>'
                                '<Choice value="ham"/><Choice value="spam"/></Choices></View>')
    backend = TextClassificationBackend(config, features=features)
    examples = [Example(text=text, labels=(label,)) for label, text in sms_rows(200)]
    pipeline = backend.make_estimator().fit([e.text for e in examples], backend.targets(examples))
    compiled = compile_pipeline(pipeline)
    assert compiled is not None
    for batch in (UNKNOWN_ONLY, UNKNOWN_ONLY[:1], ["4815162342"]):
        got = compiled.predict_proba(batch)
        assert np.isfinite(got).all() and got.shape == (len(batch), 2)
        np.testing.assert_allclose(got, pipeline.predict_proba(batch), rtol=1e-9, atol=1e-12)
        assert compiled.transform(batch).shape[0] == len(batch)
