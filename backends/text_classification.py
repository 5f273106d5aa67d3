"""Text classification backend: `<Choices>` on a `<Text>`, single choice or multi-label.

Turns tasks into texts, annotations into targets, fits TF-IDF + logistic regression,
and turns class probabilities back into Label Studio `choices` results.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion, Pipeline

from backends.compiled import CompiledPipeline, compile_pipeline
from backends.features import FEATURE_SETS, MeanWordVectors
from backends.label_config import LabelConfig, LabelConfigError, OutputTag

# Object tags whose content is text a TF-IDF model can read.
TEXT_OBJECTS = frozenset({"Text", "HyperText", "Markdown"})
# A multi-label choice is predicted when its probability reaches this.
MULTILABEL_THRESHOLD = 0.5
# Where a pipeline carries its committee members (fitted pipelines) through MLflow.
COMMITTEE_ATTRIBUTE = "alo_committee_"
# Dimensions of `TextClassifier.embed`, the vectors diversity-aware strategies compare.
EMBEDDING_DIMENSIONS = 64
# Texts behind URLs (Label Studio uploads, local files, cloud storage) fetched at once.
URL_FETCH_THREADS = 8
# The pretrained vectors of the "glove" feature sets, and the length of their block.
WORD_VECTORS, WORD_VECTOR_WEIGHT = "glove-6b-50d", 2.0

# TF-IDF keeps the most frequent MAX_TERMS words and word pairs: the solver's time per step grows
# with them (a 10k-text AG News project has 180k; 100k gave the same held-out F1 in half the time).
MAX_TERMS = 100_000
# Above this many examples the solver stops at LARGE_FIT_TOLERANCE instead of 1e-4.
LARGE_FIT, LARGE_FIT_TOLERANCE = 2_000, 1e-3

UrlFetcher = Callable[[str, Any], str]


class TaskDataError(ValueError):
    """A task lacks the data the label config points at, or it cannot be read."""

    def __init__(self, task_id: Any, message: str):
        super().__init__(f"task {task_id}: {message}")
        self.task_id = task_id


class TrainingDataError(ValueError):
    """The annotations cannot train a model (too few, or a single class)."""


@dataclass(frozen=True)
class Example:
    """One training example: a task's text and the choice(s) an annotator made."""

    text: str
    labels: tuple[str, ...]


class TextClassificationBackend:
    """Backend for a `<Choices>` control tag that labels a text object tag."""

    name = "text_classification"

    def __init__(self, config: LabelConfig, *, control: str | None = None, features: str = "tfidf"):
        if features not in FEATURE_SETS:
            raise ValueError(f"unknown features {features!r}; known: {', '.join(FEATURE_SETS)}")
        self.features = features  # what a model fitted by this backend learns from (FEATURE_SETS)
        self.config = config
        self.control, self.object = _pick_pair(config, control)
        if not self.control.labels:
            raise LabelConfigError(f"<Choices name={self.control.name!r}> has no <Choice> children")
        self.labels: tuple[str, ...] = self.control.labels
        self.multiple: bool = self.control.multiple
        self.data_key: str = self.object.data_key  # type: ignore[assignment]  # checked in _pick_pair

    @classmethod
    def supports(cls, config: LabelConfig) -> bool:
        try:
            _pick_pair(config, None)
        except LabelConfigError:
            return False
        return True

    # --- tasks and annotations ----------------------------------------------------------------
    def task_text(self, task: Mapping[str, Any], fetch_url: UrlFetcher | None = None) -> str:
        task_id = task.get("id")
        data = task.get("data")
        if not isinstance(data, Mapping):
            raise TaskDataError(task_id, "has no 'data' object")
        if self.data_key not in data:
            keys = ", ".join(sorted(map(str, data))) or "none"
            raise TaskDataError(
                task_id,
                f"data has no key {self.data_key!r}, which <{self.object.tag} name={self.object.name!r}> "
                f"reads (keys present: {keys})",
            )
        value = data[self.data_key]
        if value is None:
            raise TaskDataError(task_id, f"data[{self.data_key!r}] is null")
        if not isinstance(value, str):
            value = str(value)
        if self.object.value_type == "url":
            if fetch_url is None:
                raise TaskDataError(task_id, "its text is a URL and no Label Studio is configured to read it")
            return fetch_url(value, task_id)
        return value

    def check_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """TaskDataError for the first task whose data this config cannot read (URLs are not fetched)."""
        for task in tasks:
            self.task_text(task, lambda url, task_id: "")

    def texts(self, tasks: Sequence[Mapping[str, Any]], fetch_url: UrlFetcher | None = None, *,
              threads: int = URL_FETCH_THREADS) -> list[str]:
        """Each task's text, in order. Texts behind URLs are fetched `threads` at a time
        (one after another, 1,000 of them took 45 s); the first failing task, in order, raises."""
        if self.object.value_type != "url" or fetch_url is None or len(tasks) < 2 or threads < 2:
            return [self.task_text(task, fetch_url) for task in tasks]
        with ThreadPoolExecutor(min(threads, len(tasks)), thread_name_prefix="fetch") as pool:
            return list(pool.map(lambda task: self.task_text(task, fetch_url), tasks))

    def annotation_labels(self, result: Sequence[Mapping[str, Any]]) -> tuple[str, ...] | None:
        """The choices an annotation result makes for our control, or None if it makes none."""
        chosen: list[str] = []
        for region in result or ():
            if region.get("from_name") != self.control.name:
                continue
            value = region.get("value") or {}
            for label in value.get("choices") or ():
                if label in self.labels and label not in chosen:
                    chosen.append(label)
        if not chosen:
            return None
        return tuple(chosen) if self.multiple else (chosen[0],)

    # --- model ----------------------------------------------------------------------------------
    def make_estimator(self, num_examples: int = 0) -> Pipeline:
        """TF-IDF, pretrained word vectors, or both side by side (as `features` says), then logistic regression.

        The vectors' block is each text's mean word vector scaled to length WORD_VECTOR_WEIGHT
        next to TF-IDF rows of length 1: measured (bench/learning_curves.py) to need the fewest
        labels on both SMS spam and AG News. Fitting `num_examples` above LARGE_FIT, the solver
        stops at a looser tolerance (bench/training_size.py: 3x faster at 10k, the same held-out F1).
        """
        tolerance = LARGE_FIT_TOLERANCE if num_examples > LARGE_FIT else 1e-4
        classifier: Any = LogisticRegression(max_iter=1000, class_weight="balanced", tol=tolerance)
        if self.multiple:
            classifier = OneVsRestClassifier(classifier)
        tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=MAX_TERMS)
        if self.features == "tfidf":
            return Pipeline([("tfidf", tfidf), ("clf", classifier)])
        parts: list[tuple[str, Any]] = [("tfidf", tfidf)] if "tfidf" in self.features.split("+") else []
        parts.append(("vectors", MeanWordVectors(WORD_VECTORS, weight=WORD_VECTOR_WEIGHT)))
        return Pipeline([("features", FeatureUnion(parts)), ("clf", classifier)])

    def targets(self, examples: Sequence[Example]) -> np.ndarray:
        if self.multiple:
            index = {label: i for i, label in enumerate(self.labels)}
            y = np.zeros((len(examples), len(self.labels)), dtype=np.int8)
            for row, example in enumerate(examples):
                for label in example.labels:
                    y[row, index[label]] = 1
            return y
        return np.array([example.labels[0] for example in examples], dtype=object)

    def check_trainable(self, examples: Sequence[Example]) -> np.ndarray:
        """The targets of `examples`, or TrainingDataError saying why they cannot train a model."""
        if len(examples) < 2:
            raise TrainingDataError(f"need at least 2 annotated tasks to train, got {len(examples)}")
        y = self.targets(examples)
        if not self.multiple and len(set(y.tolist())) < 2:
            others = ", ".join(repr(label) for label in self.labels if label != y[0])
            raise TrainingDataError(
                f"all {len(examples)} annotations choose {y[0]!r} and none {others}: "
                "need at least 2 different choices to train"
            )
        if self.multiple and not (y.any(axis=0) & (~y.astype(bool)).any(axis=0)).any():
            raise TrainingDataError("no choice is both present and absent in the annotations: nothing to learn")
        return y

    def fit(self, examples: Sequence[Example]) -> TextClassifier:
        y = self.check_trainable(examples)
        pipeline = self.make_estimator(len(examples))
        pipeline.fit([e.text for e in examples], y)
        return TextClassifier(pipeline=pipeline, labels=self.labels, multiple=self.multiple)

    def wrap(self, pipeline: Pipeline) -> TextClassifier:
        return TextClassifier(pipeline=pipeline, labels=self.labels, multiple=self.multiple)

    # --- Label Studio results ---------------------------------------------------------------
    def results(self, probabilities: np.ndarray) -> list[list[dict[str, Any]]]:
        """Label Studio `result` lists, one per row of probabilities (columns = self.labels)."""
        out: list[list[dict[str, Any]]] = []
        from_name, to_name, labels = self.control.name, self.object.name, self.labels
        if self.multiple:
            for row in probabilities:
                picked = np.flatnonzero(row >= MULTILABEL_THRESHOLD)
                if picked.size == 0:
                    out.append([])
                    continue
                out.append(
                    [
                        {
                            "from_name": from_name,
                            "to_name": to_name,
                            "type": "choices",
                            "value": {"choices": [labels[i] for i in picked]},
                            "score": float(row[picked].mean()),
                        }
                    ]
                )
            return out
        best = probabilities.argmax(axis=1)
        for row, i in zip(probabilities, best):
            out.append(
                [
                    {
                        "from_name": from_name,
                        "to_name": to_name,
                        "type": "choices",
                        "value": {"choices": [labels[i]]},
                        "score": float(row[i]),
                    }
                ]
            )
        return out


@dataclass
class TextClassifier:
    """A fitted pipeline plus what it means: probabilities in the label config's order."""

    pipeline: Pipeline
    labels: tuple[str, ...]
    multiple: bool

    def __post_init__(self) -> None:
        # Single-label pipelines know only the classes seen in training; map them onto
        # the config's full label list once, so unseen labels get probability 0.
        self._columns: np.ndarray | None = None
        self._projection = None  # fitted by `embed` on first use
        self._members: tuple[TextClassifier, ...] | None = None  # built by `committee` on first use
        self._compiled: CompiledPipeline | None = compile_pipeline(self.pipeline)
        if not self.multiple:
            position = {label: i for i, label in enumerate(self.labels)}
            classes = list(self.pipeline.classes_)
            unknown = [c for c in classes if c not in position]
            if unknown:
                raise TrainingDataError(f"the model knows labels the config lacks: {unknown}")
            self._columns = np.array([position[c] for c in classes], dtype=np.intp)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)))
        raw = self._compiled.predict_proba(texts) if self._compiled else self.pipeline.predict_proba(texts)
        if self.multiple:
            return np.asarray(raw, dtype=np.float64)
        full = np.zeros((raw.shape[0], len(self.labels)), dtype=np.float64)
        full[:, self._columns] = raw
        return full

    @property
    def committee(self) -> tuple[TextClassifier, ...]:
        """Committee members saved with the model (the cross-validation folds' models), if any.

        Training keeps them when the project's strategy is a committee strategy; they travel
        inside the logged pipeline (attribute COMMITTEE_ATTRIBUTE), so one load brings all.
        """
        members = self._members
        if members is None:
            members = tuple(TextClassifier(pipeline=p, labels=self.labels, multiple=self.multiple)
                            for p in getattr(self.pipeline, COMMITTEE_ATTRIBUTE, ()) or ())
            self._members = members
        return members

    def committee_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(members, tasks, labels): each member's probabilities, columns in the config's order."""
        return np.stack([member.predict_proba(texts) for member in self.committee])

    def with_committee(self, members: Sequence[TextClassifier]) -> TextClassifier:
        """This model carrying `members` as its committee (saved and loaded with it)."""
        setattr(self.pipeline, COMMITTEE_ATTRIBUTE, [m.pipeline for m in members])
        self._members = None
        return self

    def features(self, texts: Sequence[str]):
        """The matrix the classifier sees: TF-IDF (sparse), word vectors, or both side by side."""
        if self._compiled is not None:
            return self._compiled.transform(texts)
        return self.pipeline[:-1].transform(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A few dense dimensions per text (at most EMBEDDING_DIMENSIONS, float32), for strategies that compare tasks.

        A fixed sparse random projection of `features`: cosine distances survive it
        approximately (Johnson-Lindenstrauss), which is all a diversity term needs, at 64
        floats a task instead of a vocabulary-wide row. Fixed: the same text gets the same
        vector from every call on this model.
        """
        matrix = self.features(texts)
        if matrix.shape[1] <= EMBEDDING_DIMENSIONS:  # already a few dense dimensions (word vectors alone)
            return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix, dtype=np.float32)
        if self._projection is None:
            import scipy.sparse as sp
            from sklearn.random_projection import SparseRandomProjection

            self._projection = SparseRandomProjection(n_components=EMBEDDING_DIMENSIONS, dense_output=True,
                                                      random_state=0).fit(sp.csr_matrix((1, matrix.shape[1])))
        return np.asarray(self._projection.transform(matrix), dtype=np.float32)


def _pick_pair(config: LabelConfig, control: str | None) -> tuple[OutputTag, Any]:
    """Choose the `<Choices>` control and the text object it labels."""
    candidates = [o for o in config.outputs if o.tag == "Choices" and (control is None or o.name == control)]
    pairs = []
    for output in candidates:
        for to_name in output.to_names:
            obj = config.input(to_name)
            if obj is not None and obj.tag in TEXT_OBJECTS and obj.data_key:
                pairs.append((output, obj))
                break
    if len(pairs) > 1:  # learning one and dropping the others silently would half-use the project
        names = ", ".join(f"<Choices name={output.name!r}> on <{obj.tag} name={obj.name!r}>" for output, obj in pairs)
        raise LabelConfigError(
            f"unsupported label config: {len(pairs)} <Choices> label text ({names}) and a version learns one; "
            "keep one <Choices> per project (e.g. a project per question)")
    if pairs:
        return pairs[0]
    found = config.describe()
    if control is not None and not candidates:
        raise LabelConfigError(f"no <Choices name={control!r}> in the label config ({found})")
    raise LabelConfigError(
        "unsupported label config: no <Choices> control labels a text object "
        f"(<Text>, <HyperText> or <Markdown> with value=\"$key\"); found {found}. "
        "Supported: text classification, single choice or choice=\"multiple\"."
    )
