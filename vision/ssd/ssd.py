"""The SSD module: base net + extra layers + per-feature-map heads, and the ``MatchPrior`` target transform.

Layer names and forward order follow the original toolkit exactly, so its released checkpoints load
with ``strict=True`` and give the same outputs.
"""
from __future__ import annotations

from collections import namedtuple
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision import zoo
from vision.ssd import net_recognition, torchvision_backbones
from vision.utils import box_utils
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

    # -- initialisation and weights -------------------------------------------------------------
    def init(self) -> None:
        """Xavier-initialise every convolution (training from scratch)."""
        self.apply(_xavier_init_)

    def init_from_base_net(self, model: str) -> None:
        """Load a state_dict of the base net alone (strict), Xavier-initialise the rest. ``model``: a file, a
        zoo name or a URL (``vision.zoo.resolve_weights``); a torchvision classification state_dict (told
        apart by its keys) fills the base net through ``vision.ssd.torchvision_backbones``."""
        state_dict = load_state_dict_file(zoo.resolve_weights(model))
        classifier = torchvision_backbones.torchvision_classifier_name(state_dict)
        if classifier is not None:
            torchvision_backbones.load_torchvision_classifier_into_base_net(self.base_net, state_dict, classifier, model)
        elif not net_recognition.fits(self.base_net, state_dict):
            found = net_recognition.recognise_state_dict(state_dict)
            if found is not None and found.kind in ("ssd", "ssd-other-width"):
                raise ValueError(f"{model}: {found.describe()}, a whole SSD, not a base net; pass it as "
                                 f"--pretrained_ssd (every weight but the heads) or --resume instead of --base_net")
            what = f" ({found.describe()})" if found is not None else ""
            raise ValueError(f"{model}: not a state_dict of this base net{what}")
        else:
            self.base_net.load_state_dict(state_dict, strict=True)
        for part in (self.source_layer_add_ons, self.extras, self.classification_headers, self.regression_headers):
            part.apply(_xavier_init_)

    def init_from_pretrained_ssd(self, model: str) -> None:
        """Load every weight of a trained SSD but its heads (so the class count may differ);
        Xavier-initialise the heads. ``model``: a file, a zoo name or a URL."""
        state_dict = load_state_dict_file(zoo.resolve_weights(model))
        kept = {k: v for k, v in state_dict.items()
                if not (k.startswith("classification_headers") or k.startswith("regression_headers"))}
        model_dict = self.state_dict()
        own = {k: v for k, v in model_dict.items()
               if not (k.startswith("classification_headers") or k.startswith("regression_headers"))}
        if set(kept) != set(own) or any(kept[k].shape != own[k].shape for k in own):
            found = net_recognition.recognise_state_dict(state_dict)
            if found is not None and found.kind == "base-net":
                raise ValueError(f"{model}: {found.describe()}; pass it as --base_net instead of --pretrained_ssd")
            raise ValueError(net_recognition.mismatch_message(state_dict, net_recognition.own_net_type(self),
                                                              self.num_classes, model))
        model_dict.update(kept)
        self.load_state_dict(model_dict)
        self.classification_headers.apply(_xavier_init_)
        self.regression_headers.apply(_xavier_init_)

    def load(self, model: str) -> None:
        """Load a checkpoint: a bare state_dict (the original's format) or this project's training checkpoint;
        ``model``: a file, a zoo name or a URL (``vision.zoo.resolve_weights``)."""
        state_dict = load_state_dict_file(zoo.resolve_weights(model))
        net_recognition.check_fits(self, state_dict, model)
        self.load_state_dict(state_dict, strict=True)

    def save(self, model_path: str) -> None:
        """Save the bare state_dict (the format the original's users exchange), atomically."""
        from vision.utils.checkpoint import atomic_save

        atomic_save(self.state_dict(), model_path)



def check_class_count(net: SSD, state_dict: dict, source: str) -> None:
    """Raise a one-line ValueError when ``state_dict`` does not load into ``net``: it names the checkpoint's
    net type and class count and the flag to fix (see ``vision.ssd.net_recognition``)."""
    net_recognition.check_fits(net, state_dict, source)


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
        locations = box_utils.convert_boxes_to_locations(boxes, self.center_form_priors, self.center_variance, self.size_variance)
        return locations, labels


def _xavier_init_(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)


