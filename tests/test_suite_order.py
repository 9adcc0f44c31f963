"""The suite's shuffled order (tests/conftest.py): replayable, file by file, switchable off."""
import os
import subprocess
import sys

from test_support import REPO

FILES = ["tests/test_objectives.py", "tests/test_diagnostics.py", "tests/test_config.py"]


def collected(seed):
    """The test ids pytest would run, in order, with ``GLOW_TEST_ORDER_SEED=seed``."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--collect-only", "-q", *FILES], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "GLOW_TEST_ORDER_SEED": seed},
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_the_order_is_shuffled_file_by_file_and_replayed_by_its_seed():
    as_written, first, again, other = (collected(seed) for seed in ("none", "1", "1", "2"))
    assert [i.split("::")[0] for i in as_written] == sorted(
        (i.split("::")[0] for i in as_written), key=FILES.index)
    assert first == again
    assert first != other and first != as_written
    for order in (first, other):
        assert sorted(order) == sorted(as_written)
        files = [i.split("::")[0] for i in order]
        # Each file's tests run together: the file changes once per file.
        assert sum(a != b for a, b in zip(files, files[1:])) == len(FILES) - 1
    # Within a file too, the order is not the written one.
    assert any([i for i in first if i.startswith(name)] !=
               [i for i in as_written if i.startswith(name)] for name in FILES)
