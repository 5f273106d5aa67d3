"""The compiled inference path gives scikit-learn's numbers, on real texts and edge cases."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from backends.compiled import compile_pipeline
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
