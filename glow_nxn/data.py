r"""Input pipelines: named datasets through tensorflow-datasets, or a folder of images.

Named datasets (:data:`DATASETS`; every function takes the name as its first argument):

==============  =================================  ===========  ==============================
name            tfds builder                       image shape  splits ``train`` / ``test``
==============  =================================  ===========  ==============================
mnist           ``mnist``                          28×28×1      train / test (60,000 / 10,000)
cifar10         ``cifar10``                        32×32×3      train / test (50,000 / 10,000)
imagenet32      ``downsampled_imagenet/32x32``     32×32×3      train / validation
imagenet64      ``downsampled_imagenet/64x64``     64×64×3      train / validation
celeba_hq_256   ``celeb_a_hq/256``                 256×256×3    train[:27000] / train[27000:]
==============  =================================  ===========  ==============================

``imagenet32``/``imagenet64`` are the downsampled ImageNet of van den Oord et al. (2016),
http://image-net.org/small/, the release that RealNVP, Glow and the paper's Table 2 report
bits/dim on (Glow's ``imagenet-oord``). That site no longer serves the files, so tfds needs them as
manual files: ``train_32x32.tar`` and ``valid_32x32.tar`` (or ``*_64x64.tar``) in ``manual_dir``.
``celeba_hq_256`` needs ``data256x256.tar`` (built as in Karras et al.'s progressive GAN repository)
in ``manual_dir``; tfds has only a train split, so the last 3,000 images are the test split, as in
Glow. Its 5-bit setting belongs to the model preset, not here.

A dataset is prepared (once, into ``data_dir``, tfds's default when ``None``) from the files in
``manual_dir`` and never downloaded: tfds's download manager takes a file from ``manual_dir`` when
its name is the basename of the URL tfds registers, and checks it against tfds's registered sha256.
``mnist``'s ``manual_dir`` defaults to the repository's ``data/mnist``, which holds the four
canonical archives, so MNIST works offline out of the box. A dataset that is not prepared and whose
files are missing raises :class:`DatasetUnavailableError` saying which files to put where. With
several processes, call :func:`prepare` on one of them first, so they do not all write the
same directory.

A folder of images is named ``"folder:<directory>"``. Every ``.png``, ``.jpg`` or ``.jpeg`` under it
(recursively, in sorted path order) is one example, decoded to RGB whatever it holds (grey,
grey+alpha, RGBA, palette or 16-bit PNG; grey, RGB or CMYK JPEG; alpha is dropped), then to the
model's ``C`` channels (``C = 1``: the luma ``0.299 R + 0.587 G + 0.114 B``, rounded, which
leaves a grey image's values unchanged), scaled so that it covers ``H×W`` (bilinear,
antialiased; for a square ``H×W`` the shorter side becomes ``H``) and centre-cropped to ``H×W``.
Splits: if the directory has a ``train`` or a ``test`` subdirectory, split ``s`` is the images
under ``<directory>/s``; otherwise every image is in both splits (no held-out set: test bits/dim
is then a training figure). Classes: an image in a subdirectory of its split's root
(``<directory>/<split>/<class>/…`` or, without splits, ``<directory>/<class>/…``) has the label
of ``<class>``, numbered in the sorted order of the class names of both splits
(:func:`class_names`); an image directly in the root has none (label −1).

**Files that cannot be read or decoded** (truncated, empty, not an image, a dangling link) are
found before any example is numbered: the first time a process uses a split, it decodes every
file of it once, in one parallel tf.data pass, and drops the ones that fail
(:func:`bad_images` names them; with ``on_bad_image="stop"`` it raises instead). So an example's
index, hence its noise and its shard, is its position among the split's *decodable* files: the
streams stay deterministic and every process drops the same files, and the
documented equivalence of ``n`` processes with batch ``b`` and one with batch ``n·b`` holds. The
price is one full decode of every file per process at start-up: measured 0.15 ms of CPU per
28×28 PNG and 0.43 ms per 256×256 JPEG (so about 45 CPU-seconds for 100,000 such JPEGs, spread
over the cores). A file that breaks after the check, during the run, still fails it.

Pipelines:

* :func:`train_dataset`: shard → shuffle → repeat → decode → (shift) → dequantise → batch →
  prefetch; an endless stream of float32 ``[B, H, W, C]`` in ``[−0.5, 0.5)`` (see
  :mod:`glow_nxn.objectives` for the n-bit reduction and dequantisation), deterministic given
  ``seed`` and the shard.
* :func:`eval_dataset`: one pass over a split, in order, of ``{"image": uint8 [B, H, W, C],
  "index": int64 [B], "label": int64 [B]}``; with :func:`evaluation_noise`, a checkpoint's test
  bits/dim is the same on every run and for any number of processes. ``label`` is the class
  (tfds's ``label`` feature, or a folder's class subdirectory), −1 for an image without one.
"""
import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import glow_nxn
from glow_nxn import objectives
from glow_nxn.config import FOLDER_PREFIX, check_folder_path, check_int, check_positive_int
from glow_nxn.errors import first_line

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# The training stream's shuffle window over a named dataset (shuffle_buffer=0).
TFDS_SHUFFLE_WINDOW = 10_000
MNIST_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(glow_nxn.__file__))),
                         "data", "mnist")

# Streams of random numbers, kept apart by the second word of the base seed.
_TRAIN_STREAM = 1
_EVAL_STREAM = 2
# Philox named explicitly: "auto_select" may pick another algorithm on another device, and the
# noise must not depend on where it is drawn.
_RNG = "philox"


class DatasetUnavailableError(ValueError):
    """A named dataset is neither prepared in ``data_dir`` nor preparable from ``manual_dir``."""


@dataclasses.dataclass(frozen=True)
class _TfdsDataset:
    """A named dataset: its tfds builder, native ``(H, W, C)``, splits and manual files."""

    tfds_name: str
    image_shape: tuple
    splits: dict  # our split name -> tfds split
    manual_files: tuple  # what tfds reads from manual_dir
    source: str  # where the manual files come from
    default_manual_dir: str = None
    num_classes: int = 0  # classes of tfds's ClassLabel "label" feature (0: no labels)


DATASETS = {
    "mnist": _TfdsDataset(
        "mnist", (28, 28, 1), {"train": "train", "test": "test"},
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        "the repository's data/mnist", default_manual_dir=MNIST_DIR, num_classes=10),
    "cifar10": _TfdsDataset(
        "cifar10", (32, 32, 3), {"train": "train", "test": "test"},
        ("cifar-10-binary.tar.gz",), "https://www.cs.toronto.edu/~kriz/", num_classes=10),
    "imagenet32": _TfdsDataset(
        "downsampled_imagenet/32x32", (32, 32, 3), {"train": "train", "test": "validation"},
        ("train_32x32.tar", "valid_32x32.tar"), "a copy of http://image-net.org/small/"),
    "imagenet64": _TfdsDataset(
        "downsampled_imagenet/64x64", (64, 64, 3), {"train": "train", "test": "validation"},
        ("train_64x64.tar", "valid_64x64.tar"), "a copy of http://image-net.org/small/"),
    "celeba_hq_256": _TfdsDataset(
        "celeb_a_hq/256", (256, 256, 3), {"train": "train[:27000]", "test": "train[27000:]"},
        ("data256x256.tar",),
        "https://github.com/tkarras/progressive_growing_of_gans#preparing-datasets-for-training"),
}


def prepare(name, *, data_dir=None, manual_dir=None):
    """Prepare the named dataset into ``data_dir`` if it is not there yet (no-op for a folder).

    Raises:
      DatasetUnavailableError: not prepared, and the files it needs are not in ``manual_dir``
        (or do not match tfds's checksums).
    """
    if _folder(name) is None:
        _prepared_builder(name, data_dir, manual_dir)


def check_paths(config):
    """ValueError unless the folders ``config`` (a :class:`~glow_nxn.config.DataConfig`) names
    can be used: a ``folder:`` directory exists, ``manual_dir`` (if given) is a folder, and
    ``data_dir`` (if given) is a folder or can become one. Called before any work, so a mistyped
    path is one line at once, not a failure in the middle of preparing a dataset."""
    _folder(config.dataset)
    if config.manual_dir and not os.path.isdir(config.manual_dir):
        raise ValueError(f"manual_dir {config.manual_dir} is not a folder: name the folder that "
                         f"holds the dataset's downloaded files")
    if config.data_dir:
        check_folder_path("data_dir", config.data_dir)


def check_image_shape(name, image_shape):
    """ValueError unless the dataset ``name`` can feed a model of ``image_shape`` ``(H, W, C)``:
    a named dataset's images are of one shape; a folder's are resized to any."""
    if _folder(name) is not None:
        return
    native_shape = _named_dataset(name).image_shape
    if tuple(image_shape) != native_shape:
        raise ValueError(f"{name} images are {native_shape} but the model's image_shape is "
                         f"{tuple(image_shape)}: train a model of that shape (the {name} preset) "
                         f"or use a dataset of {tuple(image_shape)} images")


def prepare_once(config, replicas):
    """Prepare ``config.dataset`` (a :class:`~glow_nxn.config.DataConfig`) before any process
    reads it: with several processes rank 0 prepares it while the others wait.

    ``replicas`` is a :class:`glow_nxn.distributed.Replicas`. Without the wait, every process
    would find the dataset unprepared and write the same ``data_dir`` at once. A single process
    does nothing here: it prepares the dataset when it first reads it.
    """
    if replicas.size == 1:
        return
    if replicas.is_chief:
        prepare(config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir)
    replicas.barrier()


def training_stream(config, replicas, *, image_shape, n_bits, batch_size, seed, augment=True,
                    labels=False):
    """This process's endless training stream of the run's data: :func:`train_dataset` of
    ``config`` (a :class:`~glow_nxn.config.DataConfig`), sharded by ``replicas``, ``batch_size``
    per process. ``augment=False`` leaves out the shift augmentation (the init batch);
    ``labels`` yields ``(images, labels)``."""
    return train_dataset(
        config.dataset, image_shape=image_shape, n_bits=n_bits, per_replica_batch_size=batch_size,
        seed=seed, shard_index=replicas.rank, num_shards=replicas.size, data_dir=config.data_dir,
        manual_dir=config.manual_dir, augment_shift=config.augment_shift if augment else 0,
        shuffle_buffer=config.shuffle_buffer, labels=labels)


def num_classes(name):
    """The number of classes of the dataset ``name``, for a class-conditional model; ValueError
    when it has none, or when a folder has images outside class subdirectories.

    Known without preparing the dataset (every process may ask before rank 0 prepares it): a
    named dataset's count is in :data:`DATASETS` (tests/test_data.py checks it against tfds's
    ``label`` feature); a folder's classes are its subdirectories (module docstring).
    """
    folder = _folder(name)
    if folder is None:
        count = DATASETS[name].num_classes
        if not count:
            raise ValueError(f"{name} has no class labels, so no class-conditional model: drop "
                             f"--class_conditional, or use a folder of <split>/<class>/ images")
        return count
    classes = _folder_classes(folder)
    for split in SPLITS:
        root = _split_root(folder, split)
        loose = [path for path in _folder_files(folder, split) if _class_of(root, path) is None]
        if loose:
            raise ValueError(f"a class-conditional model needs the class of every image, and "
                             f"{loose[0]} (and {len(loose) - 1} more) is in no class "
                             f"subdirectory: move the images into {root}/<class>/, or drop "
                             f"--class_conditional")
    if len(classes) < 2:
        raise ValueError(f"{folder} has {len(classes)} class subdirectory: a class-conditional "
                         f"model needs at least 2 (<split>/<class>/*.png)")
    return len(classes)


def evaluation_split(config, replicas, *, image_shape, batch_size, split="test"):
    """This process's part of a split of the run's data: :func:`eval_dataset` of ``config``,
    sharded by ``replicas``."""
    return eval_dataset(config.dataset, image_shape=image_shape, batch_size=batch_size,
                        shard_index=replicas.rank, num_shards=replicas.size,
                        data_dir=config.data_dir, manual_dir=config.manual_dir, split=split)


def num_examples(name, split, *, data_dir=None, manual_dir=None):
    """The number of examples in ``split`` (``"train"`` or ``"test"``) of the dataset ``name``
    (of a folder: its decodable images)."""
    _check_split(split)
    folder = _folder(name)
    if folder is not None:
        return len(_checked_folder(folder, split).good)
    builder = _prepared_builder(name, data_dir, manual_dir)
    return builder.info.splits[DATASETS[name].splits[split]].num_examples


@dataclasses.dataclass(frozen=True)
class BadImage:
    """A file of a folder dataset that cannot be read or decoded, and TensorFlow's reason."""

    path: str
    reason: str


def bad_images(config, splits=SPLITS):
    """The files of ``config``'s folder dataset (a :class:`~glow_nxn.config.DataConfig`) in
    ``splits`` that the pipelines skip, as :class:`BadImage` in path order; ``[]`` for a named
    dataset.

    Raises ValueError naming the first one when ``config.on_bad_image`` is ``"stop"``. Checking
    costs one decode of every file of the splits (cached for the process: the pipelines reuse it).
    """
    folder = _folder(config.dataset)
    if folder is None:
        return []
    found = {}
    for split in splits:
        for bad in _checked_folder(folder, split).bad:
            found.setdefault(bad.path, bad)
    bad = [found[path] for path in sorted(found)]
    if bad and config.on_bad_image == "stop":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"image {bad[0].path} cannot be decoded: {bad[0].reason}{more}; fix or "
                         f"remove it, or pass --on_bad_image=skip to train without it")
    return bad


def train_dataset(name, *, image_shape, n_bits, per_replica_batch_size, seed, shard_index=0,
                  num_shards=1, data_dir=None, manual_dir=None, augment_shift=0,
                  shuffle_buffer=0, labels=False):
    r"""The endless training stream of one process: float32 ``[B, H, W, C]`` in ``[−0.5, 0.5)``
    (with ``labels``, pairs of them and their int64 classes ``[B]``, as :func:`eval_dataset`
    numbers them).

    ``B = per_replica_batch_size``; every batch is full. Process ``shard_index`` of ``num_shards``
    reads the examples whose index ``i`` has ``i mod num_shards = shard_index``, shuffled anew
    every epoch in a buffer of ``shuffle_buffer`` examples (1 keeps the stored order). 0 chooses
    it: the whole shard for a folder, whose records are paths of a few bytes and which may be
    stored class by class (a window over sorted paths would drift from class to class, and the
    loss with it); :data:`TFDS_SHUFFLE_WINDOW` for a named dataset, which tfds shuffled when it
    prepared it and whose records are encoded images. Each image ``x`` becomes

    .. math::  y = (\lfloor x / 2^{8-n} \rfloor + u) / 2^n - 0.5,\quad u \sim U(0, 1)^D

    (:func:`glow_nxn.objectives.dequantize`), with ``u`` drawn from Philox keyed by ``(seed,
    epoch, i)``: fresh in every epoch, the same on every run, and independent of the sharding, so
    with ``shuffle_buffer=1`` two processes with batch ``b`` see exactly the images and noise that
    one process with batch ``2b`` sees. ``augment_shift = s > 0`` first translates each image by a
    random ``(dy, dx) ∈ {−s..s}²`` (same key), filling from the nearest edge pixel (Glow's
    CIFAR-10 augmentation, Keras' ``width_shift_range``/``height_shift_range`` with
    ``fill_mode="nearest"``).
    """
    _check_shards(shard_index, num_shards)
    check_positive_int("per_replica_batch_size", per_replica_batch_size)
    check_int("shuffle_buffer", shuffle_buffer, minimum=0)
    if not (isinstance(augment_shift, int) and 0 <= augment_shift < min(image_shape[:2])):
        raise ValueError(f"augment_shift must be an integer in 0..{min(image_shape[:2]) - 1}, "
                         f"got {augment_shift!r}")
    records, decode = _records(name, "train", image_shape, data_dir, manual_dir)
    base_key = tf.constant([seed, _TRAIN_STREAM], tf.int64)

    def preprocess(epoch, index, labelled):
        record, label = labelled
        epoch_key = tf.random.experimental.stateless_fold_in(base_key, epoch, alg=_RNG)
        noise_key, shift_key = tf.unstack(tf.random.experimental.stateless_split(
            tf.random.experimental.stateless_fold_in(epoch_key, index, alg=_RNG), 2, alg=_RNG))
        image = decode(record)
        if augment_shift:
            image = _random_shift(image, augment_shift, shift_key)
        noise = tf.random.stateless_uniform(image_shape, seed=noise_key, alg=_RNG)
        x = objectives.dequantize(image, n_bits, noise)
        return (x, label) if labels else x

    # Number before sharding, so that an example's index (and so its noise) is its position in
    # the whole split; shard next, so that the processes read disjoint examples whatever the
    # shuffle does; shuffle before repeat, so that every epoch shows each example once; number
    # the stream after repeat, so that position // shard size is the epoch; decode after the
    # shuffle, so that the buffer holds small encoded records.
    mine = records.enumerate().shard(num_shards, shard_index)
    shard_size = int(mine.cardinality())
    if shard_size < 0:  # cardinality unknown to tf.data: count once
        shard_size = int(mine.reduce(0, lambda count, _: count + 1))
    if shard_size == 0:
        raise ValueError(f"shard {shard_index} of {num_shards} of {name!r} is empty; use fewer "
                         f"processes than examples")

    def numbered(position, example):
        index, record = example
        return position // shard_size, index, record

    if shuffle_buffer == 0:
        shuffle_buffer = shard_size if _folder(name) is not None else TFDS_SHUFFLE_WINDOW
    return (mine.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .enumerate()
            .map(numbered)
            .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(per_replica_batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def eval_dataset(name, *, image_shape, batch_size, shard_index=0, num_shards=1, data_dir=None,
                 manual_dir=None, split="test"):
    """One deterministic pass over this process's part of ``split``, in order.

    Yields ``{"image": uint8 [B, H, W, C], "index": int64 [B], "label": int64 [B]}`` with ``B ≤
    batch_size`` (the last batch may be smaller). ``index`` is the position in the whole split, so
    it names an example whatever ``num_shards`` is; process ``shard_index`` gets the indices ``≡
    shard_index (mod num_shards)``. Dequantise with :func:`evaluation_noise` of ``index``.
    ``label`` numbers :func:`class_names`; −1 for an image without a class.
    """
    _check_shards(shard_index, num_shards)
    check_positive_int("batch_size", batch_size)
    records, decode = _records(name, split, image_shape, data_dir, manual_dir)
    # Number before sharding, so that an index is the position in the whole split.
    return (records.enumerate()
            .shard(num_shards, shard_index)
            .map(lambda index, record: {"image": decode(record[0]), "index": index,
                                        "label": record[1]},
                 num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE))


def evaluation_noise(index, image_shape, seed, draw=0):
    """Dequantisation noise for evaluation: float32 ``[B, H, W, C]`` in ``[0, 1)``.

    Example ``index[b]`` (int ``[B]``) gets ``U(0, 1)^(H·W·C)`` from Philox keyed by ``(seed, draw,
    index[b])`` alone, so the same example gets the same noise in any batch, on any process and in
    any run; ``draw`` (an int or an integer scalar tensor) numbers independent draws (e.g. to
    average bits/dim over several).
    """
    # Folded in as int32 whatever its type: the fold's result depends on the dtype, and an int64
    # draw gave other noise than the same Python int (which converts to int32).
    base_key = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, _EVAL_STREAM], tf.int64), tf.cast(draw, tf.int32), alg=_RNG)

    def one(example_index):
        key = tf.random.experimental.stateless_fold_in(base_key, example_index, alg=_RNG)
        return tf.random.stateless_uniform(image_shape, seed=key, alg=_RNG)

    # map_fn, not vectorized_map: pfor has no rule for a per-example seed and would fall back to a
    # while loop anyway, with a warning.
    return tf.map_fn(one, tf.cast(index, tf.int64), fn_output_signature=tf.float32)


def class_names(name, *, data_dir=None, manual_dir=None):
    """The names of the classes that ``label`` numbers in :func:`eval_dataset`, in label order:
    tfds's names of its ``label`` feature, or a folder's class subdirectories (module docstring);
    ``()`` for a dataset without classes."""
    folder = _folder(name)
    if folder is not None:
        return _folder_classes(folder)
    label = _class_label(_prepared_builder(name, data_dir, manual_dir))
    return tuple(label.names) if label is not None else ()


def _class_label(builder):
    """The tfds builder's ``label`` feature if it is a ClassLabel, else None."""
    features = builder.info.features
    label = features["label"] if "label" in features.keys() else None
    return label if isinstance(label, tfds.features.ClassLabel) else None


def _records(name, split, image_shape, data_dir, manual_dir):
    """``(records, decode)``: a dataset of ``(encoded image, int64 label)`` in split order (label
    −1 without a class), and the function that turns an encoded image into uint8 ``[H, W, C]`` of
    ``image_shape``."""
    _check_split(split)
    image_shape = tuple(image_shape)
    folder = _folder(name)
    if folder is not None:
        return _folder_records(folder, split, image_shape)
    check_image_shape(name, image_shape)
    builder = _prepared_builder(name, data_dir, manual_dir)
    # Skip decoding here so that records are decoded only after sharding and shuffling.
    records = builder.as_dataset(split=DATASETS[name].splits[split], shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    image_feature = builder.info.features["image"]
    has_labels = _class_label(builder) is not None
    return (records.map(lambda example: (example["image"], tf.cast(example["label"], tf.int64)
                                         if has_labels else tf.constant(-1, tf.int64))),
            lambda record: tf.ensure_shape(image_feature.decode_example(record), image_shape))


def _named_dataset(name):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}, "
                         f"or {FOLDER_PREFIX}<directory of PNG/JPEG images>")
    return DATASETS[name]


def _prepared_builder(name, data_dir, manual_dir):
    spec = _named_dataset(name)
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    manual_dir = manual_dir or spec.default_manual_dir
    missing = [f for f in spec.manual_files
               if not (manual_dir and os.path.isfile(os.path.join(manual_dir, f)))]
    if missing:
        raise DatasetUnavailableError(
            f"{name} ({spec.tfds_name}) is not prepared in {builder.data_dir} and manual_dir "
            f"{manual_dir} lacks {', '.join(missing)}: put them (from {spec.source}) in a "
            f"directory and pass it as manual_dir, or pass the data_dir of a prepared copy")
    try:
        # try_download_gcs=False: tfds would otherwise look for a prepared copy online first.
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, try_download_gcs=False))
    except Exception as error:  # any failure of tfds's preparation, kept as the cause
        raise DatasetUnavailableError(
            f"preparing {name} ({spec.tfds_name}) from manual_dir {manual_dir} failed with "
            f"{type(error).__name__}: check that {', '.join(spec.manual_files)} are the files "
            f"tfds registers (sha256 in its checksums)") from error
    return builder


def _folder(name):
    """The directory of a ``folder:<directory>`` name, else ``None``."""
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX):
        directory = name[len(FOLDER_PREFIX):]
        if not os.path.isdir(directory):
            raise ValueError(f"{name!r}: {directory!r} is not a directory; give "
                             f"{FOLDER_PREFIX}<an existing directory of PNG/JPEG images>")
        return directory
    return None


def _split_root(directory, split):
    """The folder that holds the images of ``split`` (module docstring's convention)."""
    if any(os.path.isdir(os.path.join(directory, s)) for s in SPLITS):
        root = os.path.join(directory, split)
        if not os.path.isdir(root):
            raise ValueError(f"{directory} has split subdirectories but no {split!r} one: add "
                             f"{root} or remove the split subdirectories")
        return root
    return directory


def _folder_files(directory, split):
    """The sorted image paths of ``split`` under ``directory`` (module docstring's convention)."""
    root = _split_root(directory, split)
    files = sorted(os.path.join(parent, f) for parent, _, names in os.walk(root) for f in names
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_EXTENSIONS)} images under {root}: add some or "
                         f"name another directory")
    return files


@dataclasses.dataclass(frozen=True)
class _CheckedFolder:
    good: tuple  # paths of the decodable files, in split order
    bad: tuple  # BadImage of the others


def _checked_folder(directory, split):
    """The files of ``split`` under ``directory``, sorted into decodable and not (module
    docstring). Cached per process, keyed by each file's size and modification time, so the
    splits and pipelines of one run decode every file once."""
    files = _folder_files(directory, split)
    checked = _check_files(tuple(files), tuple(_stat_key(path) for path in files))
    if not checked.good:
        raise ValueError(f"none of the {len(files)} images under {directory} ({split} split) can "
                         f"be decoded (first: {checked.bad[0].path}: {checked.bad[0].reason}); "
                         f"name a directory of PNG/JPEG images")
    return checked


def _stat_key(path):
    try:
        status = os.stat(path)
    except OSError:  # e.g. a dangling link: the check names it
        return None
    return status.st_size, status.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _check_files(files, stat_keys):
    """Decode every file once, in parallel; the survivors of ``ignore_errors`` are the good ones.
    ``stat_keys`` is only part of the cache key."""
    survivors = (tf.data.Dataset.from_tensor_slices(list(files)).enumerate()
                 .map(lambda index, path: (index, tf.size(_decode_rgb(path))),
                      num_parallel_calls=tf.data.AUTOTUNE)
                 .ignore_errors()
                 .map(lambda index, _: index)
                 .batch(4096))
    decodable = np.zeros(len(files), bool)
    for indices in survivors.as_numpy_iterator():
        decodable[indices] = True
    good = tuple(path for path, ok in zip(files, decodable) if ok)
    bad = tuple(BadImage(path, _why_not_decodable(path))
                for path, ok in zip(files, decodable) if not ok)
    return _CheckedFolder(good=good, bad=bad)


def _why_not_decodable(path):
    """TensorFlow's message for ``path``, without its op names: "Input is empty.", ..."""
    try:
        _decode_rgb(tf.constant(path))
    except tf.errors.OpError as error:
        return first_line(error)
    return "it failed once and then decoded: an unreliable read"


def _decode_rgb(path):
    """uint8 ``[h, w, 3]`` of any PNG/JPEG (and GIF/BMP content): channels=3 is the one setting
    every decoder converts to (a CMYK JPEG cannot be decoded to one channel directly)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


# ITU-R BT.601 luma, as libjpeg's RGB → grey; the weights sum to 1, so grey stays grey.
_LUMA = (0.299, 0.587, 0.114)


def _to_channels(rgb, channels):
    """uint8 ``[h, w, 3]`` → ``[h, w, channels]`` (1: the rounded luma; 3: unchanged)."""
    if channels == 3:
        return rgb
    luma = tf.tensordot(tf.cast(rgb, tf.float32), tf.constant(_LUMA), axes=1)
    return tf.cast(tf.round(luma), tf.uint8)[..., tf.newaxis]


def _class_of(root, path):
    """The class subdirectory of the image ``path`` under its split's ``root``, or None."""
    parts = os.path.relpath(path, root).split(os.sep)
    return parts[0] if len(parts) > 1 else None


def _folder_classes(directory):
    """The sorted class names of a folder dataset over the splits it has (module docstring)."""
    names = set()
    for split in SPLITS:
        try:
            root, files = _split_root(directory, split), _folder_files(directory, split)
        except ValueError:  # a split that is missing or has no images: it has no classes
            continue
        names.update(_class_of(root, path) for path in files)
    return tuple(sorted(names - {None}))


def _folder_records(directory, split, image_shape):
    height, width, channels = image_shape
    if channels not in (1, 3):
        raise ValueError(f"a folder of images gives 1 or 3 channels, but image_shape is "
                         f"{image_shape}: use C = 1 (grey) or 3 (RGB)")

    def decode(path):
        image = _to_channels(_decode_rgb(path), channels)
        return tf.ensure_shape(_cover_and_centre_crop(image, height, width), image_shape)

    files = list(_checked_folder(directory, split).good)
    number = {name: label for label, name in enumerate(_folder_classes(directory))}
    root = _split_root(directory, split)
    labels = [number.get(_class_of(root, path), -1) for path in files]
    return tf.data.Dataset.from_tensor_slices((files, tf.constant(labels, tf.int64))), decode


def _cover_and_centre_crop(image, height, width):
    """uint8 ``[h, w, C]`` → uint8 ``[height, width, C]``: scale by ``max(height/h, width/w)``
    (bilinear, antialiased), then cut the centre ``height × width``."""
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.constant([height, width], tf.float32)
    scaled = tf.maximum(tf.cast(tf.round(size * tf.reduce_max(target / size)), tf.int32),
                        [height, width])
    resized = tf.image.resize(image, scaled, method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    top, left = (scaled[0] - height) // 2, (scaled[1] - width) // 2
    return resized[top:top + height, left:left + width]


def _random_shift(image, max_shift, key):
    """Translate ``[H, W, C]`` by ``(dy, dx)`` uniform in ``{−max_shift..max_shift}²`` (from
    ``key``), each output pixel taking the input pixel ``(i − dy, j − dx)`` clamped to the image."""
    shift = tf.random.stateless_uniform([2], seed=key, minval=-max_shift, maxval=max_shift + 1,
                                        dtype=tf.int32, alg=_RNG)
    shape = tf.shape(image)
    rows = tf.clip_by_value(tf.range(shape[0]) - shift[0], 0, shape[0] - 1)
    cols = tf.clip_by_value(tf.range(shape[1]) - shift[1], 0, shape[1] - 1)
    return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def _check_shards(shard_index, num_shards):
    if not (isinstance(num_shards, int) and num_shards >= 1
            and isinstance(shard_index, int) and 0 <= shard_index < num_shards):
        raise ValueError(f"need integers 0 <= shard_index < num_shards, got shard_index="
                         f"{shard_index!r}, num_shards={num_shards!r}")

