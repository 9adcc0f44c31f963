"""The yardsticks of glow_nxn/diagnostics.py: the independent-pixel floor and spike counting."""
import math

import numpy as np
import pytest

from glow_nxn import diagnostics


def test_independent_pixel_floor_by_hand():
    """Two pixels, four training images: pixel 0 is always 0; pixel 1 is 0, 0, 0, 255."""
    train = np.array([[0, 0], [0, 0], [0, 0], [0, 255]], np.uint8)
    test = np.array([[0, 255]], np.uint8)
    denominator = 4 + 128
    expected = -(math.log2(4.5 / denominator) + math.log2(1.5 / denominator)) / 2
    assert diagnostics.independent_pixel_bits_per_dim(train, test) == pytest.approx(expected)


def test_independent_pixel_floor_of_uniform_noise_is_about_eight_bits():
    rng = np.random.RandomState(0)
    train = rng.randint(0, 256, size=(20000, 3), dtype=np.uint8)
    test = rng.randint(0, 256, size=(2000, 3), dtype=np.uint8)
    assert diagnostics.independent_pixel_bits_per_dim(train, test) == pytest.approx(8.0, abs=0.02)


def test_independent_pixel_floor_of_mnist(mnist_data_dir):
    """1.689 bits/dim: the number the issue measured and the docs compare with."""
    from glow_nxn import data
    from glow_nxn.config import DataConfig
    from glow_nxn.distributed import Replicas

    def images(split):
        dataset = data.evaluation_split(DataConfig(dataset="mnist", data_dir=mnist_data_dir),
                                        Replicas(), image_shape=(28, 28, 1),
                                        batch_size=10_000, split=split)
        return np.concatenate([batch["image"].numpy() for batch in dataset])

    floor = diagnostics.independent_pixel_bits_per_dim(images("train"), images("test"))
    assert floor == pytest.approx(1.689, abs=5e-4)


def records(losses, steps=10):
    return [{"kind": "train", "step": steps * (i + 1), "steps": steps, "bits_per_dim": b}
            for i, b in enumerate(losses)]


def test_running_means_cover_the_window():
    means = diagnostics.running_means(records([4.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0]), window=50)
    assert means[0] == (50, pytest.approx((4 + 3 + 2 + 1 + 1) / 5))
    assert means[-1] == (70, pytest.approx((2 + 1 + 1 + 1 + 1) / 5))  # steps 21..70


def test_spikes_are_counted_once_per_stretch_after_the_warm_up():
    calm = [3.0, 2.5, 2.0] + [1.5] * 20
    assert diagnostics.count_spikes(records(calm)) == (0, 0)
    one = calm + [1.5 + 3.0] * 3 + [1.5] * 10
    assert diagnostics.count_spikes(records(one)) == (1, 0)
    two = one + [1.5 + 3.0] * 3 + [1.5] * 10 + [{"kind": "recovery"}]
    assert diagnostics.count_spikes(records(two[:-1]) + [two[-1]]) == (2, 1)
    # A rise before the end of the warm-up is not a spike.
    early = [2.0] * 5 + [6.0] * 5 + [1.5] * 10
    assert diagnostics.count_spikes(records(early), after_step=200) == (0, 0)
    assert diagnostics.count_spikes(records(early), after_step=0) == (1, 0)


def test_the_warmup_ends_where_the_logged_learning_rate_peaks():
    def logged(rates):
        return [{"kind": "train", "step": 10 * (i + 1), "learning_rate": rate}
                for i, rate in enumerate(rates)]

    # A warm-up to 3e-3 over 60 steps, then a cosine: the peak is logged at step 60.
    assert diagnostics.warmup_end(logged([5e-4, 1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 2.9e-3])) == 60
    # A constant rate after the warm-up: its first step at the peak.
    assert diagnostics.warmup_end(logged([1e-3, 2e-3, 3e-3, 3e-3, 3e-3])) == 30
    # A roll-back's lower rate afterwards does not move it; no rates at all give 0.
    assert diagnostics.warmup_end(logged([1e-3, 3e-3, 2.9e-3, 1.5e-3])) == 20
    assert diagnostics.warmup_end([{"kind": "eval", "step": 10}]) == 0


def test_the_surviving_history_drops_steps_a_resume_or_a_roll_back_replayed():
    first = records([3.0, 2.0, 1.9, 1.8])  # steps 10..40; the run stops at 40
    resumed = [{"kind": "start", "step": 20}] + [  # from the step-20 checkpoint
        {"kind": "train", "step": step, "steps": 10, "bits_per_dim": bits}
        for step, bits in ((30, 2.5), (40, 2.4))]
    test = {"kind": "test", "step": 40, "bits_per_dim": 2.45}
    rolled = [{"kind": "recovery", "step": 50, "rolled_back_to": 30}]
    later = [{"kind": "train", "step": 40, "steps": 10, "bits_per_dim": 2.3}]
    history = diagnostics.surviving_history(
        [{"kind": "start", "step": 0}] + first + resumed + [test] + rolled + later)
    assert [(r["kind"], r["step"], r["bits_per_dim"]) for r in history] == [
        ("train", 10, 3.0), ("train", 20, 2.0), ("train", 30, 2.5), ("train", 40, 2.3)]


def test_window_means_weight_each_record_by_its_steps():
    history = records([4.0, 2.0, 1.0], steps=10) + [
        {"kind": "train", "step": 35, "steps": 5, "bits_per_dim": 0.5},
        {"kind": "train", "step": 40, "steps": 5, "bits_per_dim": float("nan")}]
    assert diagnostics.window_means(history, width=20) == [
        (1, 20, pytest.approx(3.0)), (21, 35, pytest.approx((10 * 1.0 + 5 * 0.5) / 15))]
