"""Named pretrained weights: one table, downloads into torch's hub cache, and the resolver every weight
argument goes through.

Wherever a weight file is taken (``--base_net``, ``--pretrained_ssd``, the model argument of the eval,
example, live-demo and convert scripts, ``vision.ssd.weights``), :func:`resolve_weights` turns the
argument into a local file: an existing path is used as is; a zoo name (``python -m vision.zoo list``),
a torchvision weight name (``"MobileNet_V2_Weights.IMAGENET1K_V2"``) or an http(s) URL is fetched once into
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, where torchvision keeps its own
downloads, so those are reused).

A download shows a progress bar, is written to a temporary file and renamed only once it is checked
(Ctrl-C leaves nothing under the final name), is checked against the SHA-256 prefix in torchvision's
file names or the entry's full SHA-256, and, for the original toolkit's files (no hashes were
published), by the ``check_original`` the caller passes (``vision.ssd.weights`` loads the file strictly
into its net type; this module knows nothing of the nets). Failures are one-line :class:`ZooError`
messages naming the URL and the cache path where the file can be put by hand.

The command is ``python -m vision.zoo list|get NAME`` (``vision.cli.zoo``).
"""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torchvision.models import get_weight

from vision.utils.atomic import remove_stale_temporaries, staged_path
from vision.utils.errors import first_line
from vision.utils.labels import write_label_file

SSD_CHECKPOINT, BASE_NET, TORCHVISION_BACKBONE, TORCHVISION_DETECTOR = (
    "ssd", "base-net", "torchvision-backbone", "torchvision-detector")
ORIGINAL_BUCKET = "https://storage.googleapis.com/models-hao/"

# The original's voc-model-labels.txt (models/voc-model-labels.txt holds the same names).
VOC_CLASS_NAMES = ("BACKGROUND", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                   "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                   "train", "tvmonitor")

# torchvision weights that exist but do not fit this toolkit's nets: name -> why, and what to use.
REFUSED_TORCHVISION_WEIGHTS = {
    "VGG16_Weights.IMAGENET1K_V1": "torchvision's VGG16 classification weights expect ImageNet normalisation "
                                   "(std about 58), not vgg16-ssd's (mean 123/117/104, std 1); use "
                                   "VGG16_Weights.IMAGENET1K_FEATURES (zoo name vgg16-imagenet-features)",
}
REFUSED_TORCHVISION_WEIGHTS["VGG16_Weights.DEFAULT"] = REFUSED_TORCHVISION_WEIGHTS["VGG16_Weights.IMAGENET1K_V1"]

_TORCH_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torchvision's "<name>-<sha256 prefix>.pth"


class ZooError(ValueError):
    """A one-line error about a named weight: unknown name, failed download, hash mismatch, bad file."""


@dataclass(frozen=True)
class ZooEntry:
    """One named weight file.

    kind: ``ssd`` (a whole SSD of this toolkit's ``net_type``), ``base-net`` (a state_dict of that net
    type's base net), ``torchvision-backbone`` or ``torchvision-detector`` (read from torchvision's weights
    API at run time through ``torchvision_weights``, ``"Enum.MEMBER"``). url / file_name / sha256: for the
    original's files (torchvision entries take them from torchvision). class_names / labels_url: the
    classes a whole detector predicts (BACKGROUND first); metric / trained_on: what was published.
    """

    name: str
    kind: str
    net_type: str
    url: str = ""
    file_name: str = ""
    sha256: Optional[str] = None
    torchvision_weights: Optional[str] = None
    class_names: Optional[Tuple[str, ...]] = None
    labels_url: Optional[str] = None
    labels_file_name: Optional[str] = None
    metric: str = ""
    trained_on: str = ""
    size_mb: Optional[float] = None

    # -- values read from torchvision at run time -------------------------------------------------
    def weights_enum(self):
        return get_weight(self.torchvision_weights)

    def download_url(self) -> str:
        return self.weights_enum().url if self.torchvision_weights else self.url

    def cache_file_name(self) -> str:
        return os.path.basename(self.download_url()) if self.torchvision_weights else self.file_name

    def hash_prefix(self) -> Optional[str]:
        """The SHA-256 (or prefix of it) the file must have, where known."""
        if self.sha256:
            return self.sha256
        if self.torchvision_weights:
            match = _TORCH_HASH_IN_NAME.search(self.cache_file_name())
            return match.group(1) if match else None
        return None

    def published_metric(self) -> str:
        if not self.torchvision_weights:
            return self.metric
        metrics = self.weights_enum().meta.get("_metrics", {})
        parts = []
        for dataset, values in metrics.items():
            for key, value in values.items():
                if value == value and key in ("acc@1", "box_map"):  # NaN for IMAGENET1K_FEATURES
                    parts.append(f"{dataset} {key} {value}")
        return "; ".join(parts) or self.metric

    def file_size_mb(self) -> Optional[float]:
        if self.torchvision_weights:
            return self.weights_enum().meta.get("_file_size")
        return self.size_mb

    def labels(self) -> Optional[List[str]]:
        """Class names in the model's index order, BACKGROUND first (torchvision's COCO list: ``N/A`` gaps
        become ``N/A-<index>`` so that the 91 indexes stay aligned and the names unique); None when the entry
        holds no class names (base nets, backbones) or they must be downloaded (``labels_url``)."""
        if self.class_names is not None:
            return list(self.class_names)
        if self.kind == TORCHVISION_DETECTOR:
            return coco_label_names(self.weights_enum().meta["categories"])
        return None


def coco_label_names(categories: Sequence[str]) -> List[str]:
    """torchvision's detection categories (``__background__``, ``person``, ..., ``N/A`` gaps) as a label
    list: index 0 ``BACKGROUND``, each ``N/A`` at index i ``N/A-<i>``."""
    names = ["BACKGROUND"]
    for index, name in enumerate(categories[1:], start=1):
        names.append(f"N/A-{index}" if name == "N/A" else name)
    return names


def _original(name: str, kind: str, net_type: str, file_name: str, metric: str, trained_on: str,
              class_names=None, labels_url=None, labels_file_name=None, url: Optional[str] = None) -> ZooEntry:
    return ZooEntry(name, kind, net_type, url=url or ORIGINAL_BUCKET + file_name, file_name=file_name,
                    class_names=class_names, labels_url=labels_url, labels_file_name=labels_file_name,
                    metric=metric, trained_on=trained_on)


def _torchvision(name: str, kind: str, net_type: str, weights: str, trained_on: str) -> ZooEntry:
    return ZooEntry(name, kind, net_type, torchvision_weights=weights, trained_on=trained_on)


# The table. The original's files are those its README lists (commit eeaccd28) and the two VOC models in
# the same bucket; torchvision's entries name its weights, whose URL, hash and categories torchvision gives.
ENTRIES: Tuple[ZooEntry, ...] = (
    _original("mb1-ssd-voc", SSD_CHECKPOINT, "mb1-ssd", "mobilenet-v1-ssd-mp-0_675.pth", "VOC2007 test mAP 0.675",
              "VOC2007+2012 trainval", class_names=VOC_CLASS_NAMES),
    _original("mb2-ssd-lite-voc", SSD_CHECKPOINT, "mb2-ssd-lite", "mb2-ssd-lite-mp-0_686.pth",
              "VOC2007 test mAP 0.686", "VOC2007+2012 trainval", class_names=VOC_CLASS_NAMES),
    _original("vgg16-ssd-voc", SSD_CHECKPOINT, "vgg16-ssd", "vgg16-ssd-mp-0_7726.pth", "VOC2007 test mAP 0.7726",
              "VOC2007+2012 trainval", class_names=VOC_CLASS_NAMES),
    _original("mb1-ssd-gun", SSD_CHECKPOINT, "mb1-ssd", "gun_model_2.21.pth", "",
              "Open Images (Handgun, Shotgun)", labels_url=ORIGINAL_BUCKET + "open-images-model-labels.txt",
              labels_file_name="open-images-model-labels.txt"),
    _original("mb1-imagenet", BASE_NET, "mb1-ssd", "mobilenet_v1_with_relu_69_5.pth", "ImageNet top-1 69.5%",
              "ImageNet"),
    _original("mb2-imagenet", BASE_NET, "mb2-ssd-lite", "mb2-imagenet-71_8.pth", "ImageNet top-1 71.8%", "ImageNet"),
    _original("vgg16-reducedfc", BASE_NET, "vgg16-ssd", "vgg16_reducedfc.pth", "", "ImageNet (conv6/conv7 included)",
              url="https://s3.amazonaws.com/amdegroot-models/vgg16_reducedfc.pth"),
    _torchvision("mobilenet_v2-imagenet-v1", TORCHVISION_BACKBONE, "mb2-ssd-lite", "MobileNet_V2_Weights.IMAGENET1K_V1",
                 "ImageNet-1K"),
    _torchvision("mobilenet_v2-imagenet-v2", TORCHVISION_BACKBONE, "mb2-ssd-lite", "MobileNet_V2_Weights.IMAGENET1K_V2",
                 "ImageNet-1K"),
    _torchvision("mobilenet_v3_large-imagenet-v1", TORCHVISION_BACKBONE, "ssdlite320-mb3-large",
                 "MobileNet_V3_Large_Weights.IMAGENET1K_V1", "ImageNet-1K"),
    _torchvision("mobilenet_v3_large-imagenet-v2", TORCHVISION_BACKBONE, "ssdlite320-mb3-large",
                 "MobileNet_V3_Large_Weights.IMAGENET1K_V2", "ImageNet-1K"),
    _torchvision("mobilenet_v3_small-imagenet-v1", TORCHVISION_BACKBONE, "-",
                 "MobileNet_V3_Small_Weights.IMAGENET1K_V1", "ImageNet-1K"),
    _torchvision("vgg16-imagenet-features", TORCHVISION_BACKBONE, "vgg16-ssd", "VGG16_Weights.IMAGENET1K_FEATURES",
                 "ImageNet-1K (SSD's VGG features, conv1_1-conv5_3)"),
    _torchvision("squeezenet1_1-imagenet", TORCHVISION_BACKBONE, "sq-ssd-lite", "SqueezeNet1_1_Weights.IMAGENET1K_V1",
                 "ImageNet-1K"),
    _torchvision("ssdlite320-mb3-large-coco", TORCHVISION_DETECTOR, "ssdlite320-mb3-large",
                 "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1", "COCO train2017"),
    _torchvision("ssd300-vgg16-coco", TORCHVISION_DETECTOR, "ssd300-vgg16", "SSD300_VGG16_Weights.COCO_V1",
                 "COCO train2017"),
)
ZOO: Dict[str, ZooEntry] = {entry.name: entry for entry in ENTRIES}


# -- looking entries up -----------------------------------------------------------------------------
def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def _looks_like_torchvision_weight_name(spec: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+", spec) is not None


def find_entry(spec: str) -> Optional[ZooEntry]:
    """The zoo entry ``spec`` names: a zoo name, a torchvision weight name (``"Enum.MEMBER"``; one not in
    the table becomes an entry of its own), or one of the table's URLs. None otherwise."""
    if spec in ZOO:
        return ZOO[spec]
    if _looks_like_torchvision_weight_name(spec):
        if spec in REFUSED_TORCHVISION_WEIGHTS:
            raise ZooError(f"{spec}: {REFUSED_TORCHVISION_WEIGHTS[spec]}")
        for entry in ENTRIES:
            if entry.torchvision_weights == spec:
                return entry
        try:
            get_weight(spec)
        except (ValueError, KeyError, AttributeError):
            raise ZooError(f"{spec}: torchvision has no such weights") from None
        kind = TORCHVISION_DETECTOR if "COCO" in spec else TORCHVISION_BACKBONE
        return ZooEntry(spec, kind, "-", torchvision_weights=spec)
    if is_url(spec):
        for entry in ENTRIES:
            if not entry.torchvision_weights and entry.url == spec:
                return entry
    return None


def checkpoints_dir() -> str:
    """``torch.hub.get_dir()/checkpoints``: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def cached_path(entry: ZooEntry) -> str:
    return os.path.join(checkpoints_dir(), entry.cache_file_name())


# -- the resolver -------------------------------------------------------------------------------------
OriginalFileCheck = Callable[["ZooEntry", str], None]  # (entry, downloaded file) -> None or ZooError


def resolve_weights(spec: str, progress: bool = True, check_original: Optional[OriginalFileCheck] = None) -> str:
    """A local file for a weight argument: an existing path as is; a zoo name, torchvision weight name or
    http(s) URL downloaded once into the hub cache (see the module docstring). Anything else is returned
    unchanged, so that the loader's "no such checkpoint file" names it. ``check_original(entry, path)``
    checks a freshly downloaded file of the original toolkit before it is kept."""
    spec = os.fspath(spec)
    if os.path.exists(spec):
        return spec
    entry = find_entry(spec)
    if entry is not None:
        return download(entry, progress=progress, check_original=check_original)
    if is_url(spec):
        return download_url(spec, os.path.basename(spec.split("?")[0]) or "download.pth", progress=progress)
    return spec


def resolve_labels(labels: str, model_spec: str) -> str:
    """A label file for a labels argument: ``-`` means the zoo entry's labels for ``model_spec`` (written
    into the hub cache as ``<entry>-labels.txt``, or downloaded where the entry has a labels URL); any
    other value is returned unchanged."""
    if labels != "-":
        return labels
    entry = find_entry(os.fspath(model_spec))
    if entry is None:
        raise ZooError(f"labels '-': {model_spec} is not a zoo entry (python -m vision.zoo list); "
                       "pass the model's label file")
    if entry.labels_url:
        return download_url(entry.labels_url, entry.labels_file_name or os.path.basename(entry.labels_url),
                            progress=False, check_torch_file=False)
    names = entry.labels()
    if names is None:
        raise ZooError(f"labels '-': zoo entry {entry.name} ({entry.kind}) has no class names; pass a label file")
    path = os.path.join(checkpoints_dir(), f"{entry.name}-labels.txt")
    if not os.path.exists(path):
        write_label_file(path, names)
    return path


# -- downloading ----------------------------------------------------------------------------------------
def download(entry: ZooEntry, progress: bool = True, check_original: Optional[OriginalFileCheck] = None) -> str:
    """Fetch ``entry`` into the hub cache unless it is there; return its path. Checked before it is moved
    under its final name: the hash where known, ``torch.load(weights_only=True)``, and for the original's
    files ``check_original(entry, path)`` when given."""
    verify = None
    if check_original is not None and not entry.torchvision_weights:
        def verify(path: str) -> None:
            check_original(entry, path)
    return download_url(entry.download_url(), entry.cache_file_name(), hash_prefix=entry.hash_prefix(),
                        progress=progress, verify=verify)


def download_url(url: str, file_name: str, hash_prefix: Optional[str] = None, progress: bool = True,
                 verify: Optional[Callable[[str], None]] = None, check_torch_file: bool = True) -> str:
    """Download ``url`` to ``<hub cache>/checkpoints/<file_name>`` unless it is there; return that path.

    The bytes go to a temporary file in the same folder (``vision.utils.atomic``; a killed run's leftovers
    for this file are removed first). Only when the hash prefix (if given) matches, the file loads with
    ``torch.load(weights_only=True)`` (if ``check_torch_file``) and ``verify(path)`` (if given) passes, is it
    renamed to the final name, with the permissions of the process's umask. Any failure, Ctrl-C included,
    removes the temporary file and leaves no file under the final name."""
    folder = checkpoints_dir()
    final = os.path.join(folder, file_name)
    if os.path.exists(final):
        return final
    remove_stale_temporaries(folder, file_name)
    with staged_path(final) as temporary:
        try:
            # torch's downloader: tqdm progress bar, SHA-256 prefix check, its own partial file cleaned up.
            torch.hub.download_url_to_file(url, temporary, hash_prefix=hash_prefix, progress=progress)
        except urllib.error.HTTPError as error:
            raise ZooError(f"cannot download {url}: HTTP {error.code} {error.reason}; "
                           f"put the file by hand at {final}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise ZooError(f"cannot download {url} ({reason}); put the file by hand at {final}") from None
        except RuntimeError as error:
            if "hash" not in str(error):
                raise
            raise ZooError(f"{url}: the download does not match its SHA-256 ({first_line(error)}); "
                           f"nothing was saved at {final}") from None
        if check_torch_file:
            try:
                torch.load(temporary, map_location="cpu", weights_only=True)
            except Exception as error:  # torch raises many types for a foreign file
                raise ZooError(f"{url}: not a PyTorch weights file ({first_line(error)}); "
                               f"nothing was saved at {final}") from None
        if verify is not None:
            verify(temporary)
    return final


# -- the table as rows (the command is vision.cli.zoo) --------------------------------------------------
def table_rows() -> List[Tuple[str, ...]]:
    """``(name, kind, net type, size, metric, cached)`` for every entry."""
    rows = []
    for entry in ENTRIES:
        path = cached_path(entry)
        cached = os.path.exists(path)
        size = os.path.getsize(path) / 1e6 if cached else entry.file_size_mb()
        rows.append((entry.name, entry.kind, entry.net_type, f"{size:.1f} MB" if size else "?",
                     entry.published_metric() or "-", "yes" if cached else "no"))
    return rows
