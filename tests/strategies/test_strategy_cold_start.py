"""The diversity cold start: cluster centres first, one per cluster, largest first; any text placed the same way."""
import numpy as np
import pytest

from strategies.cold_start import ColdStartOrder, fit_cold_start


def blobs(sizes, *, dim=8, spread=0.05, seed=0):
    """Well separated groups of unit vectors (one direction per group), and each point's group."""
    rng = np.random.default_rng(seed)
    directions = np.eye(dim)[: len(sizes)]
    points, groups = [], []
    for group, (size, direction) in enumerate(zip(sizes, directions)):
        points.append(direction + spread * rng.standard_normal((size, dim)))
        groups += [group] * size
    return np.vstack(points), np.array(groups)


def test_the_first_tasks_are_one_per_cluster_largest_cluster_first():
    x, groups = blobs([300, 100, 40, 10])
    order = fit_cold_start(x, clusters=4)
    ranked = np.argsort(-order.priorities(x), kind="stable")
    assert list(groups[ranked[:4]]) == [0, 1, 2, 3]
    # Each of those is its group's most central point (the nearest to the group's mean direction).
    for position, group in enumerate(range(4)):
        members = np.flatnonzero(groups == group)
        unit = x[members] / np.linalg.norm(x[members], axis=1, keepdims=True)
        centre = unit.mean(axis=0)
        assert ranked[position] == members[np.argmax(unit @ centre)]


def test_after_the_centres_clusters_give_tasks_in_proportion_to_their_size():
    x, groups = blobs([300, 100])
    order = fit_cold_start(x, clusters=2)
    first = groups[np.argsort(-order.priorities(x), kind="stable")[:40]]
    assert 25 <= np.sum(first == 0) <= 35  # 3:1, as the pool is


def test_scores_are_label_studio_scores_ascending_and_priorities_their_complement():
    x, _ = blobs([50, 50])
    order = fit_cold_start(x, clusters=2)
    scores = order.scores(x)
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert np.allclose(order.priorities(x), 1.0 - scores)
    assert np.sort(scores)[:2].max() < 1e-3  # the two centres


def test_a_text_without_a_vector_goes_last_and_is_not_fitted_on():
    x, _ = blobs([30, 30])
    with_zeros = np.vstack([np.zeros((5, x.shape[1])), x])
    order = fit_cold_start(with_zeros, clusters=2)
    scores = order.scores(with_zeros)
    assert np.all(scores[:5] == 1.0) and scores[5:].max() < 1.0
    assert fit_cold_start(np.zeros((4, 3))) is None
    assert fit_cold_start(np.zeros((0, 3))) is None


def test_a_text_outside_the_fitted_pool_is_placed_as_it_would_be_in_it():
    x, _ = blobs([200, 200], seed=1)
    order = fit_cold_start(x[:300], clusters=2)
    # The same vector scores the same whether it is scored alone or in a batch (a /predict or a
    # push), to far below the 6 decimals a score is sent with (only BLAS's summation order differs).
    alone = np.array([order.scores(x[i:i + 1])[0] for i in range(300, 310)])
    assert np.allclose(alone, order.scores(x[300:310]), rtol=0, atol=1e-12)
    assert 0.0 < alone.min() and alone.max() < 1.0


def test_every_cluster_kept_has_members_so_the_head_is_one_task_per_cluster():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 6))  # no structure: k-means centres that cosine leaves empty are dropped
    order = fit_cold_start(x, clusters=20)
    cluster, place = order.place(x)
    assert set(cluster.tolist()) == set(range(len(order.centres)))
    head = np.argsort(-order.priorities(x), kind="stable")[: len(order.centres)]
    assert len(set(cluster[head].tolist())) == len(order.centres) and np.all(place[head] == 0.0)


def test_fewer_distinct_points_than_clusters():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    order = fit_cold_start(x, clusters=20)
    assert len(order.centres) == 2
    # Coinciding members share the centre's place; the smaller cluster's centre comes after them.
    assert sorted(order.scores(x)) == pytest.approx([0.0, 0.0, 0.0005], abs=1e-9)


def test_it_round_trips_through_bytes_without_pickle():
    x, _ = blobs([40, 20])
    order = fit_cold_start(x, clusters=2)
    again = ColdStartOrder.loads(order.dumps())
    assert np.array_equal(again.scores(x), order.scores(x))


def test_a_large_pool_is_fitted_on_a_sample_and_every_task_placed():
    x, groups = blobs([3000, 1000], dim=4)
    order = fit_cold_start(x, clusters=2, sample=500)
    cluster, place = order.place(x)
    assert len(place) == len(x) and place.min() >= 0.0 and place.max() <= 1.0
    # Both groups are found although the fit saw an eighth of the pool.
    assert len({tuple(sorted(set(groups[cluster == c]))) for c in range(2)}) == 2
