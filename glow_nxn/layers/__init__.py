"""Invertible Keras layers, each with ``forward``/``inverse`` returning ``(output, logdet[B])``.

:data:`MIXINGS` names every channel-mixing layer the model can use between ActNorm and coupling
(``ModelConfig.mixing``); :data:`COUPLINGS` names the coupling layers.
"""
from glow_nxn.layers.actnorm import ActNorm
from glow_nxn.layers.base import Bijector, Chain, initialising
from glow_nxn.layers.coupling import AdditiveCoupling, AffineCoupling
from glow_nxn.layers.dequantizer import VariationalDequantizer
from glow_nxn.layers.emerging import EmergingConv
from glow_nxn.layers.logit import Logit
from glow_nxn.layers.mixing import (InvertibleNxNConv, Invertible1x1Conv, InvertibleShift,
                                    ReversePermutation, ShufflePermutation)
from glow_nxn.layers.multiscale import ClassPrior, LearnedPrior, Split, Squeeze
from glow_nxn.layers.periodic import PeriodicConv
from glow_nxn.layers.shifted import ShiftedNxNConv

# name -> factory(seed) of a fresh mixing layer; the seed makes random initial weights repeatable.
# The names are glow_nxn.config.MIXING_NAMES (tests/test_model.py keeps the two in step).
MIXINGS = {
    "reverse": lambda seed: ReversePermutation(),
    "shuffle": lambda seed: ShufflePermutation(seed=seed),
    "conv1x1": lambda seed: Invertible1x1Conv(seed=seed),
    "conv1x1_lu": lambda seed: Invertible1x1Conv(lu=True, seed=seed),
    "nxn": lambda seed: InvertibleNxNConv(seed=seed),
    # The paper's shift followed by an LU-parametrised W (det W never 0, log|det W| in O(C)).
    "nxn_lu": lambda seed: InvertibleNxNConv(lu=True, seed=seed),
    "shifted_nxn": lambda seed: ShiftedNxNConv(seed=seed),
    # Hoogeboom et al.'s flow step puts a 1×1 convolution before the emerging one (their code's
    # flow_permutation 3): EmergingConv starts near the identity and mixes no channels alone.
    "emerging": lambda seed: Chain([Invertible1x1Conv(seed=seed), EmergingConv(seed=seed)]),
    "periodic": lambda seed: PeriodicConv(seed=seed),
}

# The mixings XLA cannot compile (so not with --jit_compile), and why. Making PeriodicConv
# compilable is possible (real 2C×2C forms and QR instead of complex LU) but was measured 3–4×
# slower without XLA and 11× slower again with XLA on the CPU at C = 48, so it is not done.
NOT_XLA_COMPILABLE = {
    "periodic": "XLA has no kernel for the complex log-determinant and solve of its Fourier form",
}

# name -> factory(hidden_width, compute_dtype) of a fresh coupling layer.
COUPLINGS = {
    "affine": AffineCoupling,
    "additive": AdditiveCoupling,
}

__all__ = [
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "Bijector", "Chain", "ClassPrior",
    "COUPLINGS",
    "EmergingConv", "InvertibleNxNConv", "Invertible1x1Conv", "InvertibleShift", "LearnedPrior",
    "Logit",
    "MIXINGS", "NOT_XLA_COMPILABLE", "PeriodicConv", "ReversePermutation", "ShiftedNxNConv", "ShufflePermutation",
    "Split", "Squeeze", "VariationalDequantizer", "initialising",
]
