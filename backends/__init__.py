"""Model backends: from a Label Studio label config to features, a model and results.

`backend_for(xml)` picks the backend that supports a label config, or says why none does.
"""
from __future__ import annotations

from backends.features import FEATURE_SETS
from backends.label_config import LabelConfig, LabelConfigError, parse_label_config
from backends.text_classification import (
    Example,
    TaskDataError,
    TextClassificationBackend,
    TextClassifier,
    TrainingDataError,
)

BACKENDS = (TextClassificationBackend,)


def backend_for(label_config: str | LabelConfig, *, features: str = "tfidf") -> TextClassificationBackend:
    """The backend for a label config; LabelConfigError names the tags found and what is supported.

    `features`: what the models it fits learn from (`backends.features.FEATURE_SETS`).
    """
    config = parse_label_config(label_config) if isinstance(label_config, str) else label_config
    for backend_class in BACKENDS:
        if backend_class.supports(config):
            return backend_class(config, features=features)
    # The first backend's own error message describes the config and what it supports.
    return BACKENDS[0](config, features=features)


__all__ = [
    "BACKENDS",
    "FEATURE_SETS",
    "Example",
    "LabelConfig",
    "LabelConfigError",
    "TaskDataError",
    "TextClassificationBackend",
    "TextClassifier",
    "TrainingDataError",
    "backend_for",
    "parse_label_config",
]
