"""Unit tests for the text classification backend on real SMS texts."""
from __future__ import annotations

import numpy as np
import pytest

from backends import Example, TaskDataError, TrainingDataError, backend_for
from tests.conftest import SMS_CONFIG, sms_rows

MULTI_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="tags" toName="text" choice="multiple">'
    '<Choice value="money"/><Choice value="call"/><Choice value="love"/></Choices></View>'
)


@pytest.fixture(scope="module")
def sms_backend():
    return backend_for(SMS_CONFIG)


@pytest.fixture(scope="module")
def sms_model(sms_backend):
    return sms_backend.fit([Example(text=t, labels=(l,)) for l, t in sms_rows(400)])


def test_single_label_model_separates_spam_from_ham(sms_backend, sms_model):
    held_out = sms_rows()[400:]
    proba = sms_model.predict_proba([t for _, t in held_out])
    assert proba.shape == (len(held_out), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    predicted = [sms_backend.labels[i] for i in proba.argmax(axis=1)]
    accuracy = np.mean([p == l for p, (l, _) in zip(predicted, held_out)])
    assert accuracy > 0.9


def test_results_are_label_studio_choices(sms_backend):
    results = sms_backend.results(np.array([[0.2, 0.8], [0.9, 0.1]]))
    assert results == [
        [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["spam"]}, "score": 0.8}],
        [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["ham"]}, "score": 0.9}],
    ]


def test_labels_never_annotated_get_probability_zero_in_config_order():
    backend = backend_for(
        '<View><Text name="t" value="$t"/><Choices name="c" toName="t">'
        '<Choice value="x"/><Choice value="y"/><Choice value="z"/></Choices></View>'
    )
    model = backend.fit([Example("alpha beta", ("z",)), Example("gamma delta", ("x",))] * 3)
    proba = model.predict_proba(["alpha beta"])
    assert proba.shape == (1, 3) and proba[0, 1] == 0.0 and proba[0, 2] > proba[0, 0]


def test_multi_label_model_and_results():
    backend = backend_for(MULTI_CONFIG)
    assert backend.multiple
    examples = [
        Example("win cash prize money now", ("money",)),
        Example("call me back please", ("call",)),
        Example("call now to claim your money", ("money", "call")),
        Example("i love you darling", ("love",)),
        Example("love you, call me tonight", ("love", "call")),
    ] * 4
    model = backend.fit(examples)
    proba = model.predict_proba(["call me for money", "love love love"])
    assert proba.shape == (2, 3) and ((proba >= 0) & (proba <= 1)).all()
    results = backend.results(np.array([[0.9, 0.7, 0.1], [0.1, 0.2, 0.3]]))
    assert results[0][0]["value"]["choices"] == ["money", "call"]
    assert results[0][0]["score"] == pytest.approx(0.8)
    assert results[1] == []


def test_annotation_labels_reads_our_control_only(sms_backend):
    result = [
        {"from_name": "other", "to_name": "text", "type": "choices", "value": {"choices": ["spam"]}},
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["ham"]}},
    ]
    assert sms_backend.annotation_labels(result) == ("ham",)
    assert sms_backend.annotation_labels([]) is None
    assert sms_backend.annotation_labels([{"from_name": "label", "value": {"choices": ["unknown"]}}]) is None


def test_task_text_errors_name_the_task_and_the_key(sms_backend):
    with pytest.raises(TaskDataError, match=r"task 5: data has no key 'text'.*keys present: body"):
        sms_backend.task_text({"id": 5, "data": {"body": "x"}})
    with pytest.raises(TaskDataError, match="task 6: has no 'data'"):
        sms_backend.task_text({"id": 6})
    with pytest.raises(TaskDataError, match="null"):
        sms_backend.task_text({"id": 7, "data": {"text": None}})


def test_url_text_goes_through_the_injected_fetcher():
    backend = backend_for(SMS_CONFIG.replace('value="$text"', 'value="$text" valueType="url"'))
    seen = []
    text = backend.task_text({"id": 3, "data": {"text": "/data/upload/1/a.txt"}},
                             lambda url, task_id: seen.append((url, task_id)) or "fetched body")
    assert text == "fetched body" and seen == [("/data/upload/1/a.txt", 3)]
    with pytest.raises(TaskDataError, match="URL"):
        backend.task_text({"id": 3, "data": {"text": "/data/upload/1/a.txt"}})


def test_training_needs_two_classes(sms_backend):
    with pytest.raises(TrainingDataError, match="2 different choices"):
        sms_backend.fit([Example("a b c", ("ham",)), Example("d e f", ("ham",))])
    with pytest.raises(TrainingDataError, match="at least 2"):
        sms_backend.fit([Example("a b c", ("ham",))])


def test_embed_gives_each_text_a_fixed_vector_whose_cosines_follow_the_features(sms_backend):
    from sklearn.metrics.pairwise import cosine_similarity

    from backends.text_classification import EMBEDDING_DIMENSIONS
    from tests.conftest import sms_rows

    model = sms_backend.fit([Example(text, (label,)) for label, text in sms_rows(300)])
    texts = [text for _, text in sms_rows(600)[300:]]
    vectors = model.embed(texts)
    assert vectors.shape == (300, EMBEDDING_DIMENSIONS) and vectors.dtype == np.float32
    assert np.array_equal(model.embed(texts[:10]), vectors[:10])  # the same projection on every call
    # A fresh copy of the model (as loaded from MLflow) projects the same way.
    assert np.array_equal(sms_backend.wrap(model.pipeline).embed(texts[:10]), vectors[:10])
    pairs = np.triu_indices(len(texts), 1)
    full, projected = cosine_similarity(model.features(texts))[pairs], cosine_similarity(vectors)[pairs]
    similar = full >= np.quantile(full, 0.99)  # the most alike 1% of pairs stay alike; the rest stay apart
    assert projected[similar].mean() > 0.2 and projected[~similar].mean() < 0.05
