from datetime import UTC, datetime, timedelta

from convo.domain.tree import Node, Tree

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def node(i: int, parent: int | None, minute: int) -> Node:
    return Node(i, parent, T0 + timedelta(minutes=minute))


def test_versions_paths_and_newest_leaf():
    # 1 -> 2 -> 3 -> 4      (first branch)
    #        -> 5 -> 6      (edit of 3, later)
    # 7 (a second root, an edit of 1, latest of all) -> 8
    tree = Tree([node(1, None, 0), node(2, 1, 1), node(3, 2, 2), node(4, 3, 3), node(5, 2, 4), node(6, 5, 5),
                 node(7, None, 6), node(8, 7, 7)])
    assert tree.path_to(6) == [1, 2, 5, 6]
    v = tree.version(5)
    assert (v.index, v.count, v.sibling_ids) == (2, 2, [3, 5])
    assert tree.version(1).sibling_ids == [1, 7]
    assert tree.newest_leaf(2) == 6
    assert tree.newest_leaf(3) == 4
    assert tree.newest_leaf(4) == 4
    assert tree.default_leaf() == 8
    assert tree.path_to(None) == [] and tree.path_to(99) == []
