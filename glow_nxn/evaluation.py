r"""Test bits/dim over a whole split, identical for any number of processes, with its spread.

For ``n`` images with per-image bits/dim ``b_1 … b_n`` the result is the mean ``b̄ = Σ b_i / n``,
its standard error ``s / √n`` with the sample standard deviation ``s² = Σ (b_i − b̄)² / (n − 1)``,
and the spread of the ``b_i``: median, 99th percentile (linear interpolation, numpy's default),
maximum and the worst images' indices. A mean far above the median, or a huge standard error,
says a few images are scored very badly.

An image's ``b_i`` comes from ``k`` dequantisation draws. Draw ``j`` gives
``b_ij = −log₂ p̂_j / D`` of the one-draw estimate ``p̂_j = p(y_j) / q(y_j | x)`` of the image's
discrete probability ``P(x)``, ``q`` being the density of the draw ``y_j`` on ``x``'s cell
(``2^(n·D)``, uniform, unless the model has a variational dequantiser; this ``b_ij`` is the
formula of :mod:`glow_nxn.objectives`). Two estimates of ``−log₂ P(x) / D``, each at least that in
expectation:

* the mean ``b_i = (1/k) Σ_j b_ij``, whose expectation is the same for every ``k``: the bound
  the model was trained on, ``E[−log₂ p̂] / D`` (Jensen's gap above ``−log₂ P(x) / D``), with
  less noise;
* the importance-weighted ``b_i = −log₂((1/k) Σ_j p̂_j) / D``, computed as
  ``−(logsumexp_j(−D·ln 2·b_ij) − ln k) / (D·ln 2)``: never above the mean of the same draws
  (Jensen), and its expectation falls towards ``−log₂ P(x) / D`` as ``k`` grows (the bound of
  Burda et al., 2016; for dequantisation, Hoogeboom et al., 2020). It answers "how good is the
  density", the mean "how good is the bound it was trained on".

A class-conditional model is scored given each image's class, ``b_i = −log₂ p(x_i | y_i) / D``
(plus the n-bit offset), and :class:`ClassScores` adds what its classes give: the marginal
bits/dim ``−log₂ ((1/K) Σ_k p(x_i | k)) / D``, comparable to an unconditional model's, and the
accuracy of Bayes' rule ``argmax_k p(x_i | k)`` (the flow as a generative classifier) and, with a
classifier, of its logits.
"""
import collections
import dataclasses
import math

import numpy as np
import tensorflow as tf

from glow_nxn import data, objectives
from glow_nxn.config import check_positive_int
from glow_nxn.distributed import Replicas

NUM_WORST = 5


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Mean test bits/dim over ``num_images`` images, its standard error, and its spread.

    ``importance_weighted`` says how an image's draws were combined (module docstring).
    ``worst`` lists ``(index in the split, bits/dim)`` of the ``NUM_WORST`` worst-scored images,
    worst first. ``num_nonfinite`` counts images whose bits/dim is not finite (a broken model).
    """

    bits_per_dim: float
    standard_error: float
    num_images: int
    num_dequant_samples: int
    importance_weighted: bool
    median: float
    percentile_99: float
    maximum: float
    worst: tuple
    num_nonfinite: int
    classes: "ClassScores" = None

    @property
    def finite(self):
        return self.num_nonfinite == 0

    def summary(self):
        """A JSON-ready dict of every field."""
        fields = dataclasses.asdict(self)
        fields["worst"] = [[int(i), float(b)] for i, b in self.worst]
        if self.classes is None:
            del fields["classes"]
        return fields


@dataclasses.dataclass(frozen=True)
class ClassScores:
    """What a class-conditional model's classes give on the split (module docstring):
    ``bits_per_dim`` of :class:`EvalResult` is then conditional on the true classes; these are the
    marginal bits/dim (mean and standard error), the accuracy of Bayes' rule over ``p(x | k)``,
    and the classifier's accuracy (None without a classifier)."""

    marginal_bits_per_dim: float
    marginal_standard_error: float
    bayes_accuracy: float
    classifier_accuracy: float = None

    def describe(self):
        """These scores in words, on one line."""
        line = (f"marginal bits/dim {self.marginal_bits_per_dim:.4f} ± "
                f"{self.marginal_standard_error:.4f}, Bayes-rule accuracy "
                f"{self.bayes_accuracy:.4f}")
        if self.classifier_accuracy is not None:
            line += f", classifier accuracy {self.classifier_accuracy:.4f}"
        return line


def mean_and_error(values):
    """``(mean, standard error of the mean)`` of ``values [n]``, in float64 (error 0 for one)."""
    values = np.asarray(values, np.float64)
    error = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0
    return float(np.mean(values)), error


def class_scores(labels, marginal_bits, bayes, classified=None):
    """The :class:`ClassScores` of per-image true ``labels``, ``marginal_bits``, Bayes-rule
    predictions ``bayes`` and classifier predictions ``classified`` (None: no classifier)."""
    labels = np.asarray(labels)
    marginal, error = mean_and_error(marginal_bits)
    return ClassScores(
        marginal_bits_per_dim=marginal, marginal_standard_error=error,
        bayes_accuracy=float(np.mean(np.asarray(bayes) == labels)),
        classifier_accuracy=(None if classified is None
                             else float(np.mean(np.asarray(classified) == labels))))


def combine_draws(draw_bits, num_dims, importance_weighted):
    """One bits/dim per image, float64 ``[B]``, from the bits/dim of ``k`` draws, a list of ``k``
    tensors ``[B]``: their mean, or with ``importance_weighted`` the importance-weighted bound of
    the module docstring (``num_dims = D``). One draw gives that draw's value either way."""
    draws = tf.cast(tf.stack(draw_bits), tf.float64)
    if not importance_weighted:
        return tf.reduce_mean(draws, axis=0)
    nats_per_bit = float(num_dims) * math.log(2.0)
    return -(tf.reduce_logsumexp(-nats_per_bit * draws, axis=0)
             - math.log(len(draw_bits))) / nats_per_bit


def summarise(indices, bits, num_dequant_samples=1, classes=None, importance_weighted=False):
    """The :class:`EvalResult` of per-image ``bits`` (float64 ``[n]``) of images ``indices``
    (with ``classes``, a :class:`ClassScores`, for a class-conditional model)."""
    bits, indices = np.asarray(bits, np.float64), np.asarray(indices, np.int64)
    count = bits.size
    if count == 0:
        raise ValueError("the evaluation split is empty")
    mean, standard_error = mean_and_error(bits)
    # Not-finite values sort last, so they are the worst.
    order = np.argsort(np.where(np.isnan(bits), np.inf, bits), kind="stable")[::-1][:NUM_WORST]
    return EvalResult(
        bits_per_dim=mean, standard_error=standard_error, num_images=int(count),
        num_dequant_samples=num_dequant_samples, importance_weighted=importance_weighted,
        median=float(np.median(bits)),
        percentile_99=float(np.percentile(bits, 99)), maximum=float(np.max(bits)),
        worst=tuple((int(indices[i]), float(bits[i])) for i in order),
        num_nonfinite=int(np.sum(~np.isfinite(bits))), classes=classes)


def draw_bits_function(model, seed):
    """A traced ``(images, index, draw) → bits/dim [B]`` of uint8 ``images [B, H, W, C]`` with
    the noise ``data.evaluation_noise(index, ..., seed, draw)`` (``draw`` an integer scalar
    tensor, so that one trace serves every draw)."""
    shape = model.config.image_shape

    @tf.function
    def one_draw(images, index, draw):
        return model.bits_per_dim(images, data.evaluation_noise(index, shape, seed, draw))

    return one_draw


def per_image_bits(model, dataset, seed, num_dequant_samples=1, max_batches=None,
                   importance_weighted=False):
    """``{"index": int64 [n], "bits": float64 [n]}`` of this replica's part of ``dataset``;
    of a class-conditional model (bits given the true class) also ``"label"``,
    ``"marginal_bits"``, ``"bayes"`` (``argmax_k`` of the log-likelihoods summed over the draws)
    and, with a classifier, ``"classified"`` (``argmax_k`` of its logits summed over the draws).

    Each image's dequantisation noise is ``data.evaluation_noise(index, ..., seed, draw)``, a fixed
    function of the image's index in the split, so the numbers do not depend on batch size, the
    number of replicas or the run. With ``num_dequant_samples = k`` an image's bits/dim combines
    ``k`` noise draws: their mean, or the importance-weighted bound (module docstring); a
    class-conditional model's marginal bits/dim likewise.
    """
    config = model.config
    shape, conditional = config.image_shape, config.num_classes > 0

    def to_bits(log_prob):
        return objectives.bits_per_dim(log_prob, config.num_dims, config.n_bits)

    def combine(draw_bits):
        return combine_draws(draw_bits, config.num_dims, importance_weighted)

    one_draw = draw_bits_function(model, seed)

    def image_bits(images, index):
        return {"bits": combine([one_draw(images, index, tf.constant(draw))
                                 for draw in range(num_dequant_samples)])}

    @tf.function
    def class_bits(images, index, labels):
        bits, marginal, summed, logits = [], [], 0.0, 0.0
        for draw in range(num_dequant_samples):
            x = objectives.dequantize(images, config.n_bits,
                                      data.evaluation_noise(index, shape, seed, draw))
            zs, logdet = model.encode(x)
            per_class = logdet[:, None] + model.class_prior.log_prob_per_class(zs)
            bits.append(to_bits(tf.gather(per_class, labels, axis=1, batch_dims=1)))
            marginal.append(to_bits(model.class_prior.mixture(per_class)))
            summed += per_class
            if config.classifier:
                logits += model.class_prior.logits(zs)
        scores = {"bits": combine(bits), "marginal_bits": combine(marginal),
                  "bayes": tf.argmax(summed, axis=1)}
        if config.classifier:
            scores["classified"] = tf.argmax(logits, axis=1)
        return scores

    columns = collections.defaultdict(list)
    for batch_number, batch in enumerate(dataset):
        if max_batches is not None and batch_number >= max_batches:
            break
        if conditional:
            labels = tf.cast(batch["label"], tf.int32)
            if bool(tf.reduce_any(labels < 0)):
                raise ValueError("a class-conditional model is scored given each image's class, "
                                 "and this split has images without one (label -1): evaluate "
                                 "on a dataset with classes")
            scores = class_bits(batch["image"], batch["index"], labels)
            scores["label"] = labels
        else:
            scores = image_bits(batch["image"], batch["index"])
        scores["index"] = batch["index"]
        for name, values in scores.items():
            columns[name].append(values)
    # Every replica returns the same names, even with no batch, so that they gather alike.
    names = ["index", "bits"] + (["label", "marginal_bits", "bayes"] if conditional else []) + (
        ["classified"] if config.classifier else [])
    dtypes = {"bits": tf.float64, "marginal_bits": tf.float64}
    return {name: tf.cast(tf.concat(columns[name], 0), dtypes.get(name, tf.int64))
            if columns[name] else tf.zeros([0], dtypes.get(name, tf.int64)) for name in names}


def evaluate(model, dataset, seed, replicas=None, num_dequant_samples=1, max_batches=None,
             importance_weighted=False):
    """The :class:`EvalResult` of ``model`` on ``dataset`` (``data.eval_dataset`` batches of this
    replica), the same on every replica: per-image values are gathered from all replicas.

    ``max_batches`` limits each replica's batches (a quick estimate during training);
    ``num_dequant_samples`` and ``importance_weighted`` as in :func:`per_image_bits`.
    """
    check_positive_int("num_dequant_samples", num_dequant_samples)
    replicas = replicas or Replicas()
    scores = per_image_bits(model, dataset, seed, num_dequant_samples, max_batches,
                            importance_weighted)
    gathered = {name: replicas.gather(values, name=f"glow_eval_{name}").numpy()
                for name, values in sorted(scores.items())}
    classes = None
    if model.config.num_classes and gathered["index"].size:
        classes = class_scores(gathered["label"], gathered["marginal_bits"], gathered["bayes"],
                               gathered.get("classified"))
    return summarise(gathered["index"], gathered["bits"], num_dequant_samples, classes,
                     importance_weighted)
