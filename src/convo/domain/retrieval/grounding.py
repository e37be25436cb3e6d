"""Grounding an answer on the thread's files: the best chunks for the question, numbered, inside a
token budget, as a system message that asks the model to cite them as [1], [2]…"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from convo.db.models import Attachment, User

if TYPE_CHECKING:
    from convo.domain.files import Files

log = logging.getLogger(__name__)

CANDIDATES = 8
SNIPPET_CHARS = 300
INSTRUCTION = (
    "Answer with the help of the numbered sources below, taken from files the user attached. Cite every "
    "source you use by its number in square brackets, like [1] or [2][3], right after the statement it "
    "supports. If the sources do not hold the answer, say so and answer from general knowledge without "
    "citing."
)


@dataclass
class Grounding:
    prompt: str
    citations: list[dict[str, Any]]


def _source(n: int, filename: str, body: str) -> str:
    return f"[{n}] {filename}\n{body.strip()}"


class Grounder:
    def __init__(self, files: Files) -> None:
        self.files = files

    async def ground(
        self,
        user: User,
        thread_id: int,
        question: str,
        attachment_ids: list[int] | None,
        *,
        count: Callable[[str], int],
        budget: Callable[[], int],
    ) -> Grounding | None:
        """Sources for `question` from the named attachments, or else the thread's ready ones; None
        when there is nothing to ground on. `count` measures tokens as the answering model does;
        `budget` says how many the sources may take, and is only worked out when there are sources."""
        if attachment_ids is not None:
            scope = await self.files.scope(user, attachment_ids=attachment_ids)
        else:
            scope = await self.files.scope(user, thread_id=thread_id)
        scope = await self._ready(user, scope or [])
        if not scope or not question.strip():
            return None
        try:
            hits = await self.files.retrieval.search(user.id, question, k=CANDIDATES, attachment_ids=scope)
        except Exception:
            # A broken embedder (say, a remote endpoint down) must not stop the conversation itself.
            log.exception("retrieval for grounding failed; answering without sources")
            return None
        if not hits:
            return None

        def pack() -> Grounding | None:
            limit = budget()
            used = count(INSTRUCTION) + 8
            parts, citations = [INSTRUCTION], []
            for hit in hits:
                n = len(citations) + 1
                block = _source(n, hit.filename, hit.text)
                tokens = count(block) + 2
                if used + tokens > limit:
                    continue  # a shorter, lower-ranked chunk may still fit
                used += tokens
                parts.append(block)
                citations.append({
                    "n": n, "chunk_id": hit.chunk_id, "attachment_id": hit.attachment_id,
                    "filename": hit.filename, "score": round(hit.score, 6),
                    "bm25_score": hit.bm25_score, "vector_score": hit.vector_score,
                    "snippet": hit.text.strip()[:SNIPPET_CHARS],
                })
            return Grounding("\n\n".join(parts), citations) if citations else None

        return await asyncio.to_thread(pack)

    async def _ready(self, user: User, ids: list[int]) -> list[int]:
        if not ids:
            return []
        async with self.files.db.read() as session:
            return list(await session.scalars(select(Attachment.id).where(
                Attachment.id.in_(ids), Attachment.user_id == user.id, Attachment.status == "ready")))
