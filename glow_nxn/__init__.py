"""glow_nxn: Glow with the robust invertible n×n convolution (Truong et al., Future Internet 2021).

Importing this package selects the Keras 2 API (tf-keras) for TensorFlow: Horovod 0.28.1's
``DistributedGradientTape`` does not work with Keras 3 variables. The variable must be set before
TensorFlow is first imported, so it is set here, first; Keras itself is imported only in
:mod:`glow_nxn.keras`.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def load(workdir, checkpoint=None, weights="ema"):
    """The trained :class:`glow_nxn.model.Glow` of a run folder, ready to use.

    ``checkpoint``: a ``ckpt-N`` of the run or a checkpoint path (default: the newest);
    ``weights``: ``"ema"`` for the weights' moving average when the run kept one (the default,
    what evaluate.py reports), ``"raw"`` for the trained weights. The model's ``log_prob(x)``,
    ``bits_per_dim(uint8 images)``, ``encode(x)``, ``decode(zs)`` and ``sample(n, temperature,
    seed)`` are documented in :mod:`glow_nxn.model`.
    """
    from glow_nxn.run_folder import RunFolder

    return RunFolder(workdir).load_model(checkpoint, weights).model
