"""Data sets (VOC, Open Images, synthetic shapes), class-label files and batching."""
from .collation import collate_training_batch, worker_init_fn
from .errors import BadDataWarning, BadImageError, DatasetError
from .factory import ConcatDetectionDataset, build_dataset
from .labels import BACKGROUND, VOC_CLASS_NAMES, store_labels
from .open_images import OpenImagesDataset
from .voc_dataset import VOCDataset

__all__ = [
    "VOCDataset", "OpenImagesDataset", "build_dataset", "ConcatDetectionDataset", "store_labels",
    "BACKGROUND", "VOC_CLASS_NAMES", "collate_training_batch",
    "worker_init_fn", "DatasetError", "BadDataWarning",
    "BadImageError",
]
