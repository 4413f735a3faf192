"""Net types on torchvision's detection architectures, so that its COCO and ImageNet weights load directly.

- ``ssdlite320-mb3-large``: ``torchvision.models.detection.ssdlite320_mobilenet_v3_large``, 320x320.
- ``ssd300-vgg16``: ``torchvision.models.detection.ssd300_vgg16``, with L2Norm on conv4_3.

The modules are torchvision's own (``mobilenet_v3_large``, ``SSDLiteFeatureExtractorMobileNet``,
``SSDLiteHead``, ``SSDFeatureExtractorVGG``, ``SSDHead``), arranged in this toolkit's :class:`SSD`: the
backbone's ``features`` are ``base_net``, its ``extra`` blocks ``extras``, the heads' module lists
``classification_headers`` / ``regression_headers``, the conv4_3 rescaling a source-layer add-on. The heads'
outputs are flattened as torchvision flattens them (per map: row, column, anchor), so ``net(x)`` with
``is_test=False`` equals ``model.head(list(model.backbone(x).values()))`` and the priors
(``DefaultBoxPriors`` in :mod:`vision.ssd.priors`) equal its anchors. ``is_test=True`` decodes with torchvision's
``BoxCoder`` (weights 10, 10, 5, 5; dw/dh clamped at log(1000/16)).

Weights: torchvision's COCO state_dicts load directly (keys converted, strict) through ``load``;
``init_from_base_net`` takes torchvision's ImageNet ``mobilenet_v3_large`` / ``vgg16``
(``IMAGENET1K_FEATURES``) state_dict; ``init_from_pretrained_ssd`` keeps every weight whose shape fits and
re-initialises the rest, which for another class count is the classification head alone.

The ssdlite backbone has two layouts, as in torchvision: the reduced tail (last map 480 channels; what
torchvision builds without ImageNet weights, so the COCO checkpoint's) by default, and the full tail (960)
built from the ImageNet backbone. Loading picks the layout from the tensor shapes.
"""
from __future__ import annotations

from functools import partial
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision.ssd.config import torchvision_ssd_config as tv_config
from vision.ssd.heads import class_count
from vision.ssd.predictor import Predictor
from vision.ssd.ssd import SSD, WeightsMismatchError
from vision.ssd.torchvision_backbones import torchvision_classifier_name
from vision.utils import box_utils

SSDLITE, SSD300 = "ssdlite320-mb3-large", "ssd300-vgg16"

# torchvision detector state_dict prefix -> this toolkit's
_KEY_PREFIXES = (
    ("backbone.features.", "base_net."),
    ("backbone.extra.", "extras."),
    ("head.classification_head.module_list.", "classification_headers."),
    ("head.regression_head.module_list.", "regression_headers."),
    ("backbone.scale_weight", "source_layer_add_ons.0.weight"),
)


class L2Norm(nn.Module):
    """conv4_3's rescaling in ssd300_vgg16: ``weight (C,) * F.normalize(x)`` over channels, weight 20 at start."""

    def __init__(self, channels: int = 512, scale: float = 20.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x)


class TorchvisionSSD(SSD):
    """An :class:`SSD` on a torchvision architecture (see the module docstring). ``variant`` names the net
    type; ``reduced_tail`` the ssdlite backbone layout."""

    def __init__(self, variant: str, num_classes: int, is_test: bool = False, reduced_tail: bool = True):
        self.variant = variant
        self.reduced_tail = reduced_tail
        base_net, sources, extras, classification, regression = _build_modules(variant, num_classes, reduced_tail)
        config = tv_config.ssdlite320_config if variant == SSDLITE else tv_config.ssd300_config
        super().__init__(num_classes, base_net, sources, extras, classification, regression, is_test=is_test,
                         config=config)

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """As :class:`SSD`; with ``is_test=True`` the boxes are decoded by :meth:`decode_boxes`."""
        confidences, locations = [], []
        for index, feature_map in enumerate(self.feature_maps(x)):
            confidence, location = self.compute_header(index, feature_map)
            confidences.append(confidence)
            locations.append(location)
        confidences_all, locations_all = torch.cat(confidences, 1), torch.cat(locations, 1)
        if self.is_test:
            return F.softmax(confidences_all, dim=2), self.decode_boxes(locations_all)
        return confidences_all, locations_all

    def decode_boxes(self, locations: Tensor) -> Tensor:
        """torchvision's ``BoxCoder((10, 10, 5, 5)).decode_single`` against the priors.
        locations: ``(N, P, 4)`` regressions. Returns ``(N, P, 4)`` corner form, 0..1 (not clipped)."""
        from torchvision.models.detection._utils import BoxCoder

        priors = box_utils.center_form_to_corner_form(self.priors)  # (P, 4), 0..1
        batch, count = locations.shape[:2]
        coder = BoxCoder(weights=tv_config.BOX_CODER_WEIGHTS)
        boxes = coder.decode_single(locations.reshape(-1, 4), priors.repeat(batch, 1))
        return boxes.reshape(batch, count, 4)

    # -- weights (state_dicts; SSD's load / init_from_* read the local file) ------------------------------
    def load_weights_from(self, state_dict: Mapping[str, Tensor], source: str) -> None:
        """Load a whole net, strict: this toolkit's state_dict or torchvision's COCO detector's (keys
        converted). The ssdlite layout follows the file's shapes."""
        state_dict = convert_torchvision_keys(state_dict)
        self._adopt_layout(state_dict)
        own = self.state_dict()
        if set(state_dict) != set(own):
            missing = sorted(set(own) - set(state_dict))
            unexpected = sorted(set(state_dict) - set(own))
            example = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            raise WeightsMismatchError(f"{source}: not a {self.variant} checkpoint ({len(missing)} missing and "
                                       f"{len(unexpected)} unexpected keys, e.g. {example})")
        for key, tensor in state_dict.items():
            if tensor.shape != own[key].shape:
                found = class_count(state_dict, self.config.prior_rule.priors_per_location())
                if key.startswith("classification_headers.") and found is not None:
                    raise WeightsMismatchError(f"{source}: {key} has shape {tuple(tensor.shape)}, this {self.variant} "
                                               f"{tuple(own[key].shape)}; it has {found} classes, this net "
                                               f"{self.num_classes}", class_counts=(found, self.num_classes))
                raise WeightsMismatchError(f"{source}: {key} has shape {tuple(tensor.shape)}, this {self.variant} "
                                           f"{tuple(own[key].shape)}")
        self.load_state_dict(state_dict, strict=True)

    def init_from_pretrained_state_dict(self, state_dict: Mapping[str, Tensor], source: str) -> None:
        """Fine-tuning start: every weight of a whole net (this toolkit's or torchvision's COCO state_dict)
        whose shape fits is kept; the others are re-initialised as torchvision initialises them. For
        another class count that is the classification head alone (the box regression is class-agnostic)."""
        state_dict = convert_torchvision_keys(state_dict)
        self._adopt_layout(state_dict)
        own = self.state_dict()
        if set(state_dict) != set(own):
            raise WeightsMismatchError(f"{source}: not a {self.variant} checkpoint "
                                       f"(e.g. {sorted(set(state_dict) ^ set(own))[0]!r} differs)")
        differing = sorted({key.split(".")[0] for key, tensor in state_dict.items() if tensor.shape != own[key].shape})
        if any(part != "classification_headers" for part in differing):
            raise WeightsMismatchError(f"{source}: {', '.join(differing)} differ in shape from this {self.variant}; "
                                       "only the classification head may (another class count)")
        kept = {key: tensor for key, tensor in state_dict.items() if tensor.shape == own[key].shape}
        own.update(kept)
        self.load_state_dict(own, strict=True)
        if differing:
            fresh = _build_modules(self.variant, self.num_classes, self.reduced_tail)[3]
            self.classification_headers = fresh.to(self.priors.device)

    def init_base_net_from(self, state_dict: Mapping[str, Tensor], source: str) -> None:
        """Start from torchvision's ImageNet backbone state_dict (``mobilenet_v3_large`` for ssdlite, which
        then takes the full-tail layout, as torchvision builds it; ``vgg16`` for ssd300, its conv1_1-conv5_3
        from ``IMAGENET1K_FEATURES``); the rest initialised as torchvision does."""
        found = torchvision_classifier_name(state_dict)
        wanted = "mobilenet_v3_large" if self.variant == SSDLITE else "vgg16"
        if found != wanted:
            what = f"torchvision {found} weights" if found else "not a torchvision classification state_dict"
            zoo_name = "mobilenet_v3_large-imagenet-v1" if wanted != "vgg16" else "vgg16-imagenet-features"
            raise WeightsMismatchError(f"{source}: {what}; {self.variant} takes torchvision's ImageNet {wanted} "
                                       f"(zoo: {zoo_name})", recognisable=False)
        if self.variant == SSDLITE:
            modules = _build_modules(SSDLITE, self.num_classes, reduced_tail=False, imagenet_state_dict=state_dict)
            self.reduced_tail = False
        else:
            modules = _build_modules(SSD300, self.num_classes, imagenet_state_dict=state_dict)
        self._replace_modules(modules)

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` after converting torchvision's keys and adopting the ssdlite layout of
        ``state_dict`` (so ``--resume`` of a full-tail run works); call it before making an optimiser."""
        state_dict = convert_torchvision_keys(state_dict)
        self._adopt_layout(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- helpers ----------------------------------------------------------------------------------------
    def _adopt_layout(self, state_dict: Mapping[str, Tensor]) -> None:
        """Rebuild the ssdlite modules in the layout ``state_dict`` has (reduced or full tail)."""
        if self.variant != SSDLITE or "extras.0.0.0.weight" not in state_dict:
            return
        reduced = state_dict["extras.0.0.0.weight"].shape[1] == REDUCED_TAIL_CHANNELS
        if reduced != self.reduced_tail:
            self.reduced_tail = reduced
            self._replace_modules(_build_modules(SSDLITE, self.num_classes, reduced_tail=reduced))

    def _replace_modules(self, modules) -> None:
        device = self.priors.device
        base_net, sources, extras, classification, regression = modules
        self.base_net, self.source_layer_indexes, self.extras = base_net.to(device), list(sources), extras.to(device)
        self.classification_headers, self.regression_headers = classification.to(device), regression.to(device)
        self.source_layer_add_ons = nn.ModuleList([s[1] for s in sources if isinstance(s, tuple)]).to(device)


REDUCED_TAIL_CHANNELS = 480  # the reduced tail's last map; the full tail's is 960


def convert_torchvision_keys(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """A torchvision ``SSD`` state_dict's keys in this toolkit's names (``backbone.features.`` ->
    ``base_net.``, ``backbone.extra.`` -> ``extras.``, the heads' ``module_list`` -> ``*_headers``,
    ``backbone.scale_weight`` -> the L2Norm add-on); other state_dicts are returned as they are."""
    if not any(key.startswith("backbone.") for key in state_dict):
        return dict(state_dict)
    converted = {}
    for key, tensor in state_dict.items():
        for old, new in _KEY_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        converted[key] = tensor
    return converted


def _build_modules(variant: str, num_classes: int, reduced_tail: bool = True,
                   imagenet_state_dict: Optional[Mapping[str, Tensor]] = None):
    """``(base_net, source_layer_indexes, extras, classification_headers, regression_headers)`` of torchvision's
    modules, initialised as torchvision initialises them (with ``imagenet_state_dict``: the backbone from it)."""
    if variant == SSDLITE:
        return _ssdlite_modules(num_classes, reduced_tail, imagenet_state_dict)
    if variant == SSD300:
        return _ssd300_modules(num_classes, imagenet_state_dict)
    raise ValueError(f"unknown torchvision-based net type {variant!r}")


def _ssdlite_modules(num_classes: int, reduced_tail: bool, imagenet_state_dict):
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import ssdlite

    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)  # torchvision's for this detector
    backbone = mobilenet_v3_large(weights=None, norm_layer=norm_layer, reduced_tail=reduced_tail)
    if imagenet_state_dict is not None:
        backbone.load_state_dict(imagenet_state_dict, strict=True)
    else:
        ssdlite._normal_init(backbone)  # torchvision's initialisation without ImageNet weights
    features = backbone.features
    c4_position = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)][-1]
    extractor = ssdlite.SSDLiteFeatureExtractorMobileNet(features, c4_position, norm_layer)
    out_channels = [extractor.features[0][-1].out_channels, features[-1].out_channels, 512, 256, 256, 128]
    anchors = tv_config.ssdlite320_rule.priors_per_location()
    head = ssdlite.SSDLiteHead(out_channels, list(anchors), num_classes, norm_layer)
    return (extractor.features, [1, 2], extractor.extra, head.classification_head.module_list,
            head.regression_head.module_list)


def _ssd300_modules(num_classes: int, imagenet_state_dict):
    from torchvision.models.detection import ssd
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"])  # vgg16's features; its classifier is not needed
    if imagenet_state_dict is not None:
        features.load_state_dict({key[len("features."):]: tensor for key, tensor in imagenet_state_dict.items()
                                  if key.startswith("features.")}, strict=True)
    extractor = ssd.SSDFeatureExtractorVGG(features, highres=False)
    anchors = tv_config.ssd300_rule.priors_per_location()
    head = ssd.SSDHead([512, 1024, 512, 256, 256, 256], list(anchors), num_classes)
    sources = [(len(extractor.features), L2Norm(512))]
    return (extractor.features, sources, extractor.extra, head.classification_head.module_list,
            head.regression_head.module_list)


# -- factories and predictors ---------------------------------------------------------------------------
def create_ssdlite320_mb3_large(num_classes: int, is_test: bool = False, reduced_tail: bool = True) -> TorchvisionSSD:
    """``ssdlite320-mb3-large`` for ``num_classes`` (background included; COCO: 91); 3234 priors at 320x320.
    ``reduced_tail``: the COCO checkpoint's layout (default); False: the ImageNet backbone's."""
    return TorchvisionSSD(SSDLITE, num_classes, is_test=is_test, reduced_tail=reduced_tail)


def create_ssd300_vgg16(num_classes: int, is_test: bool = False) -> TorchvisionSSD:
    """``ssd300-vgg16`` for ``num_classes`` (background included; COCO: 91); 8732 priors at 300x300."""
    return TorchvisionSSD(SSD300, num_classes, is_test=is_test)


def _predictor(defaults: tv_config.PostprocessDefaults, net: SSD, candidate_size: Optional[int] = None,
               nms_method: Optional[str] = None, sigma: float = 0.5, device=None,
               max_detections: Optional[int] = None) -> Predictor:
    """torchvision's postprocessing: scores above ``defaults.score_threshold``, the ``candidate_size`` best
    per class (None: torchvision's), boxes clipped to the image, ``torchvision.ops.batched_nms``, the
    ``max_detections`` best of an image kept (None: torchvision's ``detections_per_img``; 0: no cap)."""
    predictor = Predictor.from_config(net, net.config, candidate_size=candidate_size or defaults.candidate_size,
                                      nms_method=nms_method, sigma=sigma, device=device)
    predictor.filter_threshold = defaults.score_threshold
    predictor.exact_original_nms = False
    predictor.clip_boxes = True
    predictor.max_detections = defaults.max_detections if max_detections is None else max_detections
    return predictor


create_ssdlite320_mb3_large_predictor = partial(_predictor, tv_config.ssdlite320_postprocess)
create_ssd300_vgg16_predictor = partial(_predictor, tv_config.ssd300_postprocess)
