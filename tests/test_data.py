"""glow_nxn.data: the pipelines on mocked tfds data, on a folder of images, and on real MNIST.

Nothing is downloaded: named datasets other than MNIST are mocked (``tfds.testing.mock_data``), and
MNIST is prepared once per session from the repository's ``data/mnist``.
"""
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from glow_nxn import data
from glow_nxn.config import DataConfig
from mock_datasets import mocked_tfds

CIFAR_SHAPE = (32, 32, 3)
MNIST_SHAPE = (28, 28, 1)


def split_images(name, split, image_shape, **kwargs):
    """All images of a split, uint8 ``[N, H, W, C]`` in index order."""
    examples = list(data.eval_dataset(name, split=split, image_shape=image_shape, batch_size=1,
                                      **kwargs).unbatch())
    assert [int(e["index"]) for e in examples] == list(range(len(examples)))
    return np.stack([e["image"].numpy() for e in examples])


def cells(y, n_bits):
    """The n-bit cell of each dequantised value: ``floor((y + 0.5)·2^n)``."""
    return np.floor((y.astype(np.float64) + 0.5) * 2**n_bits).astype(np.int64)


def match_rows(batch_cells, reduced):
    """For each image of ``batch_cells`` ``[B, ...]``, the index of the equal row of ``reduced``."""
    matches = []
    for row in batch_cells:
        found = [i for i, image in enumerate(reduced) if np.array_equal(row, image)]
        assert len(found) == 1, "a yielded image is not in the n-bit cell of exactly one example"
        matches.append(found[0])
    return matches


# Errors.

def test_unknown_dataset_name_lists_the_valid_names():
    with pytest.raises(ValueError) as error:
        data.train_dataset("mnsit", image_shape=MNIST_SHAPE, n_bits=8, per_replica_batch_size=2,
                           seed=0)
    for name in [*data.DATASETS, "folder:"]:
        assert name in str(error.value)


def test_unknown_split_and_bad_shards_are_rejected():
    with pytest.raises(ValueError, match="valid: train, test"):
        data.eval_dataset("mnist", image_shape=MNIST_SHAPE, batch_size=2, split="validation")
    with pytest.raises(ValueError, match="shard_index"):
        data.eval_dataset("mnist", image_shape=MNIST_SHAPE, batch_size=2, shard_index=2,
                          num_shards=2)


def test_image_shape_mismatch_names_the_fix():
    with pytest.raises(ValueError, match=r"cifar10 images are \(32, 32, 3\).*the cifar10 preset"):
        data.eval_dataset("cifar10", image_shape=MNIST_SHAPE, batch_size=2)


@pytest.mark.parametrize("name, files", [
    ("cifar10", ["cifar-10-binary.tar.gz"]),
    ("imagenet32", ["train_32x32.tar", "valid_32x32.tar"]),
    ("imagenet64", ["train_64x64.tar", "valid_64x64.tar"]),
    ("celeba_hq_256", ["data256x256.tar"]),
    ("mnist", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
])
def test_unprepared_dataset_without_manual_files_says_what_to_put_where(tmp_path, name, files):
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    with pytest.raises(data.DatasetUnavailableError) as error:
        data.prepare(name, data_dir=str(tmp_path / "tfds"), manual_dir=str(manual_dir))
    message = str(error.value)
    assert "\n" not in message and str(manual_dir) in message
    for f in files:
        assert f in message


def test_manual_file_with_a_wrong_checksum_is_reported(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not the CIFAR-10 archive")
    with pytest.raises(data.DatasetUnavailableError, match="NonMatchingChecksumError"):
        data.prepare("cifar10", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path))


# Training pipeline (mocked CIFAR-10).

def test_train_batches_are_full_and_in_range():
    with mocked_tfds(num_examples=6):
        ds = data.train_dataset("cifar10", image_shape=CIFAR_SHAPE, n_bits=8,
                                per_replica_batch_size=4, seed=0)
        batches = [b.numpy() for b in ds.take(4)]  # 16 images: crosses epoch boundaries
    assert ds.element_spec.shape.as_list() == [4, *CIFAR_SHAPE]  # drop_remainder=True
    assert ds.element_spec.dtype == tf.float32
    assert ds.cardinality() == tf.data.INFINITE_CARDINALITY
    for batch in batches:
        assert batch.shape == (4, *CIFAR_SHAPE)
        assert batch.min() >= -0.5 and batch.max() < 0.5


@pytest.mark.parametrize("n_bits", [5, 8])
def test_train_noise_is_fresh_each_epoch_and_stays_in_the_cell(n_bits):
    with mocked_tfds(num_examples=6):
        originals = split_images("cifar10", "train", CIFAR_SHAPE)
        # One batch is one epoch: shuffle comes before repeat.
        epochs = [b.numpy() for b in data.train_dataset(
            "cifar10", image_shape=CIFAR_SHAPE, n_bits=n_bits, per_replica_batch_size=6,
            seed=3).take(2)]
    reduced = originals.astype(np.int64) // 2 ** (8 - n_bits)  # computed here, not by objectives
    fractions = []
    for y in epochs:
        batch_cells = cells(y, n_bits)
        order = match_rows(batch_cells, reduced)
        assert sorted(order) == list(range(6))  # each example exactly once per epoch
        noise = (y.astype(np.float64) + 0.5) * 2**n_bits - batch_cells  # u, in [0, 1)
        fractions.append(noise[np.argsort(order)])  # in example order
    # u ~ U(0, 1) per value: mean 1/2; two independent draws differ by 1/3 on average.
    assert abs(np.mean(fractions) - 0.5) < 0.01
    assert abs(np.mean(np.abs(fractions[0] - fractions[1])) - 1 / 3) < 0.01


def test_train_stream_is_fixed_by_the_seed():
    def first_batch(seed):
        with mocked_tfds(num_examples=6):
            ds = data.train_dataset("cifar10", image_shape=CIFAR_SHAPE, n_bits=8,
                                    per_replica_batch_size=3, seed=seed)
            return next(iter(ds)).numpy()

    np.testing.assert_array_equal(first_batch(7), first_batch(7))
    assert np.abs(first_batch(7) - first_batch(8)).mean() > 1e-3


def test_train_shards_are_disjoint_and_cover_the_split():
    with mocked_tfds(num_examples=6):
        originals = split_images("cifar10", "train", CIFAR_SHAPE).astype(np.int64)
        seen = []
        for rank in range(2):
            epoch = next(iter(data.train_dataset(
                "cifar10", image_shape=CIFAR_SHAPE, n_bits=8, per_replica_batch_size=3, seed=0,
                shard_index=rank, num_shards=2))).numpy()
            seen.append(sorted(match_rows(cells(epoch, 8), originals)))
    assert seen == [[0, 2, 4], [1, 3, 5]]


def test_random_shift_translates_with_edge_fill():
    max_shift = 2
    with mocked_tfds(num_examples=4):
        originals = split_images("cifar10", "train", CIFAR_SHAPE).astype(np.int64)
        batches = [b.numpy() for b in data.train_dataset(
            "cifar10", image_shape=CIFAR_SHAPE, n_bits=8, per_replica_batch_size=4, seed=0,
            augment_shift=max_shift).take(3)]
    size = CIFAR_SHAPE[0]
    candidates = {}
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            rows = np.clip(np.arange(size) - dy, 0, size - 1)
            cols = np.clip(np.arange(size) - dx, 0, size - 1)
            for i, image in enumerate(originals):
                candidates[(i, dy, dx)] = image[rows][:, cols]
    shifts = []
    for image in cells(np.concatenate(batches), 8):
        found = [key for key, shifted in candidates.items() if np.array_equal(image, shifted)]
        assert len(found) == 1
        shifts.append(found[0][1:])
    assert len(set(shifts)) >= 4  # 12 draws from 25 shifts


# Evaluation pipeline and noise (mocked CIFAR-10).

def test_eval_dataset_is_the_whole_split_in_order_with_a_short_last_batch():
    with mocked_tfds(num_examples=7):
        originals = split_images("cifar10", "test", CIFAR_SHAPE)
        batches = list(data.eval_dataset("cifar10", image_shape=CIFAR_SHAPE, batch_size=3))
    assert [b["image"].shape[0] for b in batches] == [3, 3, 1]
    assert batches[0]["image"].dtype == tf.uint8 and batches[0]["index"].dtype == tf.int64
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(7))
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), originals)


def test_eval_shards_are_disjoint_keep_global_indices_and_cover_the_split():
    with mocked_tfds(num_examples=7):
        originals = split_images("cifar10", "test", CIFAR_SHAPE)
        indices = []
        for rank in range(2):
            batches = list(data.eval_dataset("cifar10", image_shape=CIFAR_SHAPE, batch_size=3,
                                             shard_index=rank, num_shards=2))
            index = np.concatenate([b["index"] for b in batches])
            np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]),
                                          originals[index])
            indices.append(index.tolist())
    assert indices == [[0, 2, 4, 6], [1, 3, 5]]


def test_evaluation_noise_depends_only_on_seed_index_and_draw():
    index = tf.constant([0, 1, 2, 3, 4, 5, 6], tf.int64)
    noise = data.evaluation_noise(index, CIFAR_SHAPE, seed=11).numpy()
    assert noise.shape == (7, *CIFAR_SHAPE) and noise.dtype == np.float32
    assert noise.min() >= 0.0 and noise.max() < 1.0
    assert abs(noise.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(noise, data.evaluation_noise(index, CIFAR_SHAPE, seed=11))
    # The batches of two shards give every example the noise it gets in one batch.
    for shard in (index[0::2], index[1::2]):
        np.testing.assert_array_equal(data.evaluation_noise(shard, CIFAR_SHAPE, seed=11),
                                      noise[shard.numpy()])
    traced = tf.function(lambda i: data.evaluation_noise(i, CIFAR_SHAPE, seed=11))
    np.testing.assert_array_equal(traced(index), noise)
    for other in (data.evaluation_noise(index, CIFAR_SHAPE, seed=12),
                  data.evaluation_noise(index, CIFAR_SHAPE, seed=11, draw=1)):
        assert abs(np.mean(np.abs(other.numpy() - noise)) - 1 / 3) < 0.01
    assert abs(np.mean(np.abs(noise[0] - noise[1])) - 1 / 3) < 0.01
    # A draw given as a tensor of any integer type, traced or not, is the same draw.
    second = data.evaluation_noise(index, CIFAR_SHAPE, seed=11, draw=1)
    by_tensor = tf.function(lambda i, d: data.evaluation_noise(i, CIFAR_SHAPE, seed=11, draw=d))
    for dtype in (tf.int32, tf.int64):
        np.testing.assert_array_equal(
            data.evaluation_noise(index, CIFAR_SHAPE, seed=11, draw=tf.constant(1, dtype)), second)
        np.testing.assert_array_equal(by_tensor(index, tf.constant(1, dtype)), second)


# A folder of images.

def write_image(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_jpeg if path.suffix == ".jpg" else tf.io.encode_png
    path.write_bytes(encode(tf.constant(image, tf.uint8)).numpy())


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """exact.png (16×16 RGB noise), gradient.png (32×64, value 4·column), grey.jpg (20×20 of 90)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    write_image(root / "exact.png", rng.randint(0, 256, (16, 16, 3)))
    write_image(root / "nested" / "gradient.png",
                np.broadcast_to(4 * np.arange(64)[None, :, None], (32, 64, 3)))
    write_image(root / "grey.jpg", np.full((20, 20, 3), 90))
    return root


def test_folder_images_are_scaled_to_cover_and_centre_cropped(image_folder):
    name = f"folder:{image_folder}"
    assert data.num_examples(name, "train") == data.num_examples(name, "test") == 3
    images = split_images(name, "test", (16, 16, 3))  # sorted paths: exact, grey, nested/...
    rng = np.random.RandomState(0)
    np.testing.assert_array_equal(images[0], rng.randint(0, 256, (16, 16, 3)))  # no resampling
    assert np.all(np.abs(images[1].astype(int) - 90) <= 2)
    # 32×64 → 16×32 (column j at source column 2j + 0.5), then columns 8..23: 4·(2(j+8) + 0.5).
    gradient = images[2].astype(float)
    np.testing.assert_array_equal(gradient, np.broadcast_to(gradient[:1, :, :1], gradient.shape))
    np.testing.assert_allclose(gradient[0, 1:-1, 0], 8 * np.arange(1, 15) + 66, atol=1.0)


def test_folder_channels_follow_the_model(image_folder):
    grey = split_images(f"folder:{image_folder}", "train", (16, 16, 1))
    assert grey.shape == (3, 16, 16, 1)
    assert np.all(np.abs(grey[1].astype(int) - 90) <= 2)
    batch = next(iter(data.train_dataset(f"folder:{image_folder}", image_shape=(8, 8, 1),
                                         n_bits=8, per_replica_batch_size=3, seed=0)))
    assert batch.shape == (3, 8, 8, 1)


def test_folder_split_subdirectories(tmp_path):
    for split, count in (("train", 2), ("test", 1)):
        for i in range(count):
            write_image(tmp_path / split / f"{i}.png", np.full((4, 4, 1), 10 * i + count))
    name = f"folder:{tmp_path}"
    assert data.num_examples(name, "train") == 2 and data.num_examples(name, "test") == 1
    np.testing.assert_array_equal(split_images(name, "test", (4, 4, 1)), np.full((1, 4, 4, 1), 1))
    (tmp_path / "test" / "0.png").unlink()
    (tmp_path / "test").rmdir()
    with pytest.raises(ValueError, match="no 'test' one"):
        data.num_examples(name, "test")
    with pytest.raises(ValueError, match="not a directory"):
        data.num_examples(f"folder:{tmp_path / 'missing'}", "train")


def test_folder_class_subdirectories_are_the_labels(tmp_path):
    """<split>/<class>/ names a class, numbered over both splits in sorted order; an image
    directly in a split's folder has none (−1). Without split folders, the top folder's
    subdirectories are the classes."""
    for path in ("train/dog/0.png", "train/bird/0.png", "test/cat/0.png", "test/cat/1.png",
                 "test/dog/0.png", "test/loose.png"):
        write_image(tmp_path / path, np.zeros((4, 4, 1)))
    name = f"folder:{tmp_path}"
    assert data.class_names(name) == ("bird", "cat", "dog")

    def labels(split):
        batches = data.eval_dataset(name, image_shape=(4, 4, 1), batch_size=8, split=split)
        return [int(label) for batch in batches for label in batch["label"]]

    assert labels("test") == [1, 1, 2, -1]  # sorted paths: cat/0, cat/1, dog/0, loose
    assert labels("train") == [0, 2]
    flat = tmp_path / "flat"
    for path in ("b/0.png", "a/0.png", "0.png"):
        write_image(flat / path, np.zeros((4, 4, 1)))
    assert data.class_names(f"folder:{flat}") == ("a", "b")
    batch = next(iter(data.eval_dataset(f"folder:{flat}", image_shape=(4, 4, 1), batch_size=8)))
    assert batch["label"].numpy().tolist() == [-1, 0, 1]


def test_a_folder_stored_class_by_class_is_shuffled_as_a_whole(tmp_path, monkeypatch):
    """64 images whose value is their sorted index, like a folder stored class by class. With the
    default ``shuffle_buffer=0`` the first batch of 8 is drawn from the whole folder, even with
    a tiny window for named datasets; an explicit window of 8 only reaches the first 15 paths."""
    for i in range(64):
        write_image(tmp_path / f"{i:02d}.png", np.full((4, 4, 1), 4 * i))
    monkeypatch.setattr(data, "TFDS_SHUFFLE_WINDOW", 4)

    def first_batch_indices(shuffle_buffer):
        batch = next(iter(data.train_dataset(
            f"folder:{tmp_path}", image_shape=(4, 4, 1), n_bits=8, per_replica_batch_size=8,
            seed=0, shuffle_buffer=shuffle_buffer)))
        return cells(batch.numpy(), 8)[:, 0, 0, 0] // 4

    assert max(first_batch_indices(0)) >= 32
    assert max(first_batch_indices(8)) <= 15


def write_formats(root):
    """The same 12×16 picture in every encoding a folder may hold; returns ``(rgb, grey)``."""
    from PIL import Image

    rgb = np.random.RandomState(1).randint(0, 256, (12, 16, 3)).astype(np.uint8)
    grey = rgb[..., 0]
    picture = Image.fromarray(rgb)
    root.mkdir(parents=True, exist_ok=True)
    picture.save(root / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full(grey.shape, 7, np.uint8)])).save(root / "rgba.png")
    picture.quantize(256).save(root / "palette.png")
    Image.fromarray(grey).save(root / "grey.png")
    Image.fromarray(grey).convert("LA").save(root / "grey_alpha.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(root / "grey_16bit.png")
    picture.convert("CMYK").save(root / "cmyk.jpg", quality=100)
    Image.fromarray(grey).save(root / "grey.jpg", quality=100)
    return rgb, grey


def test_every_png_and_jpeg_kind_gives_the_model_channels(tmp_path):
    """Grey, grey+alpha, RGBA, palette and 16-bit PNGs, CMYK and grey JPEGs, for 1 and 3
    channels (a CMYK JPEG cannot be decoded to 1 channel directly: data.py goes through RGB)."""
    rgb, grey = write_formats(tmp_path)
    name = f"folder:{tmp_path}"
    order = sorted(p.name for p in tmp_path.iterdir())
    colour = dict(zip(order, split_images(name, "test", (12, 16, 3))))
    mono = dict(zip(order, split_images(name, "test", (12, 16, 1))))
    assert data.bad_images(DataConfig(dataset=name)) == []
    luma = np.round(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])
    for lossless in ("rgb.png", "rgba.png"):
        np.testing.assert_array_equal(colour[lossless], rgb)
        assert np.max(np.abs(mono[lossless][..., 0] - luma)) <= 0.5 + 1e-6
    for grey_png in ("grey.png", "grey_alpha.png", "grey_16bit.png"):
        np.testing.assert_array_equal(mono[grey_png][..., 0], grey)  # grey stays grey exactly
        np.testing.assert_array_equal(colour[grey_png], np.repeat(grey[..., None], 3, -1))
    assert np.mean(np.abs(colour["palette.png"].astype(int) - rgb)) < 20  # 256 colours
    assert np.mean(np.abs(colour["cmyk.jpg"].astype(int) - rgb)) < 20  # lossy, via CMYK
    assert np.mean(np.abs(mono["cmyk.jpg"][..., 0].astype(int) - luma)) < 20
    # A grey JPEG decodes to R = G = B, and to that same grey for one channel.
    np.testing.assert_array_equal(colour["grey.jpg"], np.repeat(mono["grey.jpg"], 3, -1))
    assert np.mean(np.abs(mono["grey.jpg"][..., 0].astype(int) - grey)) < 20  # lossy noise


def test_undecodable_files_are_named_skipped_and_not_numbered(tmp_path):
    """Bad files between good ones: the split is the good ones, numbered 0..n-1 in path order;
    bad_images names each bad file with TensorFlow's reason, or raises for on_bad_image=stop."""
    for i in range(4):
        write_image(tmp_path / f"{2 * i}.png", np.full((4, 4, 1), 10 * i))
    truncated = tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy()[:50]
    (tmp_path / "1.jpg").write_bytes(truncated)
    (tmp_path / "3.png").write_bytes(b"")
    (tmp_path / "5.png").write_text("not an image")
    (tmp_path / "7.png").symlink_to(tmp_path / "missing.png")
    name = f"folder:{tmp_path}"
    assert data.num_examples(name, "train") == 4
    images = split_images(name, "test", (4, 4, 1))  # asserts the indices are 0..3
    np.testing.assert_array_equal(images[:, 0, 0, 0], [0, 10, 20, 30])
    bad = data.bad_images(DataConfig(dataset=name))
    assert [b.path for b in bad] == [str(tmp_path / f) for f in ("1.jpg", "3.png", "5.png",
                                                                  "7.png")]
    reasons = [b.reason for b in bad]
    assert "Invalid JPEG data" in reasons[0] and reasons[1] == "Input is empty."
    assert reasons[2].startswith("Unknown image file format")
    assert "No such file or directory" in reasons[3]
    assert not any("{{" in r or "[Op:" in r for r in reasons)
    with pytest.raises(ValueError, match=r"image \S+/1.jpg cannot be decoded: .*\(and 3 more\)"):
        data.bad_images(DataConfig(dataset=name, on_bad_image="stop"))
    batch = next(iter(data.train_dataset(name, image_shape=(4, 4, 1), n_bits=8,
                                         per_replica_batch_size=8, seed=0)))
    assert batch.shape == (8, 4, 4, 1)
    for path in (tmp_path / f"{2 * i}.png" for i in range(4)):
        path.write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 8 images .* can be decoded"):
        data.num_examples(name, "train")


# Real MNIST from the repository's canonical files.

def raw_mnist_images(prefix):
    """uint8 ``[N, 28, 28]`` read straight from an IDX archive of data/mnist."""
    with gzip.open(os.path.join(data.MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 2051
    count = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, 28, 28)


def test_mnist_has_the_canonical_split_sizes(mnist_data_dir):
    assert data.num_examples("mnist", "train", data_dir=mnist_data_dir) == 60000
    assert data.num_examples("mnist", "test", data_dir=mnist_data_dir) == 10000


def test_mnist_test_split_is_the_canonical_test_set(mnist_data_dir):
    batches = list(data.eval_dataset("mnist", image_shape=MNIST_SHAPE, batch_size=2500,
                                     data_dir=mnist_data_dir))
    images = np.concatenate([b["image"] for b in batches])[..., 0]
    raw = raw_mnist_images("t10k")
    assert images.shape == raw.shape == (10000, 28, 28)
    assert abs(images.mean() - 33.7912) < 1e-3  # the known test-set pixel mean
    # The same 10,000 images (tfds stores them in another order).
    np.testing.assert_array_equal(np.unique(images.reshape(10000, -1), axis=0),
                                  np.unique(raw.reshape(10000, -1), axis=0))


def test_mnist_labels_are_the_canonical_labels(mnist_data_dir):
    """Every test image's label is the one data/mnist's label archive gives the same image."""
    with gzip.open(os.path.join(data.MNIST_DIR, "t10k-labels-idx1-ubyte.gz")) as f:
        raw = f.read()
    assert int.from_bytes(raw[:4], "big") == 2049
    raw_labels = np.frombuffer(raw, np.uint8, offset=8)
    label_of = {}
    for image, label in zip(raw_mnist_images("t10k"), raw_labels):
        label_of.setdefault(image.tobytes(), set()).add(int(label))
    batch = next(iter(data.eval_dataset("mnist", image_shape=MNIST_SHAPE, batch_size=10_000,
                                        data_dir=mnist_data_dir)))
    labels = batch["label"].numpy()
    assert sorted(np.bincount(labels)) == sorted(np.bincount(raw_labels))
    for image, label in zip(batch["image"].numpy(), labels):
        assert int(label) in label_of[image[..., 0].tobytes()]
    assert data.class_names("mnist", data_dir=mnist_data_dir) == tuple("0123456789")


def test_mnist_train_pixel_mean(mnist_data_dir):
    total = 0
    for batch in data.eval_dataset("mnist", image_shape=MNIST_SHAPE, batch_size=5000,
                                   split="train", data_dir=mnist_data_dir):
        total += int(np.sum(batch["image"].numpy(), dtype=np.int64))
    assert abs(total / (60000 * 784) - 33.3184) < 1e-3  # 0.1307 · 255, the usual normaliser


def test_mnist_training_batches(mnist_data_dir):
    ds = data.train_dataset("mnist", image_shape=MNIST_SHAPE, n_bits=8, per_replica_batch_size=64,
                            seed=0, shard_index=1, num_shards=2, data_dir=mnist_data_dir)
    batch = next(iter(ds)).numpy()
    assert batch.shape == (64, *MNIST_SHAPE)
    assert batch.min() >= -0.5 and batch.max() < 0.5
    # Mostly background: about 19% of MNIST pixels are non-zero.
    assert 0.1 < np.mean(cells(batch, 8) > 0) < 0.3


def test_train_stream_does_not_depend_on_the_sharding():
    """With the stored order, shards 0 and 1 with batch b together are one process's batch 2b:
    the same images with the same noise (what makes 2 processes train like 1)."""
    with mocked_tfds(num_examples=8):
        options = dict(image_shape=CIFAR_SHAPE, n_bits=8, seed=3, shuffle_buffer=1)
        whole = [b.numpy() for b in data.train_dataset(
            "cifar10", per_replica_batch_size=4, **options).take(4)]  # crosses an epoch
        halves = [[b.numpy() for b in data.train_dataset(
            "cifar10", per_replica_batch_size=2, shard_index=rank, num_shards=2,
            **options).take(4)] for rank in (0, 1)]
    for step in range(4):
        joined = np.stack([halves[0][step][0], halves[1][step][0],
                           halves[0][step][1], halves[1][step][1]])
        np.testing.assert_array_equal(joined, whole[step])
    assert not np.array_equal(whole[0], whole[2])  # epoch 2 has fresh noise


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_the_class_counts_are_tfds_label_features(name):
    """num_classes knows each named dataset's classes without preparing it: the count must be
    the size of the ClassLabel ``label`` feature tfds declares (0 where it declares none)."""
    import tensorflow_datasets as tfds

    builder_class = tfds.builder_cls(data.DATASETS[name].tfds_name.split("/")[0])
    config_name = (data.DATASETS[name].tfds_name.split("/") + [None])[1]
    builder = builder_class(config=config_name) if config_name else builder_class()
    features = builder.info.features
    label = features["label"] if "label" in features.keys() else None
    declared = label.num_classes if isinstance(label, tfds.features.ClassLabel) else 0
    assert data.DATASETS[name].num_classes == declared
    if declared:
        assert data.num_classes(name) == declared
    else:
        with pytest.raises(ValueError, match="has no class labels"):
            data.num_classes(name)


def test_folder_classes_for_a_class_conditional_model(tmp_path):
    """A folder's classes are its class subdirectories; a loose image, or a single class, is an
    error naming the fix."""
    for path in ("train/dog/0.png", "train/bird/0.png", "test/dog/0.png", "test/cat/0.png"):
        write_image(tmp_path / "good" / path, np.zeros((4, 4, 1)))
    assert data.num_classes(f"folder:{tmp_path / 'good'}") == 3
    write_image(tmp_path / "good" / "test" / "loose.png", np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="loose.png .and 0 more. is in no class subdirectory: "
                                         "move the images into"):
        data.num_classes(f"folder:{tmp_path / 'good'}")
    write_image(tmp_path / "one" / "only" / "0.png", np.zeros((4, 4, 1)))
    with pytest.raises(ValueError, match="has 1 class subdirectory"):
        data.num_classes(f"folder:{tmp_path / 'one'}")


def test_the_labelled_training_stream_pairs_each_image_with_its_class(tmp_path):
    """With ``labels`` the training stream yields ``(images, labels)``: in the stored order
    (shuffle_buffer=1) the images are those without labels, and each label is the class the
    evaluation pipeline gives the same image."""
    for index, path in enumerate(("a/0.png", "a/1.png", "b/0.png", "c/0.png", "c/1.png",
                                  "c/2.png")):
        write_image(tmp_path / path, np.full((4, 4, 1), 40 * index))
    name, options = f"folder:{tmp_path}", dict(image_shape=(4, 4, 1), n_bits=8, seed=1,
                                              per_replica_batch_size=6, shuffle_buffer=1)
    images, labels = next(iter(data.train_dataset(name, labels=True, **options)))
    plain = next(iter(data.train_dataset(name, **options)))
    np.testing.assert_array_equal(images.numpy(), plain.numpy())
    assert labels.dtype == tf.int64 and labels.numpy().tolist() == [0, 0, 1, 2, 2, 2]
    evaluated = next(iter(data.eval_dataset(name, image_shape=(4, 4, 1), batch_size=6)))
    np.testing.assert_array_equal(cells(images.numpy(), 8), evaluated["image"].numpy())
    assert evaluated["label"].numpy().tolist() == labels.numpy().tolist()
