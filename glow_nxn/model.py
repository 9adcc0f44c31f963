r"""The multi-scale Glow model with a choice of mixing layer (the paper's n×n convolution by default).

For ``L`` levels and ``K`` steps per level, data ``x: [B, H, W, C]`` (continuous, see
:mod:`glow_nxn.objectives`) flows as::

    level 1:   squeeze → K × (ActNorm → mixing → coupling) → split ──→ ε₁ [B, H/2, W/2, 2C]
    level 2:   squeeze → K × (...)                          → split ──→ ε₂ [B, H/4, W/4, 4C]
    ...
    level L:   squeeze → K × (...) → learned top prior             ──→ ε_L [B, H/2^L, W/2^L, 2^(L+1)C]

In front of the first level, optionally: a variational dequantiser (``dequantizer_width > 0``,
:mod:`glow_nxn.layers.dequantizer`), then RealNVP's logit transform (``logit_alpha > 0``).
Every ``ε`` is scored under ``N(0, I)``; the split and top priors are standardising bijectors
(:mod:`glow_nxn.layers.multiscale`), so ``log p(x) = Σ_l log N(ε_l; 0, I) + Σ log|det J|``.

A class-conditional model (``num_classes = K > 0``) scores the same latents under a prior of the
image's class instead, ``log p(x | y) = log p(ε_1 … ε_L | y) + Σ log|det J|``
(:class:`glow_nxn.layers.ClassPrior`); without a label it is the mixture over equally likely
classes, ``log p(x) = log (1/K) Σ_y p(x | y)``, a density of images like any other.
"""
import tensorflow as tf

from glow_nxn import objectives
from glow_nxn.keras import keras
from glow_nxn.layers import (COUPLINGS, MIXINGS, ActNorm, Chain, ClassPrior, LearnedPrior,
                             Logit, Split, Squeeze, VariationalDequantizer, initialising)
from glow_nxn.layers.base import identity_mean


class Glow(keras.Model):
    """Glow configured by a :class:`glow_nxn.config.ModelConfig`; built (all weights created) on
    construction.

    ``forward``/``encode(x) -> (zs, logdet)`` with ``zs`` the list of ``L`` latents above and
    ``logdet [B]``; ``inverse(zs) -> (x, logdet)``, ``decode(zs) -> x``. ``labels`` (int
    ``[B]``) are the classes of a class-conditional model (module docstring); None scores and
    draws an unconditional model, and a class-conditional one as the mixture of its classes.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        mixing, coupling = MIXINGS[config.mixing], COUPLINGS[config.coupling]
        self.levels = []
        for level in range(config.levels):
            steps = []
            for step in range(config.steps_per_level):
                # A distinct seed per layer, within NumPy's seed range 0..2**32-1.
                seed = (config.seed * 1_000_003 + level * config.steps_per_level + step) % 2**32
                steps.append(Chain([ActNorm(), mixing(seed),
                                    coupling(config.hidden_width, config.network_dtype)],
                                   name=f"step_{level}_{step}"))
            self.levels.append(Chain([Squeeze(), *steps], name=f"level_{level}"))
        self.splits = [Split(name=f"split_{level}") for level in range(config.levels - 1)]
        self.dequantizer = (VariationalDequantizer(config.n_bits, config.dequantizer_width,
                                                   name="dequantizer")
                            if config.dequantizer_width else None)
        self.logit = Logit(config.logit_alpha, name="logit") if config.logit_alpha else None
        self.top_prior = LearnedPrior(name="top_prior") if config.learn_top else None
        zs, _ = self.encode(tf.zeros([1, *config.image_shape]))
        self.latent_shapes = [tuple(z.shape[1:]) for z in zs]
        self.class_prior = (ClassPrior(config.num_classes, self.latent_shapes,
                                       config.classifier, name="class_prior")
                            if config.num_classes else None)
        self.built = True

    def call(self, x):
        return self.encode(x)

    def forward(self, x):
        """Data → latents. ``x: [B, H, W, C]`` → ``(zs, logdet [B])`` (module docstring)."""
        return self.encode(x)

    def encode(self, x, recompute=False):
        """Data → latents. ``x: [B, H, W, C]`` → ``(zs, logdet [B])`` (module docstring).

        ``recompute``: each flow step's activations are recomputed in the backward pass of a
        gradient tape instead of kept (:meth:`Chain.forward_recomputing
        <glow_nxn.layers.Chain.forward_recomputing>`; training's ``remat``); the same values.
        """
        zs, logdet, h = [], tf.zeros([tf.shape(x)[0]]), x
        for layer in (self.dequantizer, self.logit):
            if layer is not None:
                h, layer_logdet = layer.forward(h)
                logdet += layer_logdet
        for index, level in enumerate(self.levels):
            h, level_logdet = level.forward_recomputing(h) if recompute else level.forward(h)
            logdet += level_logdet
            if index < len(self.splits):
                h, split_logdet = self.splits[index].forward(h)
                logdet += split_logdet
                h, eps = self.splits[index].divide(h)
                zs.append(eps)
        if self.top_prior is not None:
            h, top_logdet = self.top_prior.forward(h)
            logdet += top_logdet
        zs.append(h)
        return zs, logdet

    def inverse(self, zs):
        """Latents → data: ``zs`` as :meth:`encode` returns them → ``(x, logdet [B])``."""
        h = zs[-1]
        logdet = tf.zeros([tf.shape(h)[0]])
        if self.top_prior is not None:
            h, top_logdet = self.top_prior.inverse(h)
            logdet += top_logdet
        for index in reversed(range(len(self.levels))):
            if index < len(self.splits):
                h, split_logdet = self.splits[index].inverse(tf.concat([h, zs[index]], axis=-1))
                logdet += split_logdet
            h, level_logdet = self.levels[index].inverse(h)
            logdet += level_logdet
        for layer in (self.logit, self.dequantizer):
            if layer is not None:
                h, layer_logdet = layer.inverse(h)
                logdet += layer_logdet
        return h, logdet

    def decode(self, zs):
        """Latents → data ``[B, H, W, C]``."""
        return self.inverse(zs)[0]

    def log_prob(self, x, labels=None, recompute=False):
        """``log p(x)`` in nats, ``[B]``, of continuous ``x: [B, H, W, C]``; ``log p(x | y)``
        of a class-conditional model given ``labels`` (class docstring); ``recompute`` as in
        :meth:`encode`."""
        zs, logdet = self.encode(x, recompute)
        return logdet + self.latent_log_prob(zs, labels)

    def latent_log_prob(self, zs, labels=None):
        """``log p(ε_1 … ε_L)`` ``[B]`` of latents as :meth:`encode` returns them: under
        ``N(0, I)``, or under the class prior of ``labels`` (the mixture of every class when
        None) for a class-conditional model."""
        if self.class_prior is None:
            if labels is not None:
                raise ValueError("labels given to a model that is not class-conditional")
            return tf.add_n([objectives.standard_normal_log_prob(z) for z in zs])
        if labels is None:
            return self.class_prior.marginal_log_prob(zs)
        return self.class_prior.log_prob(zs, labels)

    def class_log_likelihoods(self, x):
        """``log p(x | y = k)`` for every class ``k`` of a class-conditional model: ``[B, K]``
        from one pass of the flow (:class:`~glow_nxn.layers.ClassPrior`)."""
        if self.class_prior is None:
            raise ValueError("class_log_likelihoods needs a class-conditional model")
        zs, logdet = self.encode(x)
        return logdet[:, None] + self.class_prior.log_prob_per_class(zs)

    def bits_per_dim(self, images, uniform_noise=None, labels=None):
        """bits/dim ``[B]`` of uint8 ``images: [B, H, W, C]`` (:mod:`glow_nxn.objectives`),
        given ``labels`` as in :meth:`log_prob`.

        ``uniform_noise`` ``[B, H, W, C]`` in ``[0, 1)`` is the dequantisation draw; a fresh one
        when None.
        """
        if uniform_noise is None:
            uniform_noise = tf.random.uniform(tf.shape(images))
        x = objectives.dequantize(images, self.config.n_bits, uniform_noise)
        return objectives.bits_per_dim(self.log_prob(x, labels), self.config.num_dims,
                                       self.config.n_bits)

    def sample(self, n, temperature=1.0, seed=None, labels=None):
        """``n`` continuous samples ``[n, H, W, C]``; every prior's std is scaled by ``temperature``.

        ``ε_l ~ N(0, temperature²·I)`` for every level, then :meth:`decode`. With an integer
        ``seed`` the draw is a fixed function of it; temperature 0 gives the deterministic
        decoding of the all-zero latents. :func:`glow_nxn.objectives.to_uint8` makes images.
        A class-conditional model draws ``ε_l ~ N(μ_l[y], (temperature·σ_l[y])²)`` for the
        classes ``labels`` (int ``[n]``; uniformly drawn classes when None).
        """
        etas = []
        for index, shape in enumerate(self.latent_shapes):
            if seed is None:
                eta = tf.random.normal([n, *shape])
            else:
                eta = tf.random.stateless_normal([n, *shape], seed=[seed, index])
            etas.append(eta)
        if self.class_prior is None:
            if labels is not None:
                raise ValueError("labels given to a model that is not class-conditional")
            return self.decode([temperature * eta for eta in etas])
        if labels is None:
            shape, count = [n], self.config.num_classes
            labels = (tf.random.uniform(shape, 0, count, tf.int32) if seed is None else
                      tf.random.stateless_uniform(shape, [seed, len(etas)], 0, count, tf.int32))
        return self.decode(self.class_prior.draw(etas, labels, temperature))

    def data_dependent_init(self, x, reduce_mean=identity_mean):
        """Initialise every ActNorm from the batch ``x: [B, H, W, C]``, in flow order.

        One eager forward pass inside :func:`glow_nxn.layers.initialising`: each ActNorm (those
        of the flow steps and those inside the coupling networks) standardises its own input,
        which the already-initialised layers before it produced. ``reduce_mean`` averages
        statistics across replicas (see :mod:`glow_nxn.distributed`).
        """
        with initialising(reduce_mean):
            self.encode(x)
