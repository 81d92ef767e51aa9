"""Whether two computations of one training run agree (a batch split over devices or whole, TensorFlow or JAX,
one step per call or several): asked in float64 (--precision float64), where rounding cannot decide it.

In float32 the answer depended on the processor: Adam divides each gradient by its running size, so where a
gradient is near zero the rounding of two half-batch sums instead of one (or another CPU's kernels) became a
step of up to the learning rate (2e-4 in 0.4% of a kernel on an Intel Xeon, 0.05% on an AMD EPYC). In float64
rounding is 1.1e-16 relative, nine orders below float32's: measured on an Intel Xeon, split and whole, and
TensorFlow and JAX, differ by under 1e-14 after a few steps. A mistake in the code (another batch, other noise, a
missed update or synchronization) moves weights by the order of the learning rate, 1e-4. TOLERANCE lies between,
far from both.
"""

import numpy as np

TOLERANCE = 1e-9


def assert_weights_agree(xs, ys, atol=TOLERANCE):
    """Two lists of float64 arrays (the same weights of two runs) equal within `atol` everywhere."""
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            assert x.dtype == y.dtype == np.float64, f"array {i}: {x.dtype} and {y.dtype}; agreement is asked in float64"
        assert x.shape == y.shape, f"array {i}: shapes {x.shape} and {y.shape}"
        diff = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0))
        assert diff <= atol, f"array {i} ({x.shape}): differs by up to {diff:.2e} (allowed {atol:.0e})"

