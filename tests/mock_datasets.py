"""Datasets for tests, none downloaded: mocked tfds datasets and MNIST from data/mnist."""
import contextlib
from unittest import mock

import tensorflow_datasets as tfds


@contextlib.contextmanager
def mocked_tfds(num_examples):
    """tfds yields ``num_examples`` fixed random examples for every split of every dataset."""
    # mock_data cannot make `is_prepared` true, so without the patch data.py would look for
    # manual files.
    with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
            tfds.core.DatasetBuilder, "is_prepared", return_value=True):
        yield
