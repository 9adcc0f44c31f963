r"""Yardsticks for a training run: the independent-pixel floor, loss-spike counting and curves.

**Independent pixels.** The simplest model of 8-bit images with no learning across pixels gives
each pixel position ``p`` and value ``v`` the probability

.. math::  P_p(v) = \frac{c_p(v) + \tfrac12}{N + 256 \cdot \tfrac12},

``c_p(v)`` counting the ``N`` training images whose pixel ``p`` is ``v`` (add-½ smoothing, so an
unseen value costs finitely many bits). Its test bits/dim is the mean over test images and
positions of ``−log₂ P_p(x_p)``: a discrete code length, directly comparable with a flow's
dequantised bits/dim (which bounds a discrete code length from above). A flow that scores worse
than this floor has learnt less than per-pixel histograms.

**Spikes.** From a run's ``metrics.jsonl`` train records (mean bits/dim over each logging window
of ``steps`` steps), the running mean over the last ``window`` steps is compared with its lowest
value so far; a spike is a stretch where it is more than ``threshold`` bits/dim above that lowest
value, counted once per stretch, after ``after_step``: the end of the warm-up, which
:func:`warmup_end` reads off the logged learning rates (the warm-up may be shorter than
``--warmup_steps``: at most ``--warmup_share`` of the run).

**Curves.** A run resumed or rolled back logs some steps twice; :func:`surviving_history` keeps
the records of the weights' own past, and :func:`window_means` averages them over fixed windows
of steps (bench/plot_learning_curve.py draws and prints both).
"""
import numpy as np


def independent_pixel_bits_per_dim(train_images, test_images, smoothing=0.5):
    """The floor of the module docstring: uint8 ``[N, ...]`` train and ``[M, ...]`` test images."""
    train = np.asarray(train_images, np.uint8).reshape(len(train_images), -1)
    test = np.asarray(test_images, np.uint8).reshape(len(test_images), -1)
    positions = train.shape[1]
    counts = np.zeros([positions, 256], np.float64)
    np.add.at(counts, (np.broadcast_to(np.arange(positions), train.shape), train), 1.0)
    log2_probability = np.log2(counts + smoothing) - np.log2(len(train) + 256 * smoothing)
    return float(-np.mean(log2_probability[np.arange(positions), test]))


def surviving_history(records, kinds=("train", "test")):
    """The records of ``kinds`` on the path the run's weights actually took, in step order.

    A run that resumes from a checkpoint older than its last record (a ``start`` record at step
    ``s``) or rolls back after a divergence (a ``recovery`` record back to step ``r``) logs the
    steps past ``s`` or ``r`` twice; the later records replace the earlier ones, so a
    curve drawn from the result is that of the final weights' own past.
    """
    kept = []
    for record in records:
        cut = {"start": record.get("step"),
               "recovery": record.get("rolled_back_to")}.get(record.get("kind"))
        if cut is not None:
            kept = [old for old in kept if old["step"] <= cut]
        elif record.get("kind") in kinds:
            kept.append(record)
    return kept


def window_means(records, width=1000):
    """``[(first step, last step, mean train bits/dim)]`` over consecutive windows of ``width``
    steps (steps 1..width, width+1..2·width, …), each train record of ``steps`` steps ending
    at ``step`` weighted by its steps and counted in the window of its last step; the last
    window may be partial. Records should be :func:`surviving_history`'s."""
    sums = {}
    for record in records:
        if record.get("kind") != "train" or not np.isfinite(record["bits_per_dim"]):
            continue
        index = (record["step"] - 1) // width
        total, steps, last = sums.get(index, (0.0, 0, 0))
        sums[index] = (total + record["steps"] * record["bits_per_dim"],
                       steps + record["steps"], max(last, record["step"]))
    return [(index * width + 1, last, total / steps)
            for index, (total, steps, last) in sorted(sums.items()) if steps]


def running_means(records, window=50):
    """``[(step, mean bits/dim over the last ≥ window steps)]`` from train records (each the mean
    of ``steps`` steps ending at ``step``), once a full window has been seen."""
    means, recent = [], []
    for record in records:
        if record.get("kind") != "train" or not np.isfinite(record["bits_per_dim"]):
            continue
        recent.append((record["steps"], record["bits_per_dim"]))
        while sum(steps for steps, _ in recent[1:]) >= window:
            recent.pop(0)
        covered = sum(steps for steps, _ in recent)
        if covered >= window:
            mean = sum(steps * bits for steps, bits in recent) / covered
            means.append((record["step"], mean))
    return means


def warmup_end(records):
    """The step of the first train record logged at the run's highest learning rate: where the
    warm-up ended, however long it was (0 if no record has a learning rate)."""
    rates = [(record["step"], record["learning_rate"]) for record in records
             if record.get("kind") == "train" and "learning_rate" in record]
    if not rates:
        return 0
    peak = max(rate for _, rate in rates)
    return next(step for step, rate in rates if rate >= peak * (1 - 1e-6))


def count_spikes(records, window=50, threshold=0.3, after_step=0):
    """Spikes (module docstring) in a run's train records, and recoveries the run logged.

    Returns ``(spikes, recoveries)``: stretches of the running mean more than ``threshold`` above
    its lowest value, after ``after_step``; and the number of ``recovery`` records (roll-backs
    of the divergence guard, each a spike it caught).
    """
    spikes, lowest, inside = 0, np.inf, False
    for step, mean in running_means(records, window):
        if step <= after_step:
            lowest = min(lowest, mean)
            continue
        if mean > lowest + threshold:
            spikes += 0 if inside else 1
            inside = True
        else:
            inside = False
            lowest = min(lowest, mean)
    recoveries = sum(1 for record in records if record.get("kind") == "recovery")
    return spikes, recoveries
