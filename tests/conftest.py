"""Test set-up: select tf-keras before TensorFlow loads and keep TensorFlow's logging quiet."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glow_nxn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)


import pytest  # noqa: E402

from glow_nxn import data  # noqa: E402
from glow_nxn.keras import keras  # noqa: E402
from mock_datasets import mocked_tfds as _mocked_tfds  # noqa: E402


@pytest.fixture(autouse=True)
def seeded():
    """Seed Python, NumPy and TensorFlow before every test.

    The coupling networks draw their first convolutions from the global seed, so without this a
    test sees a different model on every run, and on every position in the suite.
    ``GLOW_TEST_SEED`` picks another seed, to probe the tolerances for luck.
    """
    keras.utils.set_random_seed(int(os.environ.get("GLOW_TEST_SEED", "0")))


@pytest.fixture
def mocked_tfds():
    """The :func:`mock_datasets.mocked_tfds` context manager, as a fixture."""
    return _mocked_tfds


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    """A tfds data_dir with MNIST prepared offline from data/mnist (the default manual_dir)."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    data.prepare("mnist", data_dir=data_dir)
    return data_dir
