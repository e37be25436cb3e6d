import itertools
import random
import string
import time

import pytest

from convo.domain.versions import tokenize, unified_diff, word_changes


def ops(old, new):
    return [(c.op, c.text) for c in word_changes(old, new)]


def test_tokens_rebuild_the_text():
    for text in ["Hello, world!  Two  spaces", "東京は晴れです。", "안녕하세요 세계", "déjà vu — naïve", "a_b = f(x)\n\treturn"]:
        assert "".join(tokenize(text)) == text


def test_word_level_changes_in_latin_text():
    assert ops("The quick brown fox jumps", "The quick red fox leaps") == [
        ("equal", "The quick "), ("delete", "brown"), ("insert", "red"), ("equal", " fox "),
        ("delete", "jumps"), ("insert", "leaps"),
    ]
    # Whole words change, not letters inside them.
    assert ("delete", "colour") in ops("the colour", "the color")


def test_cjk_changes_are_character_level_inside_changed_runs():
    changes = ops("今日は晴れです。", "今日は雨です。")
    assert changes == [("equal", "今日は"), ("delete", "晴れ"), ("insert", "雨"), ("equal", "です。")]
    korean = ops("안녕하세요 세계", "안녕하세요 여러분")
    assert korean == [("equal", "안녕하세요 "), ("delete", "세계"), ("insert", "여러분")]


def test_multiline_code_gives_a_unified_diff():
    old = "def add(a, b):\n    return a + b\n"
    new = "def add(a, b, c=0):\n    return a + b + c\n"
    text = unified_diff(old, new, "v1", "v2")
    assert text.splitlines()[:2] == ["--- v1", "+++ v2"]
    assert "-def add(a, b):" in text and "+def add(a, b, c=0):" in text
    assert "+    return a + b + c" in text
    changes = ops(old, new)
    assert ("insert", ", c=0") in changes or any(op == "insert" and "c" in t for op, t in changes)
    assert "".join(t for op, t in changes if op != "insert") == old
    assert "".join(t for op, t in changes if op != "delete") == new


def test_identical_and_empty():
    assert ops("same", "same") == [("equal", "same")]
    assert ops("", "new") == [("insert", "new")]
    assert unified_diff("a\n", "a\n", "x", "y") == ""


def _prose(seed: int, size: int, vocabulary: list[str] | None = None) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(vocabulary) if vocabulary else "".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 9)))
        words.append(word + ("\n" if rng.random() < 0.08 else " "))
        length += len(words[-1])
    return "".join(words)[:size]


def _rebuilds(changes, old, new):
    return ("".join(c.text for c in changes if c.op != "insert") == old
            and "".join(c.text for c in changes if c.op != "delete") == new)


LIMIT = 200_000  # the API's longest message
WORST_CASES = {
    "the same token repeated": ("a " * (LIMIT // 2), "b " + "a " * (LIMIT // 2 - 1)),
    "the same line repeated": ("a\n" * (LIMIT // 2), "a\na\nb\n" * (LIMIT // 6)),
    "unrelated random texts": (_prose(1, LIMIT), _prose(2, LIMIT)),
    "four words shuffled": (_prose(3, LIMIT, ["x", "y", "z", "w"]), _prose(4, LIMIT, ["x", "y", "z", "w"])),
    "every pair of lines swapped": ("".join(f"{i}\n" for i in range(30_000)),
                                    "".join(f"{i ^ 1}\n" for i in range(30_000))),
}


@pytest.mark.parametrize("case", list(WORST_CASES))
def test_the_longest_messages_diff_in_well_under_a_second(case):
    # CPU time, not wall time: other processes on the machine do not count against it.
    old, new = WORST_CASES[case]
    started = time.process_time()
    changes = word_changes(old, new)
    unified = unified_diff(old, new, "v1", "v2")
    assert time.process_time() - started < 1.0
    assert _rebuilds(changes, old, new)
    assert unified.startswith("--- v1\n+++ v2\n") or old == new


def test_small_edits_in_a_long_text_stay_word_level():
    old = _prose(5, LIMIT)
    new = old[:5000] + "INSERTED words here " + old[5000:100_000] + old[100_050:150_000] + "\nnew line\n" + old[150_000:]
    changes = word_changes(old, new)
    assert _rebuilds(changes, old, new)
    assert sum(len(c.text) for c in changes if c.op != "equal") < 200
    assert ("insert", "INSERTED words here ") in ops_of(changes)
    unified = unified_diff(old, new, "v1", "v2")
    assert unified.count("@@ -") == 3 and len(unified) < 10_000


def ops_of(changes):
    return [(c.op, c.text) for c in changes]


def test_past_the_budget_the_changes_are_coarser_but_still_rebuild_both_texts():
    rng = random.Random(7)
    alphabet = ["a", "b", " ", "\n", "東", ".", "\r\n"]
    for _ in range(500):
        old = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        new = old[: rng.randint(0, len(old))] + "".join(rng.choices(alphabet, k=5)) + old[rng.randint(0, len(old)):]
        for budget in (0, 20, 200):
            changes = word_changes(old, new, budget)
            assert _rebuilds(changes, old, new)
            assert all(c.text for c in changes) and all(x.op != y.op for x, y in itertools.pairwise(changes))
        assert word_changes(old, new) == word_changes(old, new, 10**12)  # small texts: difflib's own answer
