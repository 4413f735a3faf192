"""The SSD module: base net + extra layers + per-feature-map heads, and the ``MatchPrior`` target transform.

Layer names and forward order follow the original toolkit exactly, so its released checkpoints load
with ``strict=True`` and give the same outputs. The module loads local files only: zoo names, URLs and
the recognition of a wrong checkpoint's net type are :mod:`vision.ssd.weights`' job.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision.ssd import torchvision_backbones
from vision.ssd.heads import class_count
from vision.utils import box_utils
from vision.utils.atomic import save_torch
from vision.utils.checkpoint import load_state_dict_file

# Tap inside a base-net block: run ``base_net[s0].<name>[:s1]``, take that as the head's input, then
# finish the block. (mb2-ssd-lite's first head reads the expansion of block 14.)
GraphPath = namedtuple("GraphPath", ["s0", "name", "s1"])

SourceLayer = Union[int, Tuple[int, nn.Module], GraphPath]


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Input: ``(N, 3, H, W)`` float32, already normalised with the net's mean/std.
    Output with ``is_test=False``: raw ``(confidences (N, P, C), locations (N, P, 4))``;
    with ``is_test=True``: ``(scores (N, P, C) softmaxed, boxes (N, P, 4) corner form, 0..1)``.
    """

    def __init__(self, num_classes: int, base_net: nn.Module, source_layer_indexes: Sequence[SourceLayer],
                 extras: nn.ModuleList, classification_headers: nn.ModuleList, regression_headers: nn.ModuleList,
                 is_test: bool = False, config=None, device: Optional[torch.device] = None):
        super().__init__()
        self.num_classes = num_classes
        self.base_net = base_net
        self.source_layer_indexes = list(source_layer_indexes)
        self.extras = extras
        self.classification_headers = classification_headers
        self.regression_headers = regression_headers
        self.is_test = is_test
        self.config = config
        # Registered last, as the original does, so state_dict order matches released checkpoints.
        self.source_layer_add_ons = nn.ModuleList(
            [t[1] for t in self.source_layer_indexes if isinstance(t, tuple) and not isinstance(t, GraphPath)]
        )
        # Not persistent: the original's checkpoints hold no priors.
        self.register_buffer("priors", config.priors.clone() if config is not None else None, persistent=False)
        if device is not None:
            self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        confidences: List[Tensor] = []
        locations: List[Tensor] = []
        for header_index, feature_map in enumerate(self.feature_maps(x)):
            confidence, location = self.compute_header(header_index, feature_map)
            confidences.append(confidence)
            locations.append(location)

        confidences_all = torch.cat(confidences, 1)
        locations_all = torch.cat(locations, 1)
        if self.is_test:
            scores = F.softmax(confidences_all, dim=2)
            boxes = box_utils.convert_locations_to_boxes(
                locations_all, self.priors, self.config.center_variance, self.config.size_variance
            )
            return scores, box_utils.center_form_to_corner_form(boxes)
        return confidences_all, locations_all

    def feature_maps(self, x: Tensor) -> List[Tensor]:
        """The maps the heads read, in head order: ``(N, C_i, rows_i, cols_i)`` for input ``(N, 3, H, W)``.
        (``vision.ssd.input_size`` runs it on an empty batch to measure the maps at any size.)"""
        maps: List[Tensor] = []
        start = 0
        for source in self.source_layer_indexes:
            path = None
            added_layer = None
            if isinstance(source, GraphPath):
                path, end = source, source.s0
            elif isinstance(source, tuple):
                end, added_layer = source
            else:
                end = source
            for layer in self.base_net[start:end]:
                x = layer(x)
            y = added_layer(x) if added_layer is not None else x
            if path is not None:
                block = getattr(self.base_net[end], path.name)
                for layer in block[:path.s1]:
                    x = layer(x)
                y = x
                for layer in block[path.s1:]:
                    x = layer(x)
                end += 1
            start = end
            maps.append(y)

        for layer in self.base_net[start:]:
            x = layer(x)

        for layer in self.extras:
            x = layer(x)
            maps.append(x)
        return maps

    def use_config(self, config) -> None:
        """Run at ``config``'s input size from now on: sets ``self.config`` and the ``priors`` buffer
        (float32 ``(P, 4)`` center form, 0..1, on the net's device). Weights are size-independent."""
        self.config = config
        self.priors = config.priors.to(self.priors.device if self.priors is not None else "cpu")

    def compute_header(self, i: int, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Head ``i`` on feature map ``x``: ``(confidence (N, L*A, C), location (N, L*A, 4))``."""
        confidence = self.classification_headers[i](x).permute(0, 2, 3, 1).contiguous()
        confidence = confidence.view(confidence.size(0), -1, self.num_classes)
        location = self.regression_headers[i](x).permute(0, 2, 3, 1).contiguous()
        location = location.view(location.size(0), -1, 4)
        return confidence, location

    # -- initialisation and weights: strict loaders of local files ---------------------------------
    def init(self) -> None:
        """Xavier-initialise every convolution (training from scratch)."""
        self.apply(_xavier_init_)

    def init_from_base_net(self, model_path: str) -> None:
        """Load a local state_dict of the base net alone (strict), Xavier-initialise the rest; see
        :meth:`init_base_net_from`. Zoo names and URLs: ``vision.ssd.weights.init_from_base_net``."""
        self.init_base_net_from(load_state_dict_file(model_path), model_path)

    def init_from_pretrained_ssd(self, model_path: str) -> None:
        """Load every weight of a local trained SSD but its heads (so the class count may differ); see
        :meth:`init_from_pretrained_state_dict`. Zoo names and URLs: ``vision.ssd.weights``."""
        self.init_from_pretrained_state_dict(load_state_dict_file(model_path), model_path)

    def load(self, model_path: str) -> None:
        """Load a local checkpoint, strict: a bare state_dict (the original's format) or this project's
        training checkpoint. Zoo names, URLs and which net type a wrong file is:
        ``vision.ssd.weights.load_weights``."""
        self.load_weights_from(load_state_dict_file(model_path), model_path)

    def save(self, model_path: str) -> None:
        """Save the bare state_dict (the format the original's users exchange), atomically."""
        save_torch(self.state_dict(), model_path)

    def load_weights_from(self, state_dict: Dict[str, Tensor], source: str) -> None:
        """Load a whole net's ``state_dict`` strictly; :class:`WeightsMismatchError` naming ``source`` (and
        both class counts, when only the classification heads differ) when it does not fit."""
        problem = mismatch(self, state_dict, source)
        if problem is not None:
            raise problem
        self.load_state_dict(state_dict, strict=True)

    def init_base_net_from(self, state_dict: Dict[str, Tensor], source: str) -> None:
        """Fill the base net from ``state_dict``: the base net's own state_dict (strict), or a torchvision
        classification state_dict (told apart by its keys; ``vision.ssd.torchvision_backbones``).
        Xavier-initialises the rest. :class:`WeightsMismatchError` when it is neither."""
        classifier = torchvision_backbones.torchvision_classifier_name(state_dict)
        if classifier is not None:
            torchvision_backbones.load_torchvision_classifier_into_base_net(self.base_net, state_dict, classifier,
                                                                            source)
        elif not fits(self.base_net, state_dict):
            raise WeightsMismatchError(f"{source}: not a state_dict of this base net")
        else:
            self.base_net.load_state_dict(state_dict, strict=True)
        for part in (self.source_layer_add_ons, self.extras, self.classification_headers, self.regression_headers):
            part.apply(_xavier_init_)

    def init_from_pretrained_state_dict(self, state_dict: Dict[str, Tensor], source: str) -> None:
        """Every weight of ``state_dict`` but the heads (strict over the rest); the heads are Xavier-initialised.
        :class:`WeightsMismatchError` when the rest does not fit."""
        kept = {k: v for k, v in state_dict.items() if not k.startswith(_HEADS)}
        model_dict = self.state_dict()
        own = {k: v for k, v in model_dict.items() if not k.startswith(_HEADS)}
        if set(kept) != set(own) or any(kept[k].shape != own[k].shape for k in own):
            raise WeightsMismatchError(f"{source}: {_difference(own, kept)}: not a checkpoint of this net type")
        model_dict.update(kept)
        self.load_state_dict(model_dict)
        self.classification_headers.apply(_xavier_init_)
        self.regression_headers.apply(_xavier_init_)


_HEADS = ("classification_headers", "regression_headers")


class WeightsMismatchError(ValueError):
    """A state_dict that does not fit a net; one line naming the file. ``class_counts`` is ``(the file's, the
    net's)`` when only the class count differs, else None; ``recognisable`` is False when the message already
    says what the file is (so ``vision.ssd.weights`` need not recognise it)."""

    def __init__(self, message: str, class_counts: Optional[Tuple[int, int]] = None, recognisable: bool = True):
        super().__init__(message)
        self.class_counts = class_counts
        self.recognisable = recognisable


def fits(module: nn.Module, state_dict: Mapping[str, Tensor]) -> bool:
    """True when ``state_dict`` has exactly ``module``'s entries with the same shapes."""
    own = module.state_dict()
    return set(own) == set(state_dict) and all(tuple(own[key].shape) == tuple(state_dict[key].shape) for key in own)


def mismatch(net: SSD, state_dict: Mapping[str, Tensor], source: str) -> Optional[WeightsMismatchError]:
    """Why ``state_dict`` does not load strictly into ``net`` (None when it does): the class counts when
    only the classification heads differ, else the keys and shapes that differ."""
    own = net.state_dict()
    if fits(net, state_dict):
        return None
    differing = [key for key in own if key in state_dict and tuple(own[key].shape) != tuple(state_dict[key].shape)]
    if set(own) == set(state_dict) and all(key.startswith("classification_headers.") for key in differing):
        per_location = net.config.prior_rule.priors_per_location()
        found = class_count(state_dict, per_location)
        if found is not None:
            layer = min(differing)
            return WeightsMismatchError(
                f"{source}: a checkpoint for {found} classes (layer {layer} has {state_dict[layer].shape[0]} "
                f"outputs), but the net expects {net.num_classes} classes: check the label file (it should list "
                f"{found} names, BACKGROUND first)", class_counts=(found, net.num_classes))
    return WeightsMismatchError(f"{source}: {_difference(own, state_dict)}: not a checkpoint of this net")


def _difference(own: Mapping[str, Tensor], other: Mapping[str, Tensor]) -> str:
    """``"3 missing keys (e.g. 'a'), 1 unexpected ('b'), 2 of another shape ('c': (6,) here, (8,) there)"``."""
    missing = sorted(set(own) - set(other))
    unexpected = sorted(set(other) - set(own))
    reshaped = sorted(key for key in set(own) & set(other) if tuple(own[key].shape) != tuple(other[key].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
    if reshaped:
        key = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape (e.g. {key!r}: {tuple(other[key].shape)} in the file, "
                     f"{tuple(own[key].shape)} in the net)")
    return ", ".join(parts) or "no difference"


class MatchPrior:
    """Target transform: ground truth -> per-prior regression targets and labels.

    ``(gt_boxes (n, 4) corner form 0..1, gt_labels (n,))`` (numpy or torch) ->
    ``(locations (P, 4) float32, labels (P,) int64)``; see ``box_utils.assign_priors`` for the rule.
    """

    def __init__(self, center_form_priors: Tensor, center_variance: float, size_variance: float, iou_threshold: float):
        self.center_form_priors = center_form_priors
        self.corner_form_priors = box_utils.center_form_to_corner_form(center_form_priors)
        self.center_variance = center_variance
        self.size_variance = size_variance
        self.iou_threshold = iou_threshold

    def __call__(self, gt_boxes, gt_labels) -> Tuple[Tensor, Tensor]:
        if isinstance(gt_boxes, np.ndarray):
            gt_boxes = torch.from_numpy(gt_boxes)
        if isinstance(gt_labels, np.ndarray):
            gt_labels = torch.from_numpy(gt_labels)
        gt_boxes = gt_boxes.to(torch.float32).reshape(-1, 4)
        gt_labels = gt_labels.to(torch.int64).reshape(-1)
        boxes, labels = box_utils.assign_priors(gt_boxes, gt_labels, self.corner_form_priors, self.iou_threshold)
        boxes = box_utils.corner_form_to_center_form(boxes)
        locations = box_utils.convert_boxes_to_locations(boxes, self.center_form_priors, self.center_variance,
                                                         self.size_variance)
        return locations, labels


def _xavier_init_(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)


