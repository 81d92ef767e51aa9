"""Differentiable augmentation of what the discriminator sees (DiffAugment, Zhao et al. 2020): translation, cutout.

Real and fake images pass through the same kind of random transformation before the discriminator judges them,
and the generator's gradients flow back through it. The discriminator cannot memorize the training images as
easily, while the generator still learns the untransformed garments: translation and cutout do not leak into
its samples (the paper's measurement). Images are (B, 28, 28, 1) in [-1, 1]; what a shift brings in from
outside the frame and what a cutout removes become the background, -1 (black). Backend-neutral keras.ops.
"""

from keras import ops

TRANSLATION = 0.125  # shifts up to 1/8 of the side each way, rounded: 4 pixels of 28 (DiffAugment's ratio)
CUTOUT = 0.5  # a square of half the side: 14 x 14 pixels (DiffAugment's ratio)
DRAWS = 4  # uniform numbers per image: the shift down and right, the cutout's centre row and column


def augment(images, draws, policy):
    """`images` transformed as `policy` says ('translation', 'cutout' or both, comma-separated), with the
    random numbers `draws` (B, DRAWS), uniform in [0, 1), that GAN.draw_augment gives."""
    parts = policy.split(",")
    if "translation" in parts:
        images = translate(images, draws[:, 0], draws[:, 1])
    if "cutout" in parts:
        images = cut_out(images, draws[:, 2], draws[:, 3])
    return images


def translate(images, down, right):
    """Each image shifted by a whole number of pixels from -r to r rows and columns (r = 4 for 28 pixels), chosen
    by `down` and `right` in [0, 1); the strip left behind is background. (Two batched matrix products with
    0/1 shift matrices: exact, and the gradient is the reverse shift.)"""
    size = images.shape[1]
    reach = int(size * TRANSLATION + 0.5)
    rows, columns = _shift_matrix(down, size, reach, images.dtype), _shift_matrix(right, size, reach, images.dtype)
    shifted = ops.matmul(ops.matmul(rows, images[..., 0] + 1.0), ops.transpose(columns, (0, 2, 1)))
    return ops.expand_dims(shifted, -1) - 1.0


def _shift_matrix(u, size, reach, dtype):
    """(B, size, size): row i holds a 1 at column i - s, s = floor(u (2r + 1)) - r; rows that would read from
    outside the frame hold zeros."""
    shift = ops.floor(u * (2 * reach + 1)) - reach
    positions = ops.arange(size, dtype=dtype)
    return ops.cast(ops.equal(positions[None, None, :], positions[None, :, None] - shift[:, None, None]), dtype)


def cut_out(images, row, column):
    """Each image with a square of CUTOUT x side set to background, centred at a position chosen by `row` and
    `column` in [0, 1) (anywhere in the frame: near an edge, part of the square falls outside)."""
    size = images.shape[1]
    half = int(size * CUTOUT + 0.5) // 2
    positions = ops.arange(size, dtype=images.dtype)

    def inside(u):  # (B, size): which rows (or columns) the square covers
        centre = ops.floor(u * (size + 1))
        return ops.cast((positions[None, :] >= centre[:, None] - half) & (positions[None, :] < centre[:, None] + half),
                        images.dtype)

    square = ops.expand_dims(inside(row)[:, :, None] * inside(column)[:, None, :], -1)
    return images * (1.0 - square) - square
