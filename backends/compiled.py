"""Fast inference for a fitted TF-IDF (and word vectors) + linear pipeline, with the same numbers as scikit-learn.

scikit-learn's TfidfVectorizer.transform spends most of /predict in per-token Python
and its estimators validate inputs on every call; for serving, the fitted state (vocabulary,
idf, coefficients) is all that is needed. Anything this cannot reproduce exactly falls
back to the pipeline itself (`compile_pipeline` returns None).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline

from backends.features import MeanWordVectors


@dataclass
class CompiledTfidf:
    """TfidfVectorizer.transform for word n-grams (n <= 2), lowercase, default analyzer."""

    vocabulary: dict[str, int]
    pattern: re.Pattern
    lowercase: bool
    bigrams: bool
    unigrams: bool
    idf: np.ndarray
    sublinear_tf: bool
    norm: str | None
    dtype: Any

    @classmethod
    def from_fitted(cls, vectorizer: TfidfVectorizer) -> CompiledTfidf | None:
        v = vectorizer
        low, high = v.ngram_range
        simple = (
            v.analyzer == "word" and v.preprocessor is None and v.tokenizer is None and v.strip_accents is None
            and v.stop_words is None and (low, high) in {(1, 1), (1, 2), (2, 2)} and v.use_idf
            and v.norm in {"l2", "l1", None} and v.binary is False and v.input == "content"
            and getattr(v, "decode_error", "strict") == "strict"
        )
        if not simple:
            return None
        return cls(
            vocabulary=v.vocabulary_, pattern=re.compile(v.token_pattern), lowercase=v.lowercase,
            bigrams=high == 2, unigrams=low == 1, idf=np.asarray(v.idf_, dtype=np.float64),
            sublinear_tf=v.sublinear_tf, norm=v.norm, dtype=v.dtype,
        )

    def weights(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-zero TF-IDF entries as (rows, term ids, values), sorted by row then term."""
        # All n-grams of the batch in one list, looked up in one C-level pass: per-token
        # Python code is what makes scikit-learn's transform slow.
        findall, lowercase = self.pattern.findall, self.lowercase
        grams: list[str] = []
        counts = np.empty(len(texts), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = findall(text.lower() if lowercase else text)
            before = len(grams)
            if self.unigrams:
                grams.extend(tokens)
            if self.bigrams:
                grams.extend(map(" ".join, zip(tokens, tokens[1:])))
            counts[row] = len(grams) - before
        ids = np.fromiter(map(self.vocabulary.get, grams, repeat(-1)), dtype=np.int64, count=len(grams))
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
        known = ids >= 0
        # (row, term) pairs with their counts: what CSR's sum_duplicates would give.
        keys, values = np.unique(rows[known] * len(self.idf) + ids[known], return_counts=True)
        rows, terms = np.divmod(keys, len(self.idf))
        data = values.astype(np.float64)
        if self.sublinear_tf:
            np.log(data, out=data)
            data += 1.0
        data *= self.idf[terms]
        if self.norm is not None:
            # astype: without a known word, bincount of nothing is an integer array.
            norms = np.bincount(rows, weights=data * data if self.norm == "l2" else np.abs(data),
                                minlength=len(texts)).astype(np.float64, copy=False)
            if self.norm == "l2":
                np.sqrt(norms, out=norms)
            norms[norms == 0] = 1.0
            data /= norms[rows]
        return rows, terms, data

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        rows, terms, data = self.weights(texts)
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(texts)), out=indptr[1:])
        return sp.csr_matrix((data.astype(self.dtype), terms, indptr), shape=(len(texts), len(self.idf)))


@dataclass
class CompiledLinear:
    """predict_proba of a fitted LogisticRegression, or of a one-vs-rest set of them."""

    coef: np.ndarray  # (n_features, n_outputs)
    intercept: np.ndarray  # (n_outputs,)
    kind: str  # "binary", "multinomial" or "ovr_multilabel"

    @classmethod
    def from_fitted(cls, classifier: Any) -> CompiledLinear | None:
        if isinstance(classifier, LogisticRegression):
            coef, intercept = classifier.coef_, classifier.intercept_
            kind = "binary" if coef.shape[0] == 1 and len(classifier.classes_) == 2 else "multinomial"
            if kind == "multinomial" and coef.shape[0] != len(classifier.classes_):
                return None
            return cls(coef=np.ascontiguousarray(coef.T), intercept=np.asarray(intercept, dtype=np.float64), kind=kind)
        if isinstance(classifier, OneVsRestClassifier) and getattr(classifier, "multilabel_", False):
            estimators = classifier.estimators_
            # Labels always or never present get a constant predictor: keep the exact sklearn path.
            if not all(isinstance(e, LogisticRegression) and e.coef_.shape[0] == 1 for e in estimators):
                return None
            coef = np.vstack([e.coef_ for e in estimators]).T
            intercept = np.concatenate([e.intercept_ for e in estimators])
            return cls(coef=np.ascontiguousarray(coef), intercept=intercept, kind="ovr_multilabel")
        return None

    def predict_proba(self, features: sp.csr_matrix) -> np.ndarray:
        return self._link(np.asarray(features @ self.coef) + self.intercept)

    def scores_from_weights(self, n: int, rows: np.ndarray, terms: np.ndarray, data: np.ndarray) -> np.ndarray:
        """The linear scores (without intercept) of the CSR matrix these entries make, without building it."""
        contributions = self.coef[terms] * data[:, None]
        scores = np.empty((n, self.coef.shape[1]), dtype=np.float64)
        for j in range(self.coef.shape[1]):
            scores[:, j] = np.bincount(rows, weights=contributions[:, j], minlength=n)
        return scores

    def predict_proba_from_weights(self, n: int, rows: np.ndarray, terms: np.ndarray, data: np.ndarray) -> np.ndarray:
        """The same as predict_proba on the CSR matrix these entries make, without building it."""
        return self._link(self.scores_from_weights(n, rows, terms, data) + self.intercept)

    def _link(self, scores: np.ndarray) -> np.ndarray:
        if self.kind == "binary":
            positive = expit(scores[:, 0])
            return np.column_stack([1.0 - positive, positive])
        if self.kind == "multinomial":
            return softmax(scores, axis=1)
        return expit(scores)


@dataclass
class CompiledPipeline:
    """TF-IDF columns first (if any), then a block of mean word vectors (if any), then the linear head."""

    tfidf: CompiledTfidf | None
    head: CompiledLinear
    vectors: MeanWordVectors | None = None

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if self.vectors is None:
            return self.tfidf.transform(texts)
        dense = sp.csr_matrix(self.vectors.transform(texts))
        return dense if self.tfidf is None else sp.hstack([self.tfidf.transform(texts), dense], format="csr")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.vectors is None:
            return self.head.predict_proba_from_weights(len(texts), *self.tfidf.weights(texts))
        scores = np.zeros((len(texts), self.head.coef.shape[1]), dtype=np.float64)
        offset = 0
        if self.tfidf is not None:
            scores += self.head.scores_from_weights(len(texts), *self.tfidf.weights(texts))
            offset = len(self.tfidf.idf)
        scores += self.vectors.transform(texts) @ self.head.coef[offset:]
        return self.head._link(scores + self.head.intercept)


def compile_pipeline(pipeline: Pipeline) -> CompiledPipeline | None:
    """A fast equivalent of `pipeline.predict_proba`, or None if the pipeline is not one this reproduces.

    Reproduced: TF-IDF + linear, and a FeatureUnion of TF-IDF and/or mean word vectors + linear.
    """
    steps = getattr(pipeline, "named_steps", {})
    head = CompiledLinear.from_fitted(steps.get("clf"))
    if head is None:
        return None
    if set(steps) == {"tfidf", "clf"}:
        tfidf = CompiledTfidf.from_fitted(steps["tfidf"])
        return None if tfidf is None else CompiledPipeline(tfidf=tfidf, head=head)
    union = steps.get("features")
    if set(steps) != {"features", "clf"} or not isinstance(union, FeatureUnion) or union.transformer_weights:
        return None
    names = [name for name, _ in union.transformer_list]
    parts = dict(union.transformer_list)
    if names not in (["tfidf", "vectors"], ["vectors"]) or not isinstance(parts["vectors"], MeanWordVectors):
        return None
    tfidf = CompiledTfidf.from_fitted(parts["tfidf"]) if "tfidf" in parts else None
    if "tfidf" in parts and tfidf is None:
        return None
    return CompiledPipeline(tfidf=tfidf, head=head, vectors=parts["vectors"])
