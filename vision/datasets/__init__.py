"""Data sets (VOC, Open Images, COCO JSON, YOLO, CSV, synthetic shapes), class-label files and batching."""
from .coco import COCODataset
from .collation import collate_training_batch, worker_init_fn
from .csv_dataset import CSVDataset
from .detect import detect_format
from .errors import BadDataWarning, BadImageError, DatasetError
from .factory import ConcatDetectionDataset, build_dataset
from .labels import BACKGROUND, VOC_CLASS_NAMES, store_labels
from .open_images import OpenImagesDataset
from .voc_dataset import VOCDataset
from .yolo import YOLODataset

__all__ = [
    "VOCDataset", "OpenImagesDataset", "COCODataset", "YOLODataset", "CSVDataset", "detect_format",
    "build_dataset", "ConcatDetectionDataset", "store_labels",
    "BACKGROUND", "VOC_CLASS_NAMES", "collate_training_batch",
    "worker_init_fn", "DatasetError", "BadDataWarning",
    "BadImageError",
]
