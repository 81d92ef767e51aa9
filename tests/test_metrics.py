"""Known answers for the metrics, on synthetic features where the truth is computable."""

import numpy as np
import pytest

from prendas import metrics

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)


def _gaussian(n, mean, cov, seed):
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def test_frechet_distance_matches_the_closed_form():
    # Commuting covariances (diagonal): Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # A non-diagonal case against a direct matrix square root.
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = m1 @ m1.T + np.eye(4), m2 @ m2.T + np.eye(4)
    w, v = np.linalg.eig(s1 @ s2)
    trace_root = np.sum(np.sqrt(w.real))
    assert metrics.frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(
        np.trace(s1) + np.trace(s2) - 2 * trace_root, rel=1e-8
    )


def test_fid_of_sampled_gaussians_approaches_the_closed_form():
    cov = np.diag([1.0, 2.0, 0.5, 1.5])
    real = _gaussian(20_000, np.zeros(4), cov, seed=1)
    fake = _gaussian(20_000, np.full(4, 0.5), cov, seed=2)
    assert metrics.fid(real, fake) == pytest.approx(4 * 0.25, abs=0.05)  # same covariance: ||mu1 - mu2||^2


def test_a_set_against_itself():
    x = _gaussian(2_000, np.zeros(8), np.eye(8), seed=3)
    assert metrics.fid(x, x) == pytest.approx(0, abs=1e-8)
    assert metrics.precision_recall(x, x) == (1.0, 1.0)
    density, coverage = metrics.density_coverage(x, x)
    assert coverage == 1.0 and density > 1  # each point also sits in its own ball


def test_two_samples_of_one_distribution_score_near_the_ideal():
    real = _gaussian(3_000, np.zeros(8), np.eye(8), seed=4)
    fake = _gaussian(3_000, np.zeros(8), np.eye(8), seed=5)
    precision, recall = metrics.precision_recall(real, fake)
    assert precision > 0.7 and recall > 0.7
    density, coverage = metrics.density_coverage(real, fake)
    assert density == pytest.approx(1.0, abs=0.1) and coverage > 0.9  # Naeem et al.: E[density] = 1
    mean, std = metrics.kid(real, fake, subsets=20, subset_size=500)
    assert abs(mean) < 3 * std + 1e-3


def test_more_noise_gives_a_larger_fid_and_kid():
    rng = np.random.default_rng(6)
    real = _gaussian(4_000, np.zeros(16), np.eye(16), seed=7)
    base = _gaussian(4_000, np.zeros(16), np.eye(16), seed=8)
    fids = [metrics.fid(real, base + noise * rng.normal(size=base.shape)) for noise in (0.0, 0.5, 1.0, 2.0)]
    assert fids == sorted(fids) and fids[-1] > 10 * fids[0]
    kids = [metrics.kid(real, base + noise * rng.normal(size=base.shape), subsets=10, subset_size=500)[0] for noise in (0.0, 2.0)]
    assert kids[1] > kids[0] + 0.01


def test_mode_collapse_lowers_recall_and_coverage_not_precision():
    real = _gaussian(3_000, np.zeros(4), np.eye(4), seed=9)
    collapsed = real[np.abs(real[:, 0]) < 0.2]  # fakes from a thin slice of the real distribution
    collapsed = collapsed[np.random.default_rng(10).choice(len(collapsed), 3_000)]
    precision, recall = metrics.precision_recall(real, collapsed)
    _, coverage = metrics.density_coverage(real, collapsed)
    assert precision > 0.95 and recall < 0.5 and coverage < 0.5


def test_per_class_recall_and_coverage_name_the_class_the_fakes_miss():
    """Two classes of reals, fakes from only the first: it is reached, the second is not."""
    first = _gaussian(1_000, np.zeros(4), np.eye(4), seed=11)
    second = _gaussian(1_000, np.full(4, 20.0), np.eye(4), seed=12)
    real, labels = np.concatenate([first, second]), np.repeat([0, 1], 1_000)
    scores = metrics.manifold_scores(real, _gaussian(1_000, np.zeros(4), np.eye(4), seed=13), real_labels=labels)
    assert scores["recall_per_class"][0] > 0.7 and scores["coverage_per_class"][0] > 0.9
    assert scores["recall_per_class"][1] == 0 and scores["coverage_per_class"][1] == 0
    assert scores["recall"] == pytest.approx(np.mean(scores["recall_per_class"]))  # (equal classes)
    # the one pass gives what its two halves give
    other = _gaussian(1_000, np.zeros(4), np.eye(4), seed=13)
    assert (scores["precision"], scores["recall"]) == metrics.precision_recall(real, other)


def test_kid_is_unbiased_for_equal_distributions():
    means = [
        metrics.kid(_gaussian(1_000, np.zeros(4), np.eye(4), seed=s), _gaussian(1_000, np.zeros(4), np.eye(4), seed=s + 100),
                    subsets=5, subset_size=500)[0]
        for s in range(8)
    ]
    assert abs(np.mean(means)) < 2 * np.std(means) / np.sqrt(len(means)) + 1e-4


def test_class_metrics():
    balanced = np.eye(10)[np.arange(1_000) % 10]
    m = metrics.class_metrics(balanced)
    assert m["kl_from_uniform"] == 0 and m["classes_over_5pct"] == 10 and m["classifier_score"] == pytest.approx(10, rel=1e-6)
    one_class = np.eye(10)[np.full(1_000, 7)]
    m = metrics.class_metrics(one_class)
    assert m["kl_from_uniform"] == pytest.approx(np.log(10), abs=1e-4) and m["classes_over_5pct"] == 1
    assert m["histogram"][7] == 1.0 and m["classifier_score"] == pytest.approx(1, rel=1e-6)


def test_nearest_neighbours():
    refs = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    index, distance = metrics.nearest_neighbours(np.array([[9.0, 1.0], [0.0, 4.0]]), refs)
    assert index.tolist() == [1, 2] and distance == pytest.approx([np.sqrt(2), 1.0])
