"""The one place Keras is imported: the Keras 2 API of tf-keras (see the package docstring)."""
import tf_keras as keras

__all__ = ["keras"]
