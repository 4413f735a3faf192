"""The one registry of net types: name -> model factory, predictor factory and prior configuration.

Every script and test goes through it, so a new net type is added here once.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Union

import torch

from vision.ssd import (
    mobilenet_v2_ssd_lite,
    mobilenetv1_ssd,
    mobilenetv1_ssd_lite,
    mobilenetv3_ssd_lite,
    squeezenet_ssd_lite,
    torchvision_ssd,
    vgg_ssd,
)
from vision.ssd.config import torchvision_ssd_config
from vision.ssd.config.base import SSDConfig
from vision.ssd.engines import check_engine
from vision.ssd.input_size import check_input_size
from vision.ssd.predictor import Predictor
from vision.ssd.priors import PriorRule
from vision.ssd.ssd import SSD
from vision.utils.image_size import ImageSize, SizeLike, as_width_height


@dataclass(frozen=True)
class NetType:
    """A net type. ``create(num_classes, is_test=..., **options)`` builds the net at its native size;
    ``create_predictor`` wraps one; ``config`` is its :class:`SSDConfig` at the native size (image size,
    mean, std, variances, NMS IoU, prior rule). At another size, ``create_net`` measures the net's maps
    and carries the configuration there (``net.config``)."""

    name: str
    create: Callable[..., SSD]
    create_predictor: Callable[..., Predictor]
    config: SSDConfig
    takes_width_mult: bool = False


NET_TYPES: Dict[str, NetType] = {
    entry.name: entry
    for entry in [
        NetType("vgg16-ssd", vgg_ssd.create_vgg_ssd, vgg_ssd.create_vgg_ssd_predictor, vgg_ssd.config.native_config),
        NetType("mb1-ssd", mobilenetv1_ssd.create_mobilenetv1_ssd, mobilenetv1_ssd.create_mobilenetv1_ssd_predictor,
                mobilenetv1_ssd.config.native_config),
        NetType("mb1-ssd-lite", mobilenetv1_ssd_lite.create_mobilenetv1_ssd_lite,
                mobilenetv1_ssd_lite.create_mobilenetv1_ssd_lite_predictor, mobilenetv1_ssd_lite.config.native_config),
        NetType("mb2-ssd-lite", mobilenet_v2_ssd_lite.create_mobilenetv2_ssd_lite,
                mobilenet_v2_ssd_lite.create_mobilenetv2_ssd_lite_predictor, mobilenet_v2_ssd_lite.config.native_config,
                takes_width_mult=True),
        NetType("mb3-large-ssd-lite", mobilenetv3_ssd_lite.create_mobilenetv3_large_ssd_lite,
                mobilenetv3_ssd_lite.create_mobilenetv3_ssd_lite_predictor, mobilenetv3_ssd_lite.config.native_config),
        NetType("mb3-small-ssd-lite", mobilenetv3_ssd_lite.create_mobilenetv3_small_ssd_lite,
                mobilenetv3_ssd_lite.create_mobilenetv3_ssd_lite_predictor, mobilenetv3_ssd_lite.config.native_config),
        NetType("sq-ssd-lite", squeezenet_ssd_lite.create_squeezenet_ssd_lite,
                squeezenet_ssd_lite.create_squeezenet_ssd_lite_predictor, squeezenet_ssd_lite.config.native_config),
        # On torchvision's architectures, for its COCO and ImageNet weights (vision.ssd.torchvision_ssd).
        NetType("ssdlite320-mb3-large", torchvision_ssd.create_ssdlite320_mb3_large,
                torchvision_ssd.create_ssdlite320_mb3_large_predictor, torchvision_ssd_config.ssdlite320_config),
        NetType("ssd300-vgg16", torchvision_ssd.create_ssd300_vgg16, torchvision_ssd.create_ssd300_vgg16_predictor,
                torchvision_ssd_config.ssd300_config),
    ]
}


def get_net_type(name: str) -> NetType:
    """The registry entry for ``name``; a ValueError listing the valid names otherwise."""
    try:
        return NET_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown net type {name!r}; choose one of: {', '.join(NET_TYPES)}") from None


def create_net(net_type: str, num_classes: int, is_test: bool = False, mb2_width_mult: float = 1.0,
               image_size: Optional[SizeLike] = None, priors: Optional[PriorRule] = None) -> SSD:
    """Build a net by name (``mb2_width_mult`` applies to mb2-ssd-lite only, as the original's flag).

    image_size: the input size, an int (a square, e.g. 512) or ``(width, height)`` (e.g. ``(640, 360)``);
    None: the type's native size. The priors follow the maps the heads read at that size (``net.config``,
    ``net.priors``). Raises ``InputSizeError`` (a ValueError) naming the smallest size that works when a
    map would be empty or a side is below 64.

    priors: another prior rule for the net (a :class:`~vision.ssd.priors.TablePriors`, ``--priors``); None:
    the type's own. A PriorTableError (a ValueError) when its maps or priors per location do not fit the
    heads.
    """
    entry = get_net_type(net_type)
    if entry.takes_width_mult:
        net = entry.create(num_classes, width_mult=mb2_width_mult, is_test=is_test)
    else:
        net = entry.create(num_classes, is_test=is_test)
    config = net.config
    if image_size is not None and as_width_height(image_size) != net.config.image_size:
        config = config.at_size(image_size, check_input_size(net, image_size, net_type))
    if priors is not None:
        config = with_priors(config, priors, net_type)
    if config is not net.config:
        net.use_config(config)
    return net


def net_config(net_type: str, image_size: Optional[SizeLike] = None, mb2_width_mult: float = 1.0,
               priors: Optional[PriorRule] = None) -> SSDConfig:
    """The configuration ``create_net(net_type, ..., image_size=image_size, priors=priors)`` gives its net,
    without keeping a net (for code that needs priors or preprocessing before the net exists)."""
    size = None if image_size is None else as_width_height(image_size)
    config = _config_at_size(net_type, size, float(mb2_width_mult))
    return config if priors is None else with_priors(config, priors, net_type)


@functools.lru_cache(maxsize=32)  # measuring the maps at a new size builds a net
def _config_at_size(net_type: str, image_size: Optional[ImageSize], mb2_width_mult: float) -> SSDConfig:
    if image_size is None or image_size == get_net_type(net_type).config.image_size:
        return get_net_type(net_type).config
    return create_net(net_type, 2, mb2_width_mult=mb2_width_mult, image_size=image_size).config


def with_priors(config: SSDConfig, priors: PriorRule, net_type: str, source: str = "--priors") -> SSDConfig:
    """``config`` with another prior rule, checked against the heads (its maps and priors per location)."""
    check = getattr(priors, "check_fits", None)
    if check is not None:
        check(config.prior_rule.priors_per_location(), net_type, source)
    elif tuple(priors.priors_per_location()) != tuple(config.prior_rule.priors_per_location()):
        raise ValueError(f"{source}: priors per location {list(priors.priors_per_location())} do not fit the heads "
                         f"of {net_type}")
    return dataclasses.replace(config, prior_rule=priors)


def create_predictor(net_type: str, net: SSD, candidate_size: Optional[int] = None, nms_method: Optional[str] = None,
                     sigma: float = 0.5, device: Optional[Union[str, torch.device]] = None,
                     max_detections: Optional[int] = None, engine: str = "auto") -> Predictor:
    """Wrap ``net`` in the predictor of its net type (``device=None``: the net's device). ``candidate_size``
    (boxes per class before NMS) and ``max_detections`` (per image after NMS; 0: no cap): None means the
    type's default (the original's types: 200 and no cap; the torchvision-based types: torchvision's).
    engine: what runs the forward pass (``vision.ssd.engines``): ``"auto"`` the fastest measured for
    ``net_type`` on a CPU once it pays, ``"eager"`` the net itself, or an engine by name (CPU only)."""
    options = {} if candidate_size is None else {"candidate_size": candidate_size}
    predictor = get_net_type(net_type).create_predictor(net, nms_method=nms_method, sigma=sigma, device=device,
                                                        **options)
    if max_detections is not None:
        predictor.max_detections = max_detections
    if check_engine(engine) not in ("auto", "eager") and predictor.device.type != "cpu":
        raise ValueError(f"engine {engine}: runs on the CPU only (the net is on {predictor.device}); use auto or eager")
    predictor.engine, predictor.net_type = engine, net_type
    return predictor
