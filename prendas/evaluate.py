"""Score a generator against the 10,000 Fashion-MNIST test images, with real data as the floor.

evaluate_generator() draws N garments, passes them and the test images through the feature
network (prendas.features) and computes FID, KID, precision/recall, density/coverage, the class
histogram and the classifier score; the same figures for 10,000 real training images are the
floor that no generator can beat. A memorization check finds each of a few generated garments'
nearest training image.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from prendas import artifacts, metrics
from prendas.data import CLASS_NAMES, load_fashion_mnist
from prendas.features import FeatureNetwork, load_record, weights_digest
from prendas.models import computes_in, generator_signature
from prendas.sampling import balanced_labels, checkpoint_about, generate_images, latent_batch, load_generator

MEMORIZATION_SAMPLES = 100


class Reference:
    """The test split, through the feature network once; every score is measured against it."""

    def __init__(self, network=None, data=None):
        self.network = network or FeatureNetwork()
        self.data = data or load_fashion_mnist()
        self.features, self.probs = self.network(self.data.x_test)
        self.gaussian = metrics.gaussian(self.features)
        self._radii = None

    @classmethod
    def shared(cls):
        """The reference of the shipped feature network and the Fashion-MNIST found here, made once a process:
        every evaluation in a notebook or a run measures against the same test features (5 s to make on 2 cores)."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    _shared = None

    def score(self, images, kid_subsets=100, full=True, labels=None):
        """All metrics of uint8 images (N, 28, 28) against the test images; full=False: without KID.

        Recall and coverage also per class of the test images (which garments the images reach). With
        the classes the images were asked to be (`labels`, a conditional generator's), also how often
        the classifier sees the class that was asked for, overall and per class.
        """
        features, probs = self.network(images)
        if self._radii is None:  # the test features' neighbour distances, computed once for every score
            self._radii = metrics.knn_radii(self.features, (3, 5))
        scores = {"fid": round(metrics.frechet_distance(*self.gaussian, *metrics.gaussian(features)), 3)}
        manifold = metrics.manifold_scores(self.features, features, self._radii, self.data.y_test)
        scores.update({k: round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] for k, v in manifold.items()})
        if full:
            kid_mean, kid_std = metrics.kid(self.features, features, subsets=kid_subsets)
            scores.update(kid=round(kid_mean, 5), kid_std=round(kid_std, 5))
        scores.update(metrics.class_metrics(probs))
        if labels is not None:
            hits = probs.argmax(axis=1) == np.asarray(labels)
            scores["label_agreement"] = round(float(hits.mean()), 4)
            scores["label_agreement_per_class"] = [round(float(hits[labels == c].mean()), 4) for c in range(len(CLASS_NAMES))]
        return scores


def evaluate_generator(generator, n=10_000, seed=0, reference=None, floor=True):
    """The full evaluation of a generator as a dict (what `prendas evaluate` prints and saves)."""
    timings = {}
    started = time.perf_counter()
    reference = reference or Reference.shared()
    timings["reference"] = time.perf_counter() - started

    t = time.perf_counter()
    latent_dim, conditional = generator_signature(generator)
    labels = balanced_labels(n) if conditional else None  # a conditional generator is asked for every class equally
    images = generate_images(generator, latent_batch(n, latent_dim, seed), labels)
    timings["generate"] = time.perf_counter() - t

    t = time.perf_counter()
    result = {"n": n, "seed": seed, "reference": f"the {len(reference.data.x_test):,} test images",
              "conditional": conditional, "metrics": reference.score(images, labels=labels)}
    timings["metrics"] = time.perf_counter() - t

    if floor:
        t = time.perf_counter()
        result["floor"], result["floor_from_cache"] = floor_scores(reference, n, seed, conditional)
        timings["floor"] = time.perf_counter() - t

    t = time.perf_counter()
    result["memorization"] = memorization(images[:MEMORIZATION_SAMPLES], reference.data)
    timings["memorization"] = time.perf_counter() - t
    # Figures are comparable only under the same feature network: its accuracy and a digest of its weights.
    result["feature_network"] = {"test_accuracy": load_record()["test_accuracy"], "sha256": weights_digest()}
    result["seconds"] = {k: round(v, 2) for k, v in timings.items()} | {"total": round(time.perf_counter() - started, 2)}
    return result


def floor_scores(reference, n, seed, conditional):
    """(the floor: n real training images scored like a generator's, whether it came from the cache).

    The floor is the same for every generator scored with the same n, seed and kind (conditional or
    not), so it is kept in the cache folder (PRENDAS_CACHE, else ~/.cache/prendas), keyed by the
    feature network's weights, the images and the code that scores them: any change scores it again.
    """
    digest = getattr(reference.network, "digest", None)  # (a network without one is never cached)
    path = None
    if digest and (folder := cache_folder()):
        import keras

        from prendas import features

        settings = json.dumps([digest, n, seed, conditional, keras.__version__, keras.backend.backend(), np.__version__])
        code = [Path(module.__file__).read_bytes() for module in (features, metrics)] + [Path(__file__).read_bytes()]
        data = reference.data
        key = hashlib.sha256()
        for part in (settings.encode(), *code, data.x_train, data.y_train, data.x_test):
            part = part.tobytes() if isinstance(part, np.ndarray) else part
            key.update(len(part).to_bytes(8, "little") + part)  # (each part's length first: no two keys alike)
        path = folder / f"floor_{key.hexdigest()[:16]}.json"
        try:
            scores = json.loads(path.read_text())
            if isinstance(scores, dict) and "fid" in scores:
                return scores, True
        except (OSError, ValueError):
            pass  # not there yet (or unreadable): score it
    chosen = np.random.default_rng(seed).choice(len(reference.data.x_train), n, replace=False)
    real, real_labels = reference.data.x_train[chosen], reference.data.y_train[chosen]
    # For a conditional generator the floor's agreement is the classifier's own accuracy on real images.
    scores = {"what": f"{n:,} real training images", **reference.score(real, labels=real_labels if conditional else None)}
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            artifacts.write_json(path, scores)
        except OSError:
            pass  # a read-only home: no cache, the same figures
    return scores, False


def cache_folder():
    """Where scores that do not change are kept: PRENDAS_CACHE, else $XDG_CACHE_HOME/prendas or ~/.cache/prendas."""
    if os.environ.get("PRENDAS_CACHE"):
        return Path(os.environ["PRENDAS_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "prendas"
    try:
        home = Path.home()
    except RuntimeError:  # no home folder: no cache
        return None
    return home / ".cache" / "prendas" if home.is_dir() else None


def memorization(images, data):
    """Each image's nearest training image (pixels in [0, 1], Euclidean), beside the same for test images.

    A generator that copies its training data draws images much nearer to training images than
    unseen real images (the test split) are.
    """
    train = data.x_train.reshape(len(data.x_train), -1).astype(np.float32) / 255
    index, distance = metrics.nearest_neighbours(images.reshape(len(images), -1) / 255, train)
    _, test_distance = metrics.nearest_neighbours(data.x_test[: len(images)].reshape(len(images), -1) / 255, train)
    return {
        "samples": len(images),
        "median_distance": round(float(np.median(distance)), 3),
        "min_distance": round(float(distance.min()), 3),
        "test_median_distance": round(float(np.median(test_distance)), 3),
        "nearest_train_index": index.tolist(),
        "distance": [round(float(d), 3) for d in distance],
    }


def run_record_for(model_path):
    """The run.json beside a generator_TAG.keras (or an --ema run's generator_raw_TAG.keras), if there is one."""
    path, tag = Path(model_path), artifacts.model_tag(model_path)
    if tag:
        candidate = path.with_name(artifacts.run_paths(".", tag)["run_json"].name)
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def format_table(result):
    """The result as a terminal table: generated beside the floor."""
    rows = [
        ("FID", "fid", "{:.2f}"),
        ("KID x 1000", "kid", "{:.2f}"),
        ("precision", "precision", "{:.3f}"),
        ("recall", "recall", "{:.3f}"),
        ("density", "density", "{:.3f}"),
        ("coverage", "coverage", "{:.3f}"),
        ("classifier score", "classifier_score", "{:.2f}"),
        ("class KL from uniform", "kl_from_uniform", "{:.3f}"),
        ("classes with >= 5%", "classes_over_5pct", "{}"),
        ("class asked = class seen", "label_agreement", "{:.1%}"),
    ]
    generated, floor = result["metrics"], result.get("floor", {})
    lines = [f"{'':24}{'generated':>12}{'floor (real)':>14}"]
    for label, key, fmt in rows:
        scale = 1000 if key == "kid" else 1
        g = fmt.format(generated[key] * scale) if key in generated else "-"
        f = fmt.format(floor[key] * scale) if key in floor else "-"
        lines.append(f"{label:24}{g:>12}{f:>14}")
    lines.append("classes (generated):  " + "  ".join(
        f"{name.split('/')[0]} {share:.0%}" for name, share in zip(CLASS_NAMES, generated["histogram"])
    ))
    for key, what in (("recall_per_class", "recall"), ("coverage_per_class", "coverage")):
        if key in generated:  # (evaluations older than the per-class figures have none)
            lines.append(f"{what} per class of the test images (floor in brackets):  " + "  ".join(
                f"{name.split('/')[0]} {g:.2f}" + (f" [{f:.2f}]" if key in floor else "")
                for name, g, f in zip(CLASS_NAMES, generated[key], floor.get(key, generated[key]))))
    if "label_agreement_per_class" in generated:
        lines.append("class asked = class seen, per class:  " + "  ".join(
            f"{name.split('/')[0]} {share:.0%}" for name, share in zip(CLASS_NAMES, generated["label_agreement_per_class"])
        ))
    m = result["memorization"]
    lines.append(
        f"nearest training image: median distance {m['median_distance']:.2f} for {m['samples']} generated, "
        f"{m['test_median_distance']:.2f} for as many test images (much lower = copying)"
    )
    if result.get("warning"):
        lines.append("WARNING: " + result["warning"])
    return "\n".join(lines)


def evaluate_model_file(model_path, n=10_000, seed=0, json_path=None, log=print, precision="float32"):
    """`prendas evaluate` (which checks its arguments first): load, score, print, save the JSON. The generator draws
    in `precision` (float32 by default, whatever trained it; the JSON says which)."""
    checkpoint = None
    if Path(model_path).suffix == ".npz":  # a run's checkpoint: the generator it holds, and the run's record
        checkpoint = checkpoint_about(model_path)
        run = checkpoint.pop("run")
    else:
        run = run_record_for(model_path)
    generator = load_generator(model_path, precision=precision)
    json_path = Path(json_path) if json_path else artifacts.evaluation_path(model_path, checkpoint and checkpoint["epoch"])
    result = {"model": str(model_path), "drawn_in": computes_in(generator), **evaluate_generator(generator, n=n, seed=seed)}
    if checkpoint:
        result["checkpoint"] = checkpoint
    if run:
        result["run"] = {"tag": run["tag"], "data": run["data"], "config": run["config"],
                         "training_seconds": run.get("training_seconds")}
        if run["data"].get("includes_test_images"):
            result["warning"] = (
                f"this generator trained on {run['data']['test_images']:,} of the test images it is scored "
                "against: its figures look better than they are"
            )
    log(format_table(result))
    cached = " (the floor from the cache)" if result.get("floor_from_cache") else ""
    drawn = f" by run {checkpoint['tag']} after epoch {checkpoint['epoch']} ({checkpoint['weights']})" if checkpoint else ""
    log(f"{n:,} samples{drawn} scored in {result['seconds']['total']:.1f}s{cached}; saved {json_path}")
    artifacts.write_json(json_path, result)
    return result
