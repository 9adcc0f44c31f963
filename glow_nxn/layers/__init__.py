"""Invertible Keras layers, each with ``forward``/``inverse`` returning ``(output, logdet[B])``.

:data:`MIXINGS` names every channel-mixing layer the model can use between ActNorm and coupling
(``ModelConfig.mixing``); :data:`COUPLINGS` names the coupling layers.
"""
from glow_nxn.layers.actnorm import ActNorm
from glow_nxn.layers.base import Bijector, Chain, initialising
from glow_nxn.layers.coupling import AdditiveCoupling, AffineCoupling
from glow_nxn.layers.mixing import (InvertibleNxNConv, Invertible1x1Conv, InvertibleShift,
                                    ReversePermutation, ShufflePermutation)
from glow_nxn.layers.multiscale import LearnedPrior, Split, Squeeze

# name -> factory(seed) of a fresh mixing layer; the seed makes random initial weights repeatable.
MIXINGS = {
    "reverse": lambda seed: ReversePermutation(),
    "shuffle": lambda seed: ShufflePermutation(seed=seed),
    "conv1x1": lambda seed: Invertible1x1Conv(seed=seed),
    "conv1x1_lu": lambda seed: Invertible1x1Conv(lu=True, seed=seed),
    "nxn": lambda seed: InvertibleNxNConv(seed=seed),
}

# name -> factory(hidden_width) of a fresh coupling layer.
COUPLINGS = {
    "affine": lambda width: AffineCoupling(width),
    "additive": lambda width: AdditiveCoupling(width),
}

__all__ = [
    "ActNorm", "AdditiveCoupling", "AffineCoupling", "Bijector", "Chain", "COUPLINGS",
    "InvertibleNxNConv", "Invertible1x1Conv", "InvertibleShift", "LearnedPrior", "MIXINGS",
    "ReversePermutation", "ShufflePermutation", "Split", "Squeeze", "initialising",
]
