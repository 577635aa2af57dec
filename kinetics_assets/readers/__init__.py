"""Training-time readers of the table: the table's clips (index and one row's clip), the PyTorch
dataset and the Ray Data reader.

The public names below load their module on first use: the PyTorch dataset imports torch and the
Ray reader imports Ray, and a user of one need not pay for the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kinetics_assets.lazy import lazy_exports

if TYPE_CHECKING:
    from kinetics_assets.readers.ray_clips import read_clips
    from kinetics_assets.readers.table_clips import BadVideoError, ClipFilters, ClipIndex
    from kinetics_assets.readers.torch_dataset import ClipTransform, LanceClipDataset, clip_loader, collate_clips

_EXPORTS = {
    "read_clips": "ray_clips",
    "BadVideoError": "table_clips",
    "ClipFilters": "table_clips",
    "ClipIndex": "table_clips",
    "ClipTransform": "torch_dataset",
    "LanceClipDataset": "torch_dataset",
    "clip_loader": "torch_dataset",
    "collate_clips": "torch_dataset",
}
__all__ = [
    "BadVideoError",
    "ClipFilters",
    "ClipIndex",
    "ClipTransform",
    "LanceClipDataset",
    "clip_loader",
    "collate_clips",
    "read_clips",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
