"""Committee strategies (vote / consensus entropy): hand values, range, errors, and modAL parity."""

import math

import numpy as np
import pytest
from modAL.disagreement import consensus_entropy as modal_consensus_entropy
from modAL.disagreement import vote_entropy as modal_vote_entropy
from modAL.models import ActiveLearner, Committee
from sklearn.linear_model import LogisticRegression

from strategies import consensus_entropy, vote_entropy
from strategies.committee import _max_vote_entropy

# 3 members x 2 items x 3 classes.
# item 0: members vote 0, 1, 2.   item 1: members vote 0, 0, 1.
COMMITTEE = np.array(
    [
        [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]],
        [[0.1, 0.8, 0.1], [0.5, 0.4, 0.1]],
        [[0.1, 0.1, 0.8], [0.2, 0.7, 0.1]],
    ]
)


def test_vote_entropy_hand_computed():
    # item 0: shares (1/3, 1/3, 1/3), entropy ln 3, max for 3 votes over 3 classes ln 3 -> 1.
    # item 1: shares (2/3, 1/3, 0): -(2/3 ln 2/3 + 1/3 ln 1/3) = 0.636514; / ln 3 = 0.579380.
    np.testing.assert_allclose(vote_entropy(COMMITTEE), [1.0, 0.5793801643], atol=1e-9)


def test_vote_entropy_scales_by_the_reachable_maximum():
    # 3 members, 2 classes: the most even split is 2:1, entropy 0.636514 < ln 2 = 0.693147.
    # A 2:1 vote is as split as 3 votes can be, so it scores 1, not 0.636514 / 0.693147 = 0.918.
    members = np.array([[[0.9, 0.1]], [[0.8, 0.2]], [[0.3, 0.7]]])
    assert vote_entropy(members)[0] == pytest.approx(1.0)
    assert _max_vote_entropy(3, 2) == pytest.approx(0.6365141683)
    # Where an even split exists, the maximum is log(min(m, k)).
    assert _max_vote_entropy(4, 2) == pytest.approx(math.log(2))
    assert _max_vote_entropy(2, 5) == pytest.approx(math.log(2))
    assert _max_vote_entropy(6, 3) == pytest.approx(math.log(3))


def test_unanimous_committee_scores_zero():
    members = np.tile(np.array([[[0.7, 0.2, 0.1]]]), (4, 1, 1))
    assert vote_entropy(members)[0] == 0.0


def test_consensus_entropy_hand_computed():
    # item 0: mean (1/3, 1/3, 1/3) -> 1.
    # item 1: mean (0.433333, 0.466667, 0.1): -(0.43333 ln 0.43333 + 0.46667 ln 0.46667
    #   + 0.1 ln 0.1) = 0.36234 + 0.35566 + 0.23026 = 0.94826; / ln 3 = 0.863139.
    mean = np.array([1.3, 1.4, 0.3]) / 3
    expected = -(mean * np.log(mean)).sum() / math.log(3)
    assert expected == pytest.approx(0.8631, abs=1e-4)
    np.testing.assert_allclose(consensus_entropy(COMMITTEE), [1.0, expected], atol=1e-12)


def test_consensus_sees_soft_disagreement_that_votes_miss():
    # Both members barely prefer class 0: votes agree, but the mean is nearly uniform.
    members = np.array([[[0.51, 0.49]], [[0.52, 0.48]]])
    assert vote_entropy(members)[0] == 0.0
    assert consensus_entropy(members)[0] > 0.99


@pytest.mark.parametrize("measure", [vote_entropy, consensus_entropy])
@pytest.mark.parametrize("members,classes", [(2, 2), (3, 2), (5, 3), (4, 10)])
def test_range_is_unit_interval(measure, members, classes):
    rng = np.random.default_rng(members * classes)
    stack = rng.dirichlet(np.full(classes, 0.5), size=(members, 400))
    scores = measure(stack)
    assert scores.shape == (400,) and scores.dtype == np.float64
    assert scores.min() >= 0.0 and scores.max() <= 1.0


@pytest.mark.parametrize("measure", [vote_entropy, consensus_entropy])
def test_errors_and_empty_pool(measure):
    assert measure(np.empty((3, 0, 4))).shape == (0,)
    with pytest.raises(ValueError, match="at least 2 members"):
        measure(COMMITTEE[:1])
    with pytest.raises(ValueError, match="3-D"):
        measure(COMMITTEE[0])
    with pytest.raises(ValueError, match="k >= 2"):
        measure(np.ones((3, 2, 1)))
    bad = COMMITTEE.copy()
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        measure(bad)
    bad = COMMITTEE.copy()
    bad[2, 1] = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="member 2, row 1 sums to 1.5"):
        measure(bad)


def _fitted_committee(n_members=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 4))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])  # 3 classes
    learners = []
    for member in range(n_members):
        # Different small training subsets so the members genuinely disagree.
        rows = rng.choice(120, size=25, replace=False)
        rows = np.concatenate([rows, [np.flatnonzero(y == c)[member] for c in range(3)]])
        learners.append(ActiveLearner(estimator=LogisticRegression(), X_training=X[rows], y_training=y[rows]))
    pool = rng.standard_normal((200, 4))
    return Committee(learner_list=learners), pool


def test_matches_modal_committee():
    committee, pool = _fitted_committee()
    # modAL stacks as (items, members, classes); ours is (members, items, classes).
    stack = np.transpose(committee.vote_proba(pool), (1, 0, 2))
    m, _, k = stack.shape

    ours = vote_entropy(stack)
    theirs = modal_vote_entropy(committee, pool)
    assert theirs.max() > 0  # the committee really disagrees somewhere
    # Same vote shares; modAL leaves the entropy in nats, we divide by the reachable maximum.
    np.testing.assert_allclose(ours * _max_vote_entropy(m, k), theirs, atol=1e-12)
    assert np.array_equal(np.argsort(-ours, kind="stable"), np.argsort(-theirs, kind="stable"))

    np.testing.assert_allclose(
        consensus_entropy(stack) * math.log(k), modal_consensus_entropy(committee, pool), atol=1e-12
    )
