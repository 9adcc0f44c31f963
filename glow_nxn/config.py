"""The model's configuration: a frozen, validated dataclass, and the paper's presets."""
import dataclasses
import json

from glow_nxn.layers import COUPLINGS, MIXINGS
from glow_nxn.objectives import check_n_bits


NETWORK_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a Glow model's architecture; saved as ``config.json`` beside it.

    Attributes:
      image_shape: ``(H, W, C)`` of the images; ``H`` and ``W`` divisible by ``2**levels``.
      levels: ``L``, the number of scales (squeeze → K steps → split; no split after the last).
      steps_per_level: ``K``, flow steps (ActNorm → mixing → coupling) per level.
      hidden_width: channels of the coupling networks' hidden layers.
      mixing: the channel-mixing layer of each step, a name of :data:`glow_nxn.layers.MIXINGS`;
        ``nxn`` is the paper's invertible n×n convolution.
      coupling: ``affine`` or ``additive``.
      learn_top: learn the mean and scale of the top-level prior.
      n_bits: bits per colour channel the model scores (1..8); images are reduced to it.
      seed: seed of the random initial weights (rotations, permutations).
      network_dtype: arithmetic of the coupling networks: ``float32``, or ``bfloat16`` for mixed
        precision on GPUs/TPUs that have it (weights, flow and log-dets stay float32).
    """

    image_shape: tuple
    levels: int
    steps_per_level: int
    hidden_width: int = 512
    mixing: str = "nxn"
    coupling: str = "affine"
    learn_top: bool = True
    n_bits: int = 8
    seed: int = 0
    network_dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        _check_choice("mixing", self.mixing, MIXINGS)
        _check_choice("coupling", self.coupling, COUPLINGS)
        _check_choice("network_dtype", self.network_dtype, NETWORK_DTYPES)
        for name in ("levels", "steps_per_level", "hidden_width"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_n_bits(self.n_bits)
        if len(self.image_shape) != 3 or not all(
                isinstance(d, int) and d >= 1 for d in self.image_shape):
            raise ValueError(f"image_shape must be (H, W, C) of positive integers, "
                             f"got {self.image_shape!r}")
        height, width, _ = self.image_shape
        factor = 2**self.levels
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} does not fit {self.levels} levels: height and width "
                f"must be divisible by 2**levels = {factor}; use fewer levels or another size")

    @property
    def num_dims(self):
        """``D = H·W·C``, the dimensions bits/dim divides by."""
        height, width, channels = self.image_shape
        return height * width * channels

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown model config fields {unknown}; valid: {sorted(known)}")
        return cls(**fields)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(sorted(choices))}")


# The paper's setups (§5), and a small MNIST model that trains on a CPU.
PRESETS = {
    "cifar10": ModelConfig(image_shape=(32, 32, 3), levels=3, steps_per_level=32),
    "imagenet32": ModelConfig(image_shape=(32, 32, 3), levels=3, steps_per_level=48),
    "imagenet64": ModelConfig(image_shape=(64, 64, 3), levels=4, steps_per_level=48),
    # Glow trained its CelebA-HQ models with additive coupling at 5 bits.
    "celeba_hq_256": ModelConfig(image_shape=(256, 256, 3), levels=6, steps_per_level=32,
                                 coupling="additive", n_bits=5),
    "mnist": ModelConfig(image_shape=(28, 28, 1), levels=2, steps_per_level=8, hidden_width=128),
}


def preset(name, **overrides):
    """The preset ``name`` with fields replaced by ``overrides``; ValueError lists valid names."""
    _check_choice("preset", name, PRESETS)
    return dataclasses.replace(PRESETS[name], **overrides)
