"""This process's model cache: bounded, newest kept."""
from __future__ import annotations


def test_a_long_lived_worker_keeps_only_the_newest_models(monkeypatch):
    from orchestrator.learning import model_cache as model_cache_module

    monkeypatch.setattr(model_cache_module, "MODEL_CACHE_SIZE", 3)
    cache = model_cache_module.ModelCache()
    for i in range(5):
        cache.put_model(f"models:/m/{i}", object())  # trained here, or loaded by a push
    cache.put_model("models:/m/2", object())  # used again: the newest
    assert list(cache._models) == ["models:/m/3", "models:/m/4", "models:/m/2"]
