"""Test set-up: select tf-keras before TensorFlow loads and keep TensorFlow's logging quiet."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glow_nxn  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
