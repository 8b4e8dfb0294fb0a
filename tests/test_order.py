"""optimizer.order: the lowest-numbered-first topological order, its depth reordering, and cycles."""

from optimizer.order import order_by_depth, topological_order, unordered


def test_an_ordered_dag_keeps_its_order():
    preds = [[], [0], [1], [0, 2]]
    assert topological_order(preds) == [0, 1, 2, 3]


def test_the_lowest_numbered_ready_vertex_comes_first():
    preds = [[2], [], []]  # 0 waits for 2; 1 and 2 are ready
    assert topological_order(preds) == [1, 2, 0]


def test_order_by_depth_is_kahns_breadth_first_waves():
    preds = [[], [0], [], [1], [2]]  # depths 0, 1, 0, 2, 1
    order = topological_order(preds)
    assert order == [0, 1, 2, 3, 4]
    assert order_by_depth(order, preds) == [0, 2, 1, 4, 3]


def test_vertices_on_or_after_a_cycle_are_left_out():
    preds = [[], [0, 2], [1], [2]]  # 1 and 2 wait for each other; 3 comes after them
    order = topological_order(preds)
    assert order == [0]
    assert order_by_depth(order, preds) == [0]
    assert unordered(order, 4) == [1, 2, 3]


def test_an_empty_graph():
    assert topological_order([]) == [] and unordered([], 0) == []
