r"""The multi-scale Glow model with a choice of mixing layer (the paper's n×n convolution by default).

For ``L`` levels and ``K`` steps per level, data ``x: [B, H, W, C]`` (continuous, see
:mod:`glow_nxn.objectives`) flows as::

    level 1:   squeeze → K × (ActNorm → mixing → coupling) → split ──→ ε₁ [B, H/2, W/2, 2C]
    level 2:   squeeze → K × (...)                          → split ──→ ε₂ [B, H/4, W/4, 4C]
    ...
    level L:   squeeze → K × (...) → learned top prior             ──→ ε_L [B, H/2^L, W/2^L, 2^(L+1)C]

Every ``ε`` is scored under ``N(0, I)``; the split and top priors are standardising bijectors
(:mod:`glow_nxn.layers.multiscale`), so ``log p(x) = Σ_l log N(ε_l; 0, I) + Σ log|det J|``.
"""
import tensorflow as tf

from glow_nxn import objectives
from glow_nxn.keras import keras
from glow_nxn.layers import (COUPLINGS, MIXINGS, ActNorm, Chain, LearnedPrior, Logit, Split,
                             Squeeze, initialising)
from glow_nxn.layers.base import identity_mean


class Glow(keras.Model):
    """Glow configured by a :class:`glow_nxn.config.ModelConfig`; built (all weights created) on
    construction.

    ``forward``/``encode(x) -> (zs, logdet)`` with ``zs`` the list of ``L`` latents above and
    ``logdet [B]``; ``inverse(zs) -> (x, logdet)``, ``decode(zs) -> x``.
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
        self.logit = Logit(config.logit_alpha, name="logit") if config.logit_alpha else None
        self.top_prior = LearnedPrior(name="top_prior") if config.learn_top else None
        zs, _ = self.encode(tf.zeros([1, *config.image_shape]))
        self.latent_shapes = [tuple(z.shape[1:]) for z in zs]
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
        if self.logit is not None:
            h, logdet = self.logit.forward(h)
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
        if self.logit is not None:
            h, logit_logdet = self.logit.inverse(h)
            logdet += logit_logdet
        return h, logdet

    def decode(self, zs):
        """Latents → data ``[B, H, W, C]``."""
        return self.inverse(zs)[0]

    def log_prob(self, x, recompute=False):
        """``log p(x)`` in nats, ``[B]``, of continuous ``x: [B, H, W, C]``; ``recompute`` as
        in :meth:`encode`."""
        zs, logdet = self.encode(x, recompute)
        return logdet + tf.add_n([objectives.standard_normal_log_prob(z) for z in zs])

    def bits_per_dim(self, images, uniform_noise=None):
        """bits/dim ``[B]`` of uint8 ``images: [B, H, W, C]`` (:mod:`glow_nxn.objectives`).

        ``uniform_noise`` ``[B, H, W, C]`` in ``[0, 1)`` is the dequantisation draw; a fresh one
        when None.
        """
        if uniform_noise is None:
            uniform_noise = tf.random.uniform(tf.shape(images))
        x = objectives.dequantize(images, self.config.n_bits, uniform_noise)
        return objectives.bits_per_dim(self.log_prob(x), self.config.num_dims,
                                       self.config.n_bits)

    def sample(self, n, temperature=1.0, seed=None):
        """``n`` continuous samples ``[n, H, W, C]``; every prior's std is scaled by ``temperature``.

        ``ε_l ~ N(0, temperature²·I)`` for every level, then :meth:`decode`. With an integer
        ``seed`` the draw is a fixed function of it; temperature 0 gives the deterministic
        decoding of the all-zero latents. :func:`glow_nxn.objectives.to_uint8` makes images.
        """
        zs = []
        for index, shape in enumerate(self.latent_shapes):
            if seed is None:
                eps = tf.random.normal([n, *shape])
            else:
                eps = tf.random.stateless_normal([n, *shape], seed=[seed, index])
            zs.append(temperature * eps)
        return self.decode(zs)

    def data_dependent_init(self, x, reduce_mean=identity_mean):
        """Initialise every ActNorm from the batch ``x: [B, H, W, C]``, in flow order.

        One eager forward pass inside :func:`glow_nxn.layers.initialising`: each ActNorm (those
        of the flow steps and those inside the coupling networks) standardises its own input,
        which the already-initialised layers before it produced. ``reduce_mean`` averages
        statistics across replicas (see :mod:`glow_nxn.distributed`).
        """
        with initialising(reduce_mean):
            self.encode(x)
