"""The monocular depth model (torch + transformers): loading, batched inference, the tiny random stand-in. No Dagster, no Ray."""

DEFAULT_MODEL_ID = "depth-anything/Depth-Anything-V2-Small-hf"
"""Named here, not in `model`, so that naming the default costs no torch import (the code location's resources)."""
