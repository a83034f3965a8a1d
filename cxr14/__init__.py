"""cxr14: the NIH ChestX-ray14 workflow as an importable package."""

import os

# TensorFlow's C++ INFO lines (oneDNN, buffer sizes) drown the logs; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
