"""Chunk sizing, pure: sizes and seconds in, the next chunk out."""
from __future__ import annotations

import pytest

from orchestrator.learning.scoring.chunks import ChunkSizer


@pytest.mark.parametrize("chunk, seconds, after", [
    (1000, 2.0, 2000), (4000, 2.0, 5000), (500, 12.0, 1000), (1000, 16.0, 1000), (1000, 28.0, 500),
    (150, 40.0, 100),
])
def test_the_chunk_grows_while_imports_are_quick_and_shrinks_when_slow(chunk, seconds, after):
    sizer = ChunkSizer(largest=5000, chunk=chunk)
    assert sizer.adapt(chunk, seconds) is None  # a single import says nothing of Label Studio's fixed cost
    assert sizer.chunk == after
