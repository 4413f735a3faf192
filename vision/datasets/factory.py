"""Building one data set from several roots (`--datasets A B`), with their class lists checked."""
import bisect
import logging
from typing import List, Optional, Sequence, Tuple

from torch.utils.data import ConcatDataset

from .coco import COCODataset
from .csv_dataset import CSVDataset
from .detect import FORMATS, detect_format
from .errors import DatasetError
from .labels import same_class_names
from .open_images import OpenImagesDataset
from .voc_dataset import VOCDataset
from .yolo import YOLODataset

DATASET_TYPES = FORMATS + ("auto",)
_SPLIT_DATASETS = {"voc": VOCDataset, "coco": COCODataset, "yolo": YOLODataset, "csv": CSVDataset}
log = logging.getLogger(__name__)


class ConcatDetectionDataset(ConcatDataset):
    """ConcatDataset that also forwards the detection-dataset interface by global index:
    get_image(i), get_annotation(i), ids (list of (root, image_id)), class_names, class_dict."""

    def __init__(self, datasets: Sequence):
        super().__init__(datasets)
        self.class_names = datasets[0].class_names
        self.class_dict = datasets[0].class_dict
        self.ids = [(str(dataset.root), image_id) for dataset in datasets for image_id in dataset.ids]

    def _locate(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        dataset_index = bisect.bisect_right(self.cumulative_sizes, index)
        offset = index - (self.cumulative_sizes[dataset_index - 1] if dataset_index else 0)
        return self.datasets[dataset_index], offset

    def get_image(self, index: int):
        dataset, offset = self._locate(index)
        return dataset.get_image(offset)

    def get_annotation(self, index: int):
        dataset, offset = self._locate(index)
        return dataset.get_annotation(offset)


def open_one(dataset_type: str, root, transform=None, target_transform=None, is_test: bool = False,
             balance_data: bool = False, label_file=None):
    """The data set of one root: dataset_type one of DATASET_TYPES ("auto" detects it and logs what it
    found). voc/coco/yolo/csv: the training split, or the evaluation split when is_test (see
    vision.datasets.annotated.select_split); open_images: "test" when is_test, else "train".
    balance_data: down-sample frequent classes in a training split, in every format (see
    AnnotatedImageDataset.balance). label_file: class names to index the labels by."""
    if dataset_type == "auto":
        dataset_type = detect_format(root)
        log.info("Dataset %s: detected format %s", root, dataset_type)
    if dataset_type == "open_images":
        return OpenImagesDataset(root, transform=transform, target_transform=target_transform,
                                 dataset_type="test" if is_test else "train", balance_data=balance_data,
                                 label_file=label_file)
    if dataset_type not in _SPLIT_DATASETS:
        raise DatasetError(f"dataset type {dataset_type!r} is not one of {DATASET_TYPES}")
    dataset = _SPLIT_DATASETS[dataset_type](root, transform=transform, target_transform=target_transform,
                                            is_test=is_test, label_file=label_file)
    if balance_data and not is_test:
        before = len(dataset)
        dataset.balance()
        log.info("Dataset %s: --balance_data kept %d of %d images", root, len(dataset), before)
    return dataset


def build_dataset(dataset_type: str, roots: Sequence[str], transform=None, target_transform=None,
                  is_test: bool = False, balance_data: bool = False,
                  label_file: Optional[str] = None) -> Tuple[object, List[str]]:
    """One data set over every root, and its class names (BACKGROUND first).

    dataset_type: one of DATASET_TYPES, for every root ("auto": detected root by root, so roots may mix
    formats); see open_one. With one root the data set itself is returned; with several, a
    ConcatDetectionDataset. Raises DatasetError naming the roots whose class lists differ from the first
    root's (compared name by name, ignoring case).
    """
    if isinstance(roots, (str, bytes)) or not hasattr(roots, "__iter__"):
        roots = [roots]
    roots = list(roots)
    if not roots:
        raise DatasetError("no dataset root given")
    if dataset_type not in DATASET_TYPES:
        raise DatasetError(f"dataset type {dataset_type!r} is not one of {DATASET_TYPES}")
    datasets = [open_one(dataset_type, root, transform, target_transform, is_test, balance_data, label_file)
                for root in roots]
    first = datasets[0]
    differing = [(root, dataset) for root, dataset in zip(roots, datasets)
                 if not same_class_names(dataset.class_names, first.class_names)]
    if differing:
        details = "; ".join(f"{root}: {list(dataset.class_names)}" for root, dataset in differing)
        raise DatasetError(f"the class lists of the dataset roots differ: {roots[0]} has {list(first.class_names)}, "
                           f"but {details}")
    dataset = first if len(datasets) == 1 else ConcatDetectionDataset(datasets)
    return dataset, list(first.class_names)
