"""Image grids and PNG files for samples, reconstructions and interpolations."""
import math
import os

import tensorflow as tf


def grid(images, columns=None):
    """Tile uint8 ``images: [N, H, W, C]`` into one ``[rows·H, columns·W, C]`` image.

    ``columns`` defaults to ``ceil(sqrt(N))``; missing cells of the last row are black.
    """
    images = tf.convert_to_tensor(images)
    count = int(images.shape[0])
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    padding = rows * columns - count
    if padding:
        images = tf.concat([images, tf.zeros([padding, *images.shape[1:]], images.dtype)], 0)
    height, width, channels = images.shape[1:]
    tiled = tf.reshape(images, [rows, columns, height, width, channels])
    tiled = tf.transpose(tiled, [0, 2, 1, 3, 4])
    return tf.reshape(tiled, [rows * height, columns * width, channels])


def interleave(first, second):
    """``[a₀, b₀, a₁, b₁, …]`` of two ``[N, ...]`` batches (side-by-side pairs in a 2-column grid)."""
    return tf.reshape(tf.stack([first, second], axis=1), [-1, *first.shape[1:]])


def write_png(path, image):
    """Write a uint8 ``[H, W, C]`` image (C = 1 or 3) to ``path``, creating its folder."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(image))
