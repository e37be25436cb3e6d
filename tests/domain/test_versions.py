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
