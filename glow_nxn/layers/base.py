"""The one invertibility contract every flow layer follows.

A :class:`Bijector` is a Keras layer with

* ``forward(x) -> (y, logdet)``: data → latent; ``logdet[b] = log|det ∂y_b/∂x_b|``, shape ``[B]``;
* ``inverse(y) -> (x, logdet)``: latent → data; its ``logdet`` is minus the forward's;
* ``call(x)`` = ``forward(x)``.

Subclasses implement ``_forward`` and ``_inverse`` with the same signatures. The public methods
build the layer on first use (so ``inverse`` works on a fresh layer, e.g. for sampling) and
nothing else: no direction flags, no hidden initialisation.
"""
import contextlib

import tensorflow as tf

from glow_nxn.keras import keras


class Bijector(keras.layers.Layer):
    """Base class of every invertible layer; see the module docstring for the contract."""

    def forward(self, x):
        """Data → latent. Returns ``(y, logdet[B])``."""
        self._build_for(x)
        return self._forward(x)

    def inverse(self, y):
        """Latent → data. Returns ``(x, logdet[B])``, the log-det of the inverse map."""
        self._build_for(y)
        return self._inverse(y)

    def call(self, x):
        return self.forward(x)

    def _build_for(self, t):
        if not self.built:
            # Variables are created outside any tf.function trace, so a layer first used inside
            # a traced function still owns ordinary variables.
            with tf.init_scope():
                self.build(tf.TensorShape(t.shape))
            self.built = True

    def _forward(self, x):
        raise NotImplementedError

    def _inverse(self, y):
        raise NotImplementedError


def spatial_size(x):
    """``H·W`` of an ``[B, H, W, C]`` tensor, as float32 (a log-det multiplier)."""
    shape = tf.shape(x)
    return tf.cast(shape[1] * shape[2], tf.float32)


def sum_over_pixels(t):
    """Per-example sum of an elementwise log-det term ``[B, H, W, C] → [B]``."""
    return tf.reduce_sum(t, axis=[1, 2, 3])


def batch_logdet(x, per_example):
    """Broadcast a scalar log-det to shape ``[B]`` of the batch of ``x``."""
    return tf.fill([tf.shape(x)[0]], tf.cast(per_example, tf.float32))


class _InitState:
    """The data-dependent initialisation in progress, if any (see :func:`initialising`)."""

    reduce_mean = None


def identity_mean(t):
    """Single-process cross-replica mean: the tensor itself."""
    return t


@contextlib.contextmanager
def initialising(reduce_mean=identity_mean):
    """Run a forward pass as the data-dependent initialisation pass.

    Inside this context every :class:`~glow_nxn.layers.ActNorm` reached by a forward pass first
    sets its own parameters from the batch it receives (:meth:`ActNorm.data_dependent_init`), so
    one eager forward pass of a whole model initialises every ActNorm in order, each on the
    activations produced by the already-initialised layers before it.

    ``reduce_mean(t)`` averages a tensor across replicas; with Horovod it is an allreduce, so the
    moments are those of the global init batch (equal per-replica batches make the mean of
    per-replica means the global mean). Eager only: this is a Python-level switch, never traced.
    """
    if tf.inside_function():
        raise RuntimeError("data-dependent initialisation runs eagerly, not inside tf.function")
    previous = _InitState.reduce_mean
    _InitState.reduce_mean = reduce_mean
    try:
        yield
    finally:
        _InitState.reduce_mean = previous


def pending_init_reducer():
    """The ``reduce_mean`` of the initialisation pass in progress, or None outside one."""
    return _InitState.reduce_mean


class Chain(Bijector):
    """The composition ``f_n ∘ … ∘ f_1`` of ``bijectors = [f_1, …, f_n]``; log-dets add up."""

    def __init__(self, bijectors, **kwargs):
        super().__init__(**kwargs)
        self.bijectors = list(bijectors)

    def _forward(self, x):
        return _compose([bijector.forward for bijector in self.bijectors], x)

    def _inverse(self, y):
        return _compose([bijector.inverse for bijector in reversed(self.bijectors)], y)

    def forward_recomputing(self, x):
        """:meth:`forward`, with each link's activations recomputed in the backward pass.

        Gradient checkpointing (Chen et al. 2016, "Training deep nets with sublinear memory
        cost"; openai/glow checkpoints each flow step the same way). Each ``f_i.forward`` runs
        under :func:`recomputed`: a gradient tape keeps the link's input ``[B, H, W, C]``
        and outputs, not what it computed on the way (for a flow step, the coupling network's
        ``[B, H, W, hidden_width]`` maps), and the backward pass runs ``f_i.forward`` again
        under a tape of its own to differentiate it, for its input and for every variable it
        reads. A chain of ``n`` links then holds ``n`` inputs and, in the backward pass, one
        link's activations at a time, instead of all ``n`` links' activations; it costs one
        more forward pass of every link. Values and gradients are those of :meth:`forward` up
        to float32 rounding, being the same operations on the same inputs (tests/test_model.py).

        Not inside :func:`initialising`: each ActNorm sets its weights from its input there,
        and the recomputation would set them again in the backward pass.
        """
        if pending_init_reducer() is not None:
            raise RuntimeError("the data-dependent initialisation runs forward, not "
                               "forward_recomputing")
        self._build_for(x)
        return _compose([recomputed(bijector.forward) for bijector in self.bijectors], x)


def recomputed(forward):
    """``forward: x → (y, logdet)`` whose activations a gradient tape does not keep: the backward
    pass runs ``forward(x)`` again under a tape of its own and differentiates that, for ``x``
    and for every variable it reads (gradient checkpointing; :meth:`Chain.forward_recomputing`).

    What :func:`tf.recompute_grad` does, without its second, nested ``tf.custom_gradient``
    (there for forward-mode differentiation, which training does not use): inside a
    ``tf.function`` each ``tf.custom_gradient`` searches the graph from its outputs back to its
    inputs for the variables it reads, and the nested one's inputs are the upstream gradients,
    so its search walks through the recomputed link into every link before it. Over ``n``
    links the trace then grows as ``n²``. Here the one search is the forward's, from the link's
    outputs back to its input ``x``.

    The recomputation reads ``x`` plus a zero computed from the upstream gradient (NaN if it is
    NaN), so that it runs in the backward pass, when that gradient exists, and not as soon as
    ``x`` does: the graph's executor (and XLA, which ignores control dependencies) would
    otherwise recompute every link during the forward pass and keep what remat is to free.
    """

    @tf.custom_gradient
    def run(x):
        y, logdet = forward(x)

        def gradient(dy, dlogdet, variables=()):
            first = tf.reshape(dy, [-1])[:1]
            after_upstream = tf.reduce_sum(tf.where(tf.math.is_nan(first), first, 0.0))
            with tf.GradientTape() as tape:
                again = x + tf.cast(after_upstream, x.dtype)
                tape.watch(again)
                tape.watch(variables)
                recomputed_y, recomputed_logdet = forward(again)
            grads = tape.gradient([recomputed_y, recomputed_logdet], [again, *variables],
                                  output_gradients=[dy, dlogdet],
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return grads[0], grads[1:]

        return (y, logdet), gradient

    return run


def _compose(functions, x):
    """``x`` through ``functions`` (each ``x -> (y, logdet[B])``) in order; log-dets summed."""
    logdet = tf.zeros([tf.shape(x)[0]])
    for function in functions:
        x, step_logdet = function(x)
        logdet += step_logdet
    return x, logdet
