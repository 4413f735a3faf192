"""Which model a state_dict belongs to, so that a checkpoint given to the wrong flag or net type gets a
message that says what it is and which flag takes it.

Signatures are derived from the registry's nets themselves: each net type is built twice on the
``meta`` device (no memory, no weights), for 2 and 3 classes; the entries whose shapes differ are the
class-dependent ones, and their first dimension divided by the class count gives the outputs per class.
torchvision's classification and detection models are recognised the same way, by building a few of
them on the meta device. Nothing is built until a checkpoint does not fit, so loading a right file costs
nothing.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torchvision.models import get_model

from vision.ssd.heads import class_count
from vision.ssd.registry import NET_TYPES, create_net

Shape = Tuple[int, ...]

# torchvision models a user may hold by mistake: ImageNet backbones and whole detectors.
TORCHVISION_CLASSIFIERS = ("vgg16", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "squeezenet1_0",
                           "squeezenet1_1", "resnet18", "resnet50")
TORCHVISION_DETECTORS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "fasterrcnn_resnet50_fpn",
                         "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn")


@dataclass(frozen=True)
class NetSignature:
    """One net type's state_dict: fixed entries' shapes, and for class-dependent entries the shape with the
    first dimension given per class (``outputs = per_class * num_classes``)."""

    net_type: str
    fixed: Dict[str, Shape]
    per_class: Dict[str, Tuple[int, Shape]]  # key -> (outputs per class, remaining dims)
    priors_per_location: Tuple[int, ...]

    @property
    def keys(self) -> frozenset:
        return frozenset(self.fixed) | frozenset(self.per_class)

    def base_net_keys(self) -> Dict[str, Shape]:
        """The base net's own state_dict (``base_net.`` stripped), as ``--base_net`` files hold it."""
        return {key[len("base_net."):]: shape for key, shape in self.fixed.items() if key.startswith("base_net.")}

    def class_count(self, shapes: Mapping[str, Shape]) -> Optional[int]:
        """The class count that ``shapes`` (a state_dict's key -> shape) was built for
        (:func:`vision.ssd.heads.class_count`), when every entry fits this signature at that count; else None."""
        if frozenset(shapes) != self.keys or any(shapes[key] != shape for key, shape in self.fixed.items()):
            return None
        count = class_count(shapes, self.priors_per_location)
        if count is None or any(tuple(shapes[key]) != (per_class * count,) + rest
                                for key, (per_class, rest) in self.per_class.items()):
            return None
        return count


@dataclass(frozen=True)
class Recognised:
    """What a state_dict is. kind: ``ssd`` (a whole net of ``net_type`` for ``num_classes``),
    ``ssd-other-width`` (an mb2-ssd-lite of another width multiplier), ``base-net`` (the base net of the
    ``net_types``), ``torchvision-classification`` / ``torchvision-detection`` (``model`` is
    torchvision's name, when known)."""

    kind: str
    net_type: Optional[str] = None
    num_classes: Optional[int] = None
    net_types: Tuple[str, ...] = ()
    model: Optional[str] = None

    def describe(self) -> str:
        if self.kind == "ssd":
            return f"a {self.net_type} checkpoint ({self.num_classes} classes)"
        if self.kind == "ssd-other-width":
            return f"an {self.net_type} checkpoint of another --mb2_width_mult"
        if self.kind == "base-net":
            return f"a base net of {' / '.join(self.net_types)} (not a whole SSD)"
        what = f"torchvision's {self.model}" if self.model else "a torchvision model"
        if self.kind == "torchvision-classification":
            return f"{what} classification weights (an ImageNet classifier, not an SSD checkpoint)"
        return f"{what} detector (torchvision's own detection model, not one of this toolkit's SSD net types)"


def _shapes(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Shape]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


@functools.lru_cache(maxsize=None)
def net_signatures() -> Tuple[NetSignature, ...]:
    """Every registry net type's signature (default width multiplier), built on the meta device."""
    signatures = []
    for name in NET_TYPES:
        try:
            with torch.device("meta"):
                two, three = (_shapes(create_net(name, count).state_dict()) for count in (2, 3))
        except (RuntimeError, NotImplementedError):  # a net whose set-up computes on tensors: build it for real
            two, three = (_shapes(create_net(name, count).state_dict()) for count in (2, 3))
        fixed, per_class = {}, {}
        for key, shape in two.items():
            if three[key] == shape:
                fixed[key] = shape
            else:
                per_class[key] = (three[key][0] - shape[0], shape[1:])
        per_location = NET_TYPES[name].config.prior_rule.priors_per_location()
        signatures.append(NetSignature(name, fixed, per_class, tuple(per_location)))
    return tuple(signatures)


@functools.lru_cache(maxsize=None)
def _torchvision_key_sets() -> Tuple[Tuple[str, str, frozenset], ...]:
    found = []
    for kind, names in (("torchvision-classification", TORCHVISION_CLASSIFIERS),
                        ("torchvision-detection", TORCHVISION_DETECTORS)):
        for name in names:
            options = ({"weights": None} if kind.endswith("classification")
                       else {"weights": None, "weights_backbone": None})
            with torch.device("meta"):
                found.append((kind, name, frozenset(get_model(name, **options).state_dict())))
    return tuple(found)


def _looks_like_torchvision(keys: Sequence[str]) -> Optional[str]:
    """The kind of a torchvision-like state_dict by its top-level names, for models not in the lists."""
    tops = {key.split(".", 1)[0] for key in keys}
    if "backbone" in tops and tops & {"head", "rpn", "roi_heads", "anchor_generator"}:
        return "torchvision-detection"
    if tops & {"classifier", "fc"} and tops & {"features", "conv1", "layer1"}:
        return "torchvision-classification"
    return None


def recognise_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Optional[Recognised]:
    """What ``state_dict`` is (see :class:`Recognised`), or None when it is none of them."""
    shapes = _shapes(state_dict)
    keys = frozenset(shapes)
    signatures = net_signatures()
    for signature in signatures:
        count = signature.class_count(shapes)
        if count is not None:
            return Recognised("ssd", signature.net_type, count)
    for signature in signatures:
        if signature.keys == keys:
            return Recognised("ssd-other-width", signature.net_type)
    bases = tuple(signature.net_type for signature in signatures if signature.base_net_keys() == shapes)
    if bases:
        return Recognised("base-net", net_types=bases)
    kind = _looks_like_torchvision(list(keys))
    if kind is None:
        return None
    for candidate_kind, name, candidate_keys in _torchvision_key_sets():
        if candidate_keys == keys:
            return Recognised(candidate_kind, model=name)
    return Recognised(kind)


def mismatch_message(state_dict: Mapping[str, torch.Tensor], expected_net_type: Optional[str], num_classes: int,
                     source: str) -> str:
    """One line for a state_dict that does not fit a net of ``expected_net_type`` (None: unknown) built
    for ``num_classes``: what the file is, and the flag that takes it."""
    found = recognise_state_dict(state_dict)
    expected = expected_net_type or "this net type"
    if found is None:
        return f"{source}: not a checkpoint of {expected} nor of any other net type of this toolkit"
    if found.kind == "ssd" and found.net_type == expected_net_type:
        signature = next(signature for signature in net_signatures() if signature.net_type == found.net_type)
        layer = min(key for key in signature.per_class if key.startswith("classification_headers"))
        return (f"{source}: a {found.net_type} checkpoint for {found.num_classes} classes (layer {layer} has "
                f"{state_dict[layer].shape[0]} outputs), but the net expects {num_classes} classes: check the label "
                f"file (it should list {found.num_classes} names, BACKGROUND first)")
    if found.kind == "ssd":
        return (f"{source}: this checkpoint is a {found.net_type} ({found.num_classes} classes), not a {expected}; "
                f"run with --net {found.net_type}")
    if found.kind == "ssd-other-width":
        return f"{source}: {found.describe()}; pass the --mb2_width_mult it was trained with"
    if found.kind == "base-net":
        return f"{source}: {found.describe()}; pass it as --base_net to train_ssd.py"
    return f"{source}: {found.describe()}"


def own_net_type(net: torch.nn.Module) -> Optional[str]:
    """The registry net type whose signature ``net``'s state_dict has (None for other widths or nets)."""
    found = recognise_state_dict(net.state_dict())
    return found.net_type if found is not None and found.kind == "ssd" else None
