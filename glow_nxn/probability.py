r"""A trained :class:`glow_nxn.model.Glow` as a TensorFlow Probability bijector and distribution.

TFP's convention runs the other way from this package's: a ``tfp.bijectors.Bijector``'s forward
maps the base (latent) space to the data, where :meth:`Glow.forward` maps data to latents. So
:class:`GlowBijector`, for a model of images ``[H, W, C]`` and ``D = H·W·C``, is::

    forward:  ε [..., D] ──split, reshape──→ ε₁ … ε_L ──Glow.inverse──→ x [..., H, W, C]
    inverse:  x [..., H, W, C] ──Glow.encode──→ ε₁ … ε_L ──flatten, concat──→ ε [..., D]

``ε = concat(flatten(ε₁), …, flatten(ε_L))``, the latents in the order and shapes of
``model.latent_shapes``, each flattened row-major; ``...`` is any batch shape, the batch of one
pass of the model. The log-dets are the model's: ``inverse_log_det_jacobian(x) = log|det ∂ε/∂x|``
is the one :meth:`Glow.encode` returns, ``forward_log_det_jacobian(ε) = log|det ∂x/∂ε|`` the one
:meth:`Glow.inverse` returns, minus the first at ``x = forward(ε)``.

The model's priors are standardising bijectors (:mod:`glow_nxn.layers.multiscale`), so every
``ε_l`` is ``N(0, I)`` and :func:`as_distribution` is ``TransformedDistribution(Sample(Normal(0,
1), D), GlowBijector)``, of density

    log p(x) = log N(ε; 0, I_D) + log|det ∂ε/∂x|,   ε = inverse(x),

which is :meth:`Glow.log_prob` of continuous ``x`` (:mod:`glow_nxn.objectives`); its
``sample(n)`` decodes ``n`` draws of ``ε`` into ``[n, H, W, C]``.

One pass of the model gives an output and its log-det together: the bijector keeps them in TFP's
cache with attributes (as TFP's own FFJORD does), so ``log_prob(x)`` runs ``encode`` once, not
once for ``ε`` and again for the log-det. Like every TFP bijector's, that cache is keyed on tensor
identity: after the model's weights change, results for tensors already seen are stale; build a
new bijector.

Only this module imports TensorFlow Probability (setup.py's ``tfp`` extra, which install.sh
installs); the rest of the package does not need it.
"""
import numpy as np
import tensorflow as tf

try:
    import tensorflow_probability as tfp
    from tensorflow_probability.python.internal import cache_util
except ImportError as error:
    raise ImportError("glow_nxn.probability needs TensorFlow Probability: pip install -e "
                      "'.[tfp]' (install.sh installs it)") from error


class GlowBijector(tfp.bijectors.Bijector):
    """``model`` (a :class:`glow_nxn.model.Glow`) as a bijector from ``ε [..., D]`` to images
    ``x [..., H, W, C]`` (module docstring): ``forward_min_event_ndims`` 1,
    ``inverse_min_event_ndims`` 3, float32, no batch shape of its own.
    """

    # Fills each call's cached attributes with the log-det of the same pass (module docstring).
    _cache = cache_util.BijectorCacheWithGreedyAttrs(forward_name="_forward_with_ildj",
                                                     inverse_name="_inverse_with_ildj")

    def __init__(self, model, validate_args=False, name="glow"):
        parameters = dict(locals())
        self._model = model
        self._image_shape = tuple(model.config.image_shape)
        self._latent_shapes = [tuple(shape) for shape in model.latent_shapes]
        self._latent_sizes = [int(np.prod(shape)) for shape in self._latent_shapes]
        self._dims = sum(self._latent_sizes)
        super().__init__(forward_min_event_ndims=1, inverse_min_event_ndims=3,
                         dtype=tf.float32, validate_args=validate_args, parameters=parameters,
                         name=name)

    @property
    def model(self):
        return self._model

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _forward_with_ildj(self, eps):
        """``ε [..., D] → (x [..., H, W, C], {"ildj": −log|det ∂x/∂ε| [...]})``."""
        batch_shape = tf.shape(eps)[:-1]
        parts = tf.split(tf.reshape(eps, [-1, self._dims]), self._latent_sizes, axis=-1)
        zs = [tf.reshape(part, [-1, *shape]) for part, shape in zip(parts, self._latent_shapes)]
        x, logdet = self._model.inverse(zs)
        x = tf.reshape(x, tf.concat([batch_shape, self._image_shape], axis=0))
        return x, {"ildj": -tf.reshape(logdet, batch_shape)}

    def _inverse_with_ildj(self, x):
        """``x [..., H, W, C] → (ε [..., D], {"ildj": log|det ∂ε/∂x| [...]})``."""
        batch_shape = tf.shape(x)[:-3]
        zs, logdet = self._model.encode(tf.reshape(x, [-1, *self._image_shape]))
        eps = tf.concat([tf.reshape(z, [-1, size]) for z, size in zip(zs, self._latent_sizes)],
                        axis=-1)
        eps = tf.reshape(eps, tf.concat([batch_shape, [self._dims]], axis=0))
        return eps, {"ildj": tf.reshape(logdet, batch_shape)}

    # Called only for a log-det of an input this bijector has not yet transformed.
    def _forward_log_det_jacobian(self, eps):
        return -self._forward_with_ildj(eps)[1]["ildj"]

    def _inverse_log_det_jacobian(self, x):
        return self._inverse_with_ildj(x)[1]["ildj"]

    def _forward_event_shape(self, input_shape):
        return input_shape[:-1].concatenate(self._image_shape)

    def _forward_event_shape_tensor(self, input_shape):
        return tf.concat([input_shape[:-1], self._image_shape], axis=0)

    def _inverse_event_shape(self, output_shape):
        return output_shape[:-3].concatenate([self._dims])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.concat([output_shape[:-3], [self._dims]], axis=0)


def as_distribution(model, label=None):
    """``model`` as a ``tfd.TransformedDistribution`` of ``N(0, I_D)`` through
    :class:`GlowBijector`: event shape ``[H, W, C]``, ``log_prob(x)`` the model's
    ``log_prob(x)`` in nats, ``sample(n, seed)`` ``n`` continuous images ``[n, H, W, C]``
    (:func:`glow_nxn.objectives.to_uint8` makes uint8 ones).

    A class-conditional model's base is its class prior (:class:`glow_nxn.layers.ClassPrior`),
    laid out as ``ε``: ``N(μ[label], diag σ[label]²)`` for an integer ``label`` (``log_prob`` is
    the model's ``log p(x | label)``), else the mixture of every class with equal weights
    (``tfd.MixtureSameFamily``; the model's ``log_prob(x)``). Its parameters are read when the
    distribution is built: after the weights change, build a new one.
    """
    bijector = GlowBijector(model)
    dims = model.config.num_dims
    if not model.config.num_classes:
        if label is not None:
            raise ValueError("label given for a model that is not class-conditional")
        base = tfp.distributions.Sample(tfp.distributions.Normal(0.0, 1.0), sample_shape=[dims])
        return tfp.distributions.TransformedDistribution(base, bijector, name="glow")
    classes = model.config.num_classes
    # Per class, every latent's mean and std as whole latents flattened row-major: [K, D], in
    # GlowBijector's order of ε.
    dense = [model.class_prior.dense_parameters(level, shape)
             for level, shape in enumerate(model.latent_shapes)]
    loc, scale = (tf.concat([tf.reshape(pair[i], [classes, -1]) for pair in dense], axis=-1)
                  for i in (0, 1))
    if label is None:
        base = tfp.distributions.MixtureSameFamily(
            tfp.distributions.Categorical(logits=tf.zeros([classes])),
            tfp.distributions.MultivariateNormalDiag(loc, scale))
    else:
        if not 0 <= int(label) < classes:
            raise ValueError(f"label must be a class in 0..{classes - 1}, got {label!r}")
        base = tfp.distributions.MultivariateNormalDiag(loc[int(label)], scale[int(label)])
    return tfp.distributions.TransformedDistribution(base, bijector, name="glow")
