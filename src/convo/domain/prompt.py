"""What the model is sent: the conversation down to the question, sources from the thread's files, and
the oldest turns dropped until it fits the model's context window beside the answer."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from convo.db.models import Message, User
from convo.domain.retrieval.grounding import Grounder, Grounding
from convo.domain.tree import Tree
from convo.errors import Conflict, InvalidInput, NotFound
from convo.llm.base import ChatMessage, ModelInfo, Provider

# Tokens kept free for the answer when the request names no max_tokens.
DEFAULT_ANSWER_RESERVE = 1024


async def history(
    session: Any, tree: Tree, last_id: int | None, *, expect: tuple[str, ...]
) -> list[ChatMessage]:
    """The conversation from the root down to `last_id`, as the model should see it."""
    if last_id is None:
        return []
    if last_id not in tree:
        raise NotFound("No such parent message in this thread.")
    ids = tree.path_to(last_id)
    rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
    last = rows[last_id]
    if last.role not in expect:
        raise InvalidInput("This question has its answer already; send the new message under the answer.",
                           code="invalid_parent")
    if last.status == "streaming":
        raise Conflict("The previous answer is still being written; wait or cancel it.", code="parent_streaming")
    return [ChatMessage(rows[i].role, rows[i].content) for i in ids if rows[i].content]


async def fit(
    provider: Provider, model: ModelInfo, prompt: list[ChatMessage], max_tokens: int | None
) -> tuple[list[ChatMessage], int]:
    """Drop the oldest turns until the prompt and the answer fit the model's context window."""
    window = model.context_window or 8192
    reserve = max_tokens or min(DEFAULT_ANSWER_RESERVE, window // 4)
    if reserve >= window:
        raise InvalidInput(f"max_tokens must be below the model's context window ({window}).",
                           code="max_tokens_too_large")

    def fit() -> tuple[list[ChatMessage], int]:
        def cost(m: ChatMessage) -> int:
            return provider.count_tokens(model.upstream_id, m.content) + 4  # role and framing

        system = [m for m in prompt if m.role == "system"]
        turns = [m for m in prompt if m.role != "system"]
        used = sum(cost(m) for m in system) + cost(turns[-1])
        budget = window - reserve
        if used > budget:
            raise InvalidInput(
                f"The message is too long for {model.label}: about {used} tokens, "
                f"{budget} fit beside a {reserve}-token answer.",
                code="context_length_exceeded",
            )
        kept = [turns[-1]]
        for m in reversed(turns[:-1]):
            tokens = cost(m)
            if used + tokens > budget:
                break
            kept.append(m)
            used += tokens
        return system + kept[::-1], used

    return await asyncio.to_thread(fit)


async def ground(
    grounder: Grounder | None, user: User, thread_id: int, resolved: Any, prompt: list[ChatMessage],
    history: list[ChatMessage], max_tokens: int | None, attachment_ids: list[int] | None,
) -> Grounding | None:
    """Sources from the thread's files for the question, within what the prompt can spare: at most
    half of the context left beside the answer, and never so much that the question stops fitting."""
    if grounder is None or not history:
        return None
    model = resolved.model
    window = model.context_window or 8192
    reserve = max_tokens or min(DEFAULT_ANSWER_RESERVE, window // 4)

    def count(text: str) -> int:
        return resolved.provider.count_tokens(model.upstream_id, text) + 4

    def budget() -> int:
        # Counted only once there are sources to place: most threads have no files.
        fixed = sum(count(m.content) for m in prompt + history[-1:])
        return min((window - reserve) // 2, window - reserve - fixed)

    return await grounder.ground(user, thread_id, history[-1].content, attachment_ids, count=count,
                                 budget=budget)


def title_from(content: str) -> str:
    line = " ".join(content.split())
    return line if len(line) <= 60 else line[:57].rstrip() + "…"
