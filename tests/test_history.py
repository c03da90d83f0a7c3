"""History = the user's positive items strictly earlier in time, across splits, last N."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_collm.data.history import PositiveHistory, last_positive_history


def reference(users, items, times, labels, max_len):
    """Plain per-row loop: the definition, written the slow obvious way."""
    n = len(users)
    out = np.zeros((n, max_len), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    for r in range(n):
        earlier = [
            k for k in range(n)
            if users[k] == users[r] and labels[k] == 1 and times[k] < times[r]
        ]
        earlier.sort(key=lambda k: (times[k], k))
        hist = [items[k] for k in earlier][-max_len:]
        out[r, : len(hist)] = hist
        lengths[r] = len(hist)
    return out, lengths


def test_hand_example_cross_split_and_empty():
    # rows are not in time order (as in concatenated split files); user 2 has no positives
    users = np.array([1, 1, 2, 1, 1, 2])
    items = np.array([10, 11, 12, 13, 14, 15])
    times = np.array([5, 1, 3, 2, 9, 4])
    labels = np.array([1, 1, 0, 0, 1, 1])
    hist, length = last_positive_history(users, items, times, labels, max_len=2)
    # user 1 in time order: 11(+,t1) 13(-,t2) 10(+,t5) 14(+,t9)
    np.testing.assert_array_equal(length, [1, 0, 0, 1, 2, 0])
    np.testing.assert_array_equal(hist[0], [11, 0])   # t5: only 11 before
    np.testing.assert_array_equal(hist[1], [0, 0])    # first row of user 1: empty history
    np.testing.assert_array_equal(hist[4], [11, 10])  # t9: oldest first
    np.testing.assert_array_equal(hist[5], [0, 0])    # user 2's negative is not history


def test_equal_timestamps_are_not_history_either_way():
    """Row order carries no meaning: two positives at the same time do not see each other, so a
    pair scored at a row's own time gets that row's history whatever the file order."""
    for items in ([7, 8], [8, 7]):
        hist, length = last_positive_history(np.array([1, 1, 1]), np.array([*items, 9]), np.array([3, 3, 4]),
                                             np.array([1, 1, 1]), 5)
        np.testing.assert_array_equal(length, [0, 0, 2])
        assert sorted(hist[2][:2]) == [7, 8]


def test_exact_times_one_second_apart():
    """Epoch seconds that float32 cannot tell apart (spacing 64 s at 1e9) still order the rows."""
    t = 1_000_000_040.0  # float32 rounds it up to 1_000_000_064
    assert float(np.float32(t)) > t + 1
    history = PositiveHistory(np.array([1]), np.array([5]), np.array([t]), np.array([1]))
    hist, length = history(np.array([1, 1, 1, 2]), np.array([t, t + 1, t - 1, t + 1]), 3)
    np.testing.assert_array_equal(length, [0, 1, 0, 0])
    np.testing.assert_array_equal(hist[1], [5, 0, 0])
    hist, length = history(np.array([1, 2]), None, 3)  # no time: every positive of the user
    np.testing.assert_array_equal(length, [1, 0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(0, 6), st.integers(0, 1)), max_size=40),
    st.integers(1, 4),
)
def test_matches_reference_on_random_data(rows, max_len):
    if rows:
        users, items, times, labels = (np.array(c) for c in zip(*rows))
    else:
        users = items = times = labels = np.array([], dtype=np.int64)
    got = last_positive_history(users, items, times, labels, max_len)
    want = reference(users, items, times, labels, max_len)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
