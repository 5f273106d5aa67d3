"""How many predictions the next import carries: grown while Label Studio answers quickly, shrunk when
the predictions themselves make it slow. Pure: it sees sizes and seconds, nothing else."""
from __future__ import annotations

from dataclasses import dataclass

# Chunks start at HEAD_CHUNK (at most the policy's chunk_size): the first one is what Label
# Studio sorts by once it landed, so it is small. They double while imports take under FAST
# and halve above SLOW seconds, between MIN_CHUNK and the policy's chunk_size. FAST is half
# of SLOW: an import's cost is a fixed part plus a part per prediction, so doubling a chunk
# that took under FAST cannot take over SLOW, and SLOW keeps every request under 30 s.
FAST_IMPORT_SECONDS, SLOW_IMPORT_SECONDS = 13.0, 26.0
HEAD_CHUNK, MIN_CHUNK = 500, 100


@dataclass
class ChunkSizer:
    """The size of the next chunk, learned from how long imports of known sizes took."""

    largest: int = 5000  # the policy's chunk_size
    chunk: int = HEAD_CHUNK
    last_import: tuple[int, float] | None = None  # (predictions, seconds)
    per_prediction: float | None = None  # seconds, estimated from imports of different sizes

    @classmethod
    def for_policy(cls, chunk_size: int) -> ChunkSizer:
        return cls(largest=chunk_size, chunk=min(HEAD_CHUNK, chunk_size))

    def adapt(self, size: int, seconds: float) -> float | None:
        """Size the next chunk from an import of `size` predictions that took `seconds`.

        An import costs a fixed part plus a part per prediction. Without Redis, Label Studio
        recomputes the counters of every task of the project on each import, joining their
        predictions: a fixed part that grows with the project and with the predictions it
        holds (10 s per request on 10k tasks carrying a previous push, 30 s and more on
        100k tasks, here). So a quick import doubles the chunk; a slow one halves it only
        when its own predictions made it slow. When the fixed part dominates, smaller
        chunks cannot make a request quick, they only add requests that each pay it again:
        the chunk grows instead. The part per prediction is the smallest slope seen between
        imports of different sizes (the fixed part only grows, which steepens later slopes).

        Returns the fixed seconds of this import when they, not its predictions, made it
        slow (the caller says how to make Label Studio cheaper); None otherwise.
        """
        if self.last_import is not None and self.last_import[0] != size:
            slope = (seconds - self.last_import[1]) / (size - self.last_import[0])
            if slope > 0:
                self.per_prediction = slope if self.per_prediction is None else min(self.per_prediction, slope)
        self.last_import = (size, seconds)
        if seconds < FAST_IMPORT_SECONDS:
            self.chunk = min(self.largest, self.chunk * 2)
        elif seconds > SLOW_IMPORT_SECONDS:
            own = seconds if self.per_prediction is None else self.per_prediction * size
            if 2 * own >= seconds:  # the predictions themselves: fewer per request
                self.chunk = max(min(MIN_CHUNK, self.largest), self.chunk // 2)
            else:  # Label Studio's fixed work per request: fewer requests
                self.chunk = min(self.largest, self.chunk * 2)
                return seconds - own
        return None
