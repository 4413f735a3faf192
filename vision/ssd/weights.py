"""Where a net's weights come from: a local file, a zoo name or a URL turned into a local file, the file
loaded into a net, and, when it does not fit, a message that says what the file is and which flag takes it.

Every script and the training run load weights through here, as torchvision's builders do beside its
``SSD`` class; the net itself (``SSD.load``, ``init_from_base_net``, ``init_from_pretrained_ssd``) only
loads local files strictly.

    net = create_net("mb2-ssd-lite", 21, is_test=True)
    load_weights(net, "mb2-ssd-lite-voc", "mb2-ssd-lite")      # a zoo name, a URL or a file
    init_from_base_net(net, "mb2-imagenet")
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from torch import Tensor

from vision import zoo
from vision.ssd import net_recognition
from vision.ssd.heads import class_count
from vision.ssd.priors import TablePriors
from vision.ssd.registry import create_net, get_net_type
from vision.ssd.sidecar import SidecarError, check_class_names, read_sidecar, resolve_image_size, sidecar_path
from vision.ssd.ssd import SSD, WeightsMismatchError
from vision.ssd.torchvision_ssd import convert_torchvision_keys
from vision.utils.checkpoint import load_state_dict_file
from vision.utils.errors import first_line
from vision.utils.image_size import SizeLike


def resolve(source: str, progress: bool = True) -> str:
    """A local file for a weight argument: an existing path as is; a zoo name, a torchvision weight name or
    an http(s) URL downloaded once into torch's hub cache (``vision.zoo``), the original toolkit's files
    checked by a strict load into their net type before they are kept. Anything else is returned as it is,
    so that reading it gives "no such checkpoint file"."""
    return zoo.resolve_weights(source, progress=progress, check_original=check_original_file)


def read_state_dict(source: str, progress: bool = True) -> Dict[str, Tensor]:
    """The model weights of ``source`` (see :func:`resolve`), either checkpoint format, on the CPU."""
    return load_state_dict_file(resolve(source, progress))


def load_weights(net: SSD, source: str, net_type: Optional[str] = None, progress: bool = True) -> str:
    """Load a whole net from ``source`` (a file, a zoo name or a URL), strictly; returns the local path.
    ``net_type``: the net's registry name, for messages (recognised when None). A file that does not fit
    gets one ValueError line: both class counts when only they differ, else what the file is (another net
    type, a base net, torchvision's weights) and the flag that takes it."""
    path = resolve(source, progress)
    load_state_dict(net, load_state_dict_file(path), source, net_type)
    return path


def load_state_dict(net: SSD, state_dict: Dict[str, Tensor], source: str, net_type: Optional[str] = None) -> None:
    """:func:`load_weights` for a state_dict already read from ``source`` (a resumed ``last.pth``)."""
    try:
        net.load_weights_from(state_dict, source)
    except WeightsMismatchError as error:
        if error.class_counts is not None or not error.recognisable:
            raise
        raise ValueError(_recognised_message(net, state_dict, source, net_type)) from None


def init_from_base_net(net: SSD, source: str, progress: bool = True) -> str:
    """``--base_net``: fill the base net from ``source`` (the base net's own state_dict or torchvision's
    ImageNet weights), initialise the rest; returns the local path. A whole SSD given here is named, with
    the flags that take it."""
    path = resolve(source, progress)
    state_dict = load_state_dict_file(path)
    try:
        net.init_base_net_from(state_dict, source)
    except WeightsMismatchError as error:
        if not error.recognisable:
            raise
        found = net_recognition.recognise_state_dict(state_dict)
        if found is not None and found.kind in ("ssd", "ssd-other-width"):
            raise ValueError(f"{source}: {found.describe()}, a whole SSD, not a base net; pass it as --pretrained_ssd "
                             "(every weight but the heads) or --resume instead of --base_net") from None
        raise ValueError(f"{error} ({found.describe()})" if found is not None else str(error)) from None
    return path


def init_from_pretrained_ssd(net: SSD, source: str, net_type: Optional[str] = None, progress: bool = True) -> str:
    """``--pretrained_ssd``: every weight of a trained SSD but its heads (so the class count may differ);
    returns the local path. A base net given here is named, with the flag that takes it."""
    path = resolve(source, progress)
    state_dict = load_state_dict_file(path)
    try:
        net.init_from_pretrained_state_dict(state_dict, source)
    except WeightsMismatchError as error:
        if not error.recognisable:
            raise
        found = net_recognition.recognise_state_dict(state_dict)
        if found is not None and found.kind == "base-net":
            raise ValueError(f"{source}: {found.describe()}; pass it as --base_net instead of "
                             "--pretrained_ssd") from None
        raise ValueError(_recognised_message(net, state_dict, source, net_type)) from None
    return path


def load_net(net_type: str, source: str, num_classes: int, image_size: Optional[SizeLike] = None,
             is_test: bool = True, mb2_width_mult: float = 1.0, progress: bool = True,
             class_names: Optional[Sequence[str]] = None, label_file: Optional[str] = None) -> SSD:
    """A ``net_type`` net for ``num_classes`` with the weights of ``source`` (a file, a zoo name or a URL),
    built as the checkpoint was trained: at ``image_size`` when given, else the size its ``.pth.json``
    sidecar records (else the net type's native size), and with the prior table the sidecar records (else
    the net type's own priors). SidecarError when the sidecar names another net type, or when
    ``class_names`` (read from ``label_file``) are given and differ from the names the sidecar records."""
    path = resolve(source, progress)
    if class_names is not None:
        check_class_names(path, class_names, label_file)
    size = image_size if image_size is not None else resolve_image_size(None, path, net_type)
    net = create_net(net_type, num_classes, is_test=is_test, mb2_width_mult=mb2_width_mult, image_size=size,
                     priors=checkpoint_priors(path, net_type))
    load_state_dict(net, load_state_dict_file(path), source, net_type)
    return net


def checkpoint_priors(checkpoint_path: str, net_type: str) -> Optional[TablePriors]:
    """The prior table a checkpoint was trained with (its sidecar's); None for the net type's own priors
    (no sidecar, or none recorded, as in every released or older checkpoint)."""
    info = read_sidecar(checkpoint_path)
    if info is None or info.priors is None:
        return None
    if info.net_type != net_type:
        raise SidecarError(f"{sidecar_path(checkpoint_path)}: the checkpoint is a {info.net_type}, not a {net_type}; "
                           f"use the net type {info.net_type}")
    return TablePriors.from_document(info.priors, source=sidecar_path(checkpoint_path))


def checkpoint_class_count(state_dict: Dict[str, Tensor], net_type: str) -> Optional[int]:
    """The class count of a whole-net ``state_dict`` of ``net_type`` (torchvision's key names accepted), by
    :func:`vision.ssd.heads.class_count`; None when its heads do not give one."""
    per_location = get_net_type(net_type).config.prior_rule.priors_per_location()
    return class_count(convert_torchvision_keys(state_dict), per_location)


def check_original_file(entry: zoo.ZooEntry, path: str) -> None:
    """The check ``vision.zoo`` runs on a downloaded file of the original toolkit (it published no hashes):
    the state_dict loads strictly into the entry's net type (a whole SSD, its class count read from the
    file) or into its base net. Raises ZooError naming the URL; nothing is kept then."""
    state_dict = load_state_dict_file(path)
    try:
        if entry.kind == zoo.BASE_NET:
            create_net(entry.net_type, 2).base_net.load_state_dict(state_dict, strict=True)
        else:
            count = checkpoint_class_count(state_dict, entry.net_type)
            if count is None:
                raise ValueError("its classification heads give no class count")
            create_net(entry.net_type, count).load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, ValueError) as error:
        raise zoo.ZooError(f"{entry.download_url()}: not a {entry.net_type} {entry.kind} ({first_line(error)}); "
                           f"nothing was saved at {zoo.cached_path(entry)}") from None


def _recognised_message(net: SSD, state_dict: Dict[str, Tensor], source: str, net_type: Optional[str]) -> str:
    expected = net_type or net_recognition.own_net_type(net)
    return net_recognition.mismatch_message(state_dict, expected, net.num_classes, source)
