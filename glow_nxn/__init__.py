"""glow_nxn: Glow with the robust invertible n×n convolution (Truong et al., Future Internet 2021).

Importing this package selects the Keras 2 API (tf-keras) for TensorFlow: Horovod 0.28.1's
``DistributedGradientTape`` does not work with Keras 3 variables. The variable must be set before
TensorFlow is first imported, so it is set here, first; Keras itself is imported only in
:mod:`glow_nxn.keras`.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
