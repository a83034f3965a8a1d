"""cxr14: the NIH ChestX-ray14 workflow as an importable package.

`import cxr14` is light (no TensorFlow), yet a saved `model.keras` loads with plain
`keras.saving.load_model(path)` afterwards: the custom layers and losses it names are registered
with Keras the moment Keras is imported (or at once, if it already is). `cxr14.load_model(path)`
does the same for inference, without the training state.
"""

import os

# TensorFlow's C++ INFO lines (oneDNN, buffer sizes) drown the logs; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def _register_keras_objects(_keras) -> None:
    from . import models  # noqa: F401  (its decorators register ModelInfo and the loss)


try:
    import wrapt  # TensorFlow requires it, so every environment with Keras has it
except ImportError:  # the data steps' environments have neither
    pass
else:
    wrapt.register_post_import_hook(_register_keras_objects, "keras")


def load_model(path):
    """A saved cxr14 model, ready for inference (compiled state left out)."""
    from .models import load

    return load(path)
