"""Versions of a turn: listing them, comparing two, correcting one by hand, branching into a new thread.

Generating a new version (edit with a fresh answer, regenerate) lives in chat.py with the runs.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from convo.db.models import Message, Thread, User, utcnow
from convo.db.session import Database
from convo.domain.chat import Chat, Started
from convo.domain.threads import (
    MessageView,
    ThreadView,
    active_branch,
    message_view,
    owned_message,
    version_views,
)
from convo.domain.tree import load_tree
from convo.errors import Conflict, InvalidInput

# Han, kana, and other scripts written without spaces: compared a character at a time.
_UNSPACED = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3100-\u312f\u3190-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u0e00-\u0e7f"
)
_TOKEN = re.compile(rf"[{_UNSPACED}]|[^\s{_UNSPACED}\w]|[^\W{_UNSPACED}]+|\s+")


def tokenize(text: str) -> list[str]:
    """Words, runs of whitespace, single punctuation marks, and single CJK/Thai characters.
    Joined back together they give the text unchanged."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Change:
    op: str  # equal | insert | delete
    text: str


@dataclass(frozen=True)
class Diff:
    from_id: int
    to_id: int
    unified: str
    changes: list[Change]


# Steps of difflib's inner loop one comparison may take (about 0.1 µs each): small texts are compared
# word by word exactly as difflib does; past this, line by line first (H3: a diff once took minutes).
DIFF_BUDGET = 1_000_000

Opcode = tuple[str, int, int, int, int]


class _OverBudget(Exception):
    pass


class _Matcher(difflib.SequenceMatcher[str]):
    """difflib's matcher with a budget of work shared through `budget` (a one-item list). When the next
    step would overspend it, only the common start and end count as matching and `exact` is False."""

    def __init__(self, a: Sequence[str], b: Sequence[str], budget: list[int], *, autojunk: bool) -> None:
        self.budget = budget
        self.exact = True
        self._steps: list[int] | None = None
        if not autojunk and _first_step(a, b) > budget[0]:
            # Refused at once: spare building the index of b (a tenth of a second at the longest).
            super().__init__(None, (), ())
            self.a, self.b = a, b
            self._fall_back()
            return
        super().__init__(None, a, b, autojunk=autojunk)

    def find_longest_match(self, alo: int = 0, ahi: int | None = None, blo: int = 0, bhi: int | None = None
                           ) -> difflib.Match:
        ahi = len(self.a) if ahi is None else ahi
        bhi = len(self.b) if bhi is None else bhi
        if self._steps is None:
            # A call over a[alo:ahi] visits at most the positions in b of those elements: a prefix sum
            # prices every call before it runs.
            found = map(self.b2j.get, self.a, itertools.repeat((), len(self.a)))
            self._steps = list(itertools.accumulate(map(len, found), initial=0))
        cost = self._steps[ahi] - self._steps[alo] + (ahi - alo) + (bhi - blo) + 1
        if cost > self.budget[0]:
            raise _OverBudget
        self.budget[0] -= cost
        return super().find_longest_match(alo, ahi, blo, bhi)

    def get_matching_blocks(self) -> list[difflib.Match]:
        if self.matching_blocks is None:
            try:
                super().get_matching_blocks()
            except _OverBudget:
                self._fall_back()
        return self.matching_blocks

    def _fall_back(self) -> None:
        self.exact = False
        self.matching_blocks = _common_ends(self.a, self.b)


def _first_step(a: Sequence[str], b: Sequence[str]) -> int:
    """What the matcher's first step over all of `a` and `b` costs when nothing is junk."""
    counts = Counter(b)
    return sum(map(counts.__getitem__, a)) + len(a) + len(b) + 1


def _common_ends(a: Sequence[str], b: Sequence[str]) -> list[difflib.Match]:
    """Matching blocks for the common start and end only."""
    start = 0
    limit = min(len(a), len(b))
    while start < limit and a[start] == b[start]:
        start += 1
    end = 0
    while end < limit - start and a[-1 - end] == b[-1 - end]:
        end += 1
    blocks = [difflib.Match(0, 0, start)] if start else []
    if end:
        blocks.append(difflib.Match(len(a) - end, len(b) - end, end))
    return [*blocks, difflib.Match(len(a), len(b), 0)]


class _Changes(list[Change]):
    def add(self, op: str, text: str) -> None:
        if not text:
            return
        if self and self[-1].op == op:
            self[-1] = Change(op, self[-1].text + text)
        else:
            self.append(Change(op, text))

    def tokens(self, a: Sequence[str], b: Sequence[str], opcodes: list[Opcode]) -> None:
        for tag, i1, i2, j1, j2 in opcodes:
            if tag == "equal":
                self.add("equal", "".join(a[i1:i2]))
            else:
                self.add("delete", "".join(a[i1:i2]))
                self.add("insert", "".join(b[j1:j2]))


def word_changes(old: str, new: str, budget: int = DIFF_BUDGET) -> list[Change]:
    """Word-level changes; joined, the equal and deleted parts give `old`, the equal and inserted `new`."""
    a, b = tokenize(old), tokenize(new)
    changes = _Changes()
    matcher = _Matcher(a, b, [budget], autojunk=False)
    opcodes = matcher.get_opcodes()
    if matcher.exact:
        changes.tokens(a, b, opcodes)
        return changes
    # Too big to compare word by word at once: keep the common start and end, compare what lies between
    # line by line, then word by word inside each changed run of lines while the budget lasts.
    left = [budget]
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            changes.add("equal", "".join(a[i1:i2]))
            continue
        old_lines = "".join(a[i1:i2]).splitlines(keepends=True)
        new_lines = "".join(b[j1:j2]).splitlines(keepends=True)
        for line_tag, k1, k2, l1, l2 in _Matcher(old_lines, new_lines, left, autojunk=True).get_opcodes():
            if line_tag == "equal":
                changes.add("equal", "".join(old_lines[k1:k2]))
                continue
            old_words, new_words = tokenize("".join(old_lines[k1:k2])), tokenize("".join(new_lines[l1:l2]))
            changes.tokens(old_words, new_words, _Matcher(old_words, new_words, left, autojunk=False).get_opcodes())
    return changes


def unified_diff(old: str, new: str, old_name: str, new_name: str, budget: int = DIFF_BUDGET) -> str:
    """As `difflib.unified_diff` with three lines of context; past the budget, the lines between the
    common start and end are shown as one change."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out: list[str] = []
    for group in _Matcher(a, b, [budget], autojunk=True).get_grouped_opcodes(3):
        if not out:
            out += [f"--- {old_name}", f"+++ {new_name}"]
        out.append(f"@@ -{_range(group[0][1], group[-1][2])} +{_range(group[0][3], group[-1][4])} @@")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + line for line in a[i1:i2]]
                continue
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _range(start: int, stop: int) -> str:
    """A hunk's line range as unified diffs write it (difflib's `_format_range_unified`)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


class Versions:
    def __init__(self, db: Database, chat: Chat) -> None:
        self.db = db
        self.chat = chat

    async def edit(self, user: User, message_id: int, content: str, *, regenerate: bool) -> Started | MessageView:
        """A new version of a message. A question is answered afresh unless `regenerate` is false;
        an answer edited by hand is saved as it is."""
        async with self.db.read() as session:
            original = await owned_message(session, user, message_id)
        if original.role == "user" and regenerate:
            return await self.chat.edit(user, message_id, content)
        return await self.correct(user, message_id, content)

    async def list(self, user: User, message_id: int) -> list[MessageView]:
        async with self.db.read() as session:
            message = await owned_message(session, user, message_id)
            tree = await load_tree(session, message.thread_id)
            ids = tree.version(message.id).sibling_ids
            rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
            return version_views(tree, [rows[i] for i in ids])

    async def diff(self, user: User, message_id: int, against_id: int) -> Diff:
        """How `message_id` changed into `against_id` (both the caller's)."""
        async with self.db.read() as session:
            old = await owned_message(session, user, message_id)
            new = await owned_message(session, user, against_id)
        # Bounded, but still up to a fraction of a second of CPU: not on the event loop.
        unified, changes = await asyncio.to_thread(
            lambda: (unified_diff(old.content, new.content, f"message {old.id}", f"message {new.id}"),
                     word_changes(old.content, new.content)))
        return Diff(from_id=old.id, to_id=new.id, unified=unified, changes=changes)

    async def correct(self, user: User, message_id: int, content: str) -> MessageView:
        """A hand-written version of a turn, beside the original, with no generation: a corrected
        answer, or a reworded question that is not sent yet."""
        if not content.strip():
            raise InvalidInput("The message is empty.", code="empty_message")
        async with self.db.write() as session:
            original = await owned_message(session, user, message_id)
            if original.status == "streaming":
                raise Conflict("This answer is still being written; cancel it first.", code="message_streaming")
            version = Message(
                thread_id=original.thread_id, user_id=user.id, parent_id=original.parent_id, role=original.role,
                content=content, status="complete", model=original.model, temperature=original.temperature,
                meta={"edited_from": original.id},
            )
            session.add(version)
            await session.flush()
            thread = await session.get(Thread, original.thread_id)
            assert thread is not None
            thread.current_leaf_id = version.id
            thread.updated_at = utcnow()
            return await message_view(session, version)

    async def branch(self, user: User, message_id: int) -> ThreadView:
        """A new thread holding a copy of the conversation from the root down to `message_id`."""
        async with self.db.write() as session:
            last = await owned_message(session, user, message_id)
            source = await session.get(Thread, last.thread_id)
            assert source is not None
            tree = await load_tree(session, source.id)
            ids = tree.path_to(last.id)
            rows = {m.id: m for m in await session.scalars(select(Message).where(Message.id.in_(ids)))}
            if any(rows[i].status == "streaming" for i in ids):
                raise Conflict("Wait for the answer to finish before branching from it.", code="message_streaming")
            copy = Thread(
                user_id=user.id, title=f"{source.title or 'Untitled'} (branch)"[:300], model=source.model,
                temperature=source.temperature, system_prompt=source.system_prompt,
            )
            session.add(copy)
            await session.flush()
            parent_id = None
            for i in ids:
                m = rows[i]
                clone = Message(
                    thread_id=copy.id, user_id=user.id, parent_id=parent_id, role=m.role, content=m.content,
                    status=m.status, model=m.model, temperature=m.temperature,
                    meta={**(m.meta or {}), "branched_from": m.id}, event_seq=m.event_seq, created_at=m.created_at,
                )
                session.add(clone)
                await session.flush()
                parent_id = clone.id
            copy.current_leaf_id = parent_id
            return ThreadView(copy, await active_branch(session, copy))
