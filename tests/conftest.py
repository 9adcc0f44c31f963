"""Test set-up: select tf-keras before TensorFlow loads, keep TensorFlow's logging quiet, seed
every test, and run the tests in a shuffled order.

**Order.** The files run in a shuffled order, and the tests of each file in a shuffled order
(a file's tests stay together, so its module-scoped fixtures are built once). The order's seed
is drawn anew for every session and printed at the end of the report: ``GLOW_TEST_ORDER_SEED=N``
replays an order, ``GLOW_TEST_ORDER_SEED=none`` keeps the files' own order. A test that passes
only after another has run fails in some run of CI, and the report says how to replay it.
"""
import collections
import os
import random
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glow_nxn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)


import pytest  # noqa: E402

from glow_nxn import data  # noqa: E402
from glow_nxn.keras import keras  # noqa: E402
from mock_datasets import mocked_tfds as _mocked_tfds  # noqa: E402


def _order_seed():
    value = os.environ.get("GLOW_TEST_ORDER_SEED")
    if value is None:
        return random.SystemRandom().randrange(10**6)
    return None if value == "none" else int(value)


ORDER_SEED = _order_seed()


def pytest_terminal_summary(terminalreporter):
    """The order's seed, at the end of the report (shown with ``-q`` too)."""
    if ORDER_SEED is None:
        terminalreporter.write_line("test order: as in the files (GLOW_TEST_ORDER_SEED=none)")
    else:
        terminalreporter.write_line(f"test order: shuffled; GLOW_TEST_ORDER_SEED={ORDER_SEED} "
                                    f"replays it, GLOW_TEST_ORDER_SEED=none keeps the files' order")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Shuffle the files, and the tests within each file (before pytest groups the tests of a
    parametrised module-scoped fixture)."""
    if ORDER_SEED is None:
        return
    generator = random.Random(ORDER_SEED)
    by_file = collections.defaultdict(list)
    for item in items:
        by_file[item.nodeid.split("::")[0]].append(item)
    files = sorted(by_file)
    generator.shuffle(files)
    shuffled = []
    for name in files:
        tests = by_file[name]
        generator.shuffle(tests)
        shuffled.extend(tests)
    items[:] = shuffled


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
