"""Distribution and class metrics on feature vectors: plain NumPy, no network.

Real features are the reference set, fake features the generated set; both are (N, D) arrays.
"""

import numpy as np

_CHUNK = 2048  # rows of a distance matrix computed at once (2048 x 10,000 float64 = 160 MB)


def gaussian(features):
    """Mean and covariance of a feature set, in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for two Gaussians (the FID formula).

    Tr((S1 S2)^(1/2)) equals the sum of the square roots of the eigenvalues of the symmetric
    matrix S1^(1/2) S2 S1^(1/2), which eigh computes stably (no complex square roots).
    """
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


def fid(real, fake):
    return frechet_distance(*gaussian(real), *gaussian(fake))


def kid(real, fake, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance: unbiased MMD^2 with the kernel (x.y / d + 1)^3, over random subsets.

    Returns (mean, standard deviation) over the subsets.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off_diagonal = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(off_diagonal - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _squared_distances(a, b):
    """Squared Euclidean distances between the rows of a and b, one chunk of rows at a time."""
    b_norms = (b**2).sum(1)
    for start in range(0, len(a), _CHUNK):
        chunk = a[start : start + _CHUNK]
        yield start, np.maximum((chunk**2).sum(1)[:, None] + b_norms[None, :] - 2 * chunk @ b.T, 0)


def knn_radii(features, k):
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded).

    k may be a tuple: then {k: radii} for each, from one pass over the distances.
    """
    ks = (k,) if isinstance(k, int) else tuple(k)
    features = np.asarray(features, np.float64)
    radii = {k: np.empty(len(features)) for k in ks}
    for start, d2 in _squared_distances(features, features):
        # Column k of the sorted row is the k-th neighbour: column 0 is the point itself (distance 0).
        nearest = np.partition(d2, ks, axis=1)
        for each in ks:
            radii[each][start : start + len(d2)] = np.sqrt(nearest[:, each])
    return radii[ks[0]] if isinstance(k, int) else radii


def manifold_scores(real, fake, real_radii=None, real_labels=None, k=3, k_balls=5):
    """Precision, recall, density and coverage, from one pass over the distances from fakes to reals.

    Precision (Kynkäänniemi et al. 2019): the share of fakes inside the real manifold, the union of balls
    reaching each real point's k-th real neighbour; recall: the share of reals inside the fake manifold,
    built the same way. Density (Naeem et al. 2020): how many real balls (to the k_balls-th neighbour)
    hold each fake, on average, over k_balls (about 1 for a match); coverage: the share of real balls
    holding a fake. real_radii: knn_radii(real, (k, k_balls)), when the caller has them. With the reals'
    labels, each class's recall and coverage too: which garments the fakes reach.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    radii = knn_radii(real, (k, k_balls)) if real_radii is None else real_radii
    real_r2, ball_r2, fake_r2 = radii[k] ** 2, radii[k_balls] ** 2, knn_radii(fake, k) ** 2
    inside, in_balls = np.zeros(len(fake), bool), 0
    recalled, nearest = np.zeros(len(real), bool), np.full(len(real), np.inf)
    for start, d2 in _squared_distances(fake, real):  # a chunk of fakes (rows) against every real (columns)
        inside[start : start + len(d2)] = (d2 <= real_r2[None, :]).any(1)
        in_balls += int((d2 <= ball_r2[None, :]).sum())
        recalled |= (d2 <= fake_r2[start : start + len(d2), None]).any(0)
        nearest = np.minimum(nearest, d2.min(0))
    covered = nearest <= ball_r2
    scores = {"precision": float(inside.mean()), "recall": float(recalled.mean()),
              "density": in_balls / (k_balls * len(fake)), "coverage": float(covered.mean())}
    if real_labels is not None:
        classes = np.unique(real_labels)
        scores["recall_per_class"] = [float(recalled[real_labels == c].mean()) for c in classes]
        scores["coverage_per_class"] = [float(covered[real_labels == c].mean()) for c in classes]
    return scores


def precision_recall(real, fake, k=3):
    """Improved precision and recall (Kynkäänniemi et al. 2019), as manifold_scores measures them."""
    scores = manifold_scores(real, fake, k=k)
    return scores["precision"], scores["recall"]


def density_coverage(real, fake, k=5):
    """Density and coverage (Naeem et al. 2020), as manifold_scores measures them."""
    scores = manifold_scores(real, fake, k_balls=k)
    return scores["density"], scores["coverage"]


def class_metrics(probs, threshold=0.05):
    """What the classifier says of a set of images: which classes, how balanced, how confident.

    histogram: share of images per predicted class; kl_from_uniform: KL(histogram || uniform) in nats
    (0 for perfect balance, log 10 = 2.30 for a single class); classes_over_5pct: classes with at least
    `threshold` of the images; classifier_score: exp(E[KL(p(y|x) || p(y))]), the Inception Score
    analogue (10 at most: confident and balanced).
    """
    probs = np.asarray(probs, np.float64)
    n_classes = probs.shape[1]
    histogram = np.bincount(probs.argmax(1), minlength=n_classes) / len(probs)
    nonzero = histogram > 0
    kl_uniform = float(np.sum(histogram[nonzero] * np.log(histogram[nonzero] * n_classes)))
    marginal = probs.mean(0)
    eps = 1e-12
    score = float(np.exp(np.mean(np.sum(probs * (np.log(probs + eps) - np.log(marginal + eps)), axis=1))))
    return {
        "histogram": [round(float(h), 4) for h in histogram],
        "kl_from_uniform": round(kl_uniform, 4),
        "classes_over_5pct": int((histogram >= threshold).sum()),
        "classifier_score": round(score, 4),
    }


def nearest_neighbours(queries, references):
    """For each query row, the index of and Euclidean distance to its nearest reference row."""
    index = np.empty(len(queries), np.int64)
    distance = np.empty(len(queries))
    refs = np.asarray(references, np.float64)
    for start, d2 in _squared_distances(np.asarray(queries, np.float64), refs):
        best = d2.argmin(1)
        index[start : start + len(d2)] = best
        distance[start : start + len(d2)] = np.sqrt(d2[np.arange(len(d2)), best])
    return index, distance
