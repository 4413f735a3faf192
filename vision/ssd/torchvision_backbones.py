"""torchvision's ImageNet classification weights as the base nets of the original's net types.

A ``--base_net`` file is either the original's base-net state_dict (keys ``0.0.weight``, ... of the base
net itself) or a torchvision classification state_dict (keys ``features.*`` and ``classifier.*``), told
apart by their keys. torchvision's ``features`` run the same layers in the same order as these base nets:

- mb2-ssd-lite <- ``mobilenet_v2`` (IMAGENET1K_V1 and V2): all 19 feature modules;
- sq-ssd-lite  <- ``squeezenet1_1``: all feature modules;
- vgg16-ssd    <- ``vgg16`` ``IMAGENET1K_FEATURES`` (SSD's normalisation, mean 123/117/104, std 1):
  conv1_1-conv5_3; conv6/conv7 are not in it and are Xavier-initialised, as torchvision's ssd300_vgg16 does.

so the conversion pairs the tensors in order, checking every shape. mb1 (torchvision has no MobileNetV1)
and the original's mb3 nets (their blocks differ from torchvision's MobileNetV3) cannot take them; the
error points to the net types built on torchvision's architectures.
"""
from __future__ import annotations

import functools
from typing import Dict, Mapping, Optional, Set, Tuple

import torch
from torch import nn

# torchvision classifiers whose features fill a base net of the original's types.
CONVERTIBLE = ("mobilenet_v2", "squeezenet1_1", "vgg16")
RECOGNISED = CONVERTIBLE + ("mobilenet_v3_large", "mobilenet_v3_small", "squeezenet1_0")

WHICH_NET_TAKES_WHICH = ("torchvision's ImageNet weights fit mb2-ssd-lite (mobilenet_v2), sq-ssd-lite "
                         "(squeezenet1_1), vgg16-ssd and ssd300-vgg16 (vgg16 IMAGENET1K_FEATURES) and "
                         "ssdlite320-mb3-large (mobilenet_v3_large); torchvision has no MobileNetV1, and the "
                         "original's mb3 nets differ from torchvision's MobileNetV3 (SE after the projection, "
                         "BatchNorm inside SE, a shortcut conv): for ImageNet weights use ssdlite320-mb3-large")


@functools.lru_cache(maxsize=None)
def _torchvision_keys(name: str) -> frozenset:
    import torchvision

    with torch.device("meta"):  # no memory, no download: weights=None
        model = getattr(torchvision.models, name)(weights=None)
    return frozenset(model.state_dict())


def torchvision_classifier_name(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The torchvision classification model whose state_dict ``state_dict`` is (by its key set), or None.
    Only dicts with ``features.`` keys are compared, so the original's base-net files cost nothing."""
    if not any(key.startswith("features.") for key in state_dict):
        return None
    keys = frozenset(state_dict)
    for name in RECOGNISED:
        if keys == _torchvision_keys(name):
            return name
    return None


def convert_classifier_to_base_net(state_dict: Mapping[str, torch.Tensor], model_name: str, base_net: nn.Module,
                                   source: str) -> Tuple[Dict[str, torch.Tensor], Set[str]]:
    """torchvision ``model_name``'s state_dict as ``base_net``'s: ``(full base-net state_dict, keys filled
    from the file)``; base-net entries the file lacks (vgg16's conv6/conv7) keep ``base_net``'s values.
    Raises ValueError naming ``source`` when the layers do not pair up (another net type)."""
    if model_name not in CONVERTIBLE:
        raise ValueError(f"{source}: torchvision {model_name} weights do not fit this net's base net; "
                         f"{WHICH_NET_TAKES_WHICH}")
    features = [(key, tensor) for key, tensor in state_dict.items() if key.startswith("features.")]
    own = base_net.state_dict()
    own_items = list(own.items())
    if len(features) > len(own_items) or any(tensor.shape != own_items[i][1].shape
                                             for i, (_, tensor) in enumerate(features)):
        raise ValueError(f"{source}: torchvision {model_name} weights do not fit this net's base net; "
                         f"{WHICH_NET_TAKES_WHICH}")
    converted = dict(own)
    filled = set()
    for (_, tensor), (own_key, _) in zip(features, own_items):
        converted[own_key] = tensor
        filled.add(own_key)
    return converted, filled


def load_torchvision_classifier_into_base_net(base_net: nn.Module, state_dict: Mapping[str, torch.Tensor],
                                              model_name: str, source: str) -> None:
    """Fill ``base_net`` from torchvision's ``model_name`` state_dict (strict over the filled part); the
    convolutions the file does not cover are Xavier-initialised."""
    converted, filled = convert_classifier_to_base_net(state_dict, model_name, base_net, source)
    base_net.load_state_dict(converted, strict=True)
    for name, module in base_net.named_modules():
        if isinstance(module, nn.Conv2d) and f"{name}.weight" not in filled:
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
