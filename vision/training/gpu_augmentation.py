"""The SSD training recipe batched on the training device (``train_ssd.py --gpu_data``).

Data-loading workers read the encoded files, parse the annotations and draw each image's parameters
(``vision.datasets.encoded``); here, for the whole batch at once on the device:

1. decode: JPEGs in one ``torchvision.io.decode_jpeg(list, device=...)`` call (nvJPEG on CUDA); other
   formats, and JPEGs whose EXIF orientation must be applied, on the CPU;
2. geometry: zoom out, crop, mirror and resize as one affine map per image, applied by one batched
   ``F.affine_grid`` + ``F.grid_sample`` (bilinear) from the photos padded to the batch's largest size; the
   zoomed-out canvas is never made; where the output lies beyond the photo the mean fills;
3. colour: brightness, contrast, saturation, hue and channel order at the output size, with each image's
   drawn values (a step not drawn has its neutral value);
4. normalisation ``(x - mean) / std`` and prior matching (``BatchedMatchPrior``).

Sizes, mean, std, priors, variances and the match threshold all come from the net's configuration.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.io
from torch import Tensor

from vision.training.batched_matching import BatchedMatchPrior

JPEG_START = b"\xff\xd8"


def _decode_quietly(function, *args, **kwargs):
    # torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; they remain the only
    # batched GPU JPEG decoder that ships with torchvision, so the warning is silenced here alone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return function(*args, **kwargs)


def decode_images(encoded: Sequence[Tensor], device: torch.device, device_decodable: Sequence[bool]) -> List[Tensor]:
    """Encoded files (uint8 1-D CPU tensors) -> RGB uint8 (3, H, W) tensors on ``device``.

    ``device_decodable[i]``: image i is a JPEG that needs no EXIF rotation; those are decoded together by
    ``decode_jpeg(..., device=device)``; the others by ``decode_image`` on the CPU (EXIF applied).
    Raises RuntimeError (torchvision's) when a file cannot be decoded.
    """
    images: List[Tensor] = [None] * len(encoded)  # type: ignore[list-item]
    batched = [index for index, ok in enumerate(device_decodable) if ok]
    if batched:
        decoded = _decode_quietly(torchvision.io.decode_jpeg, [encoded[i] for i in batched],
                                  mode=torchvision.io.ImageReadMode.RGB, device=device)
        for index, image in zip(batched, decoded):
            images[index] = image
    for index, ok in enumerate(device_decodable):
        if not ok:
            image = _decode_quietly(torchvision.io.decode_image, encoded[index], mode=torchvision.io.ImageReadMode.RGB,
                                    apply_exif_orientation=True)
            images[index] = image.to(device)
    return images


def pad_images(images: Sequence[Tensor]) -> Tensor:
    """RGB uint8 (3, h_i, w_i) tensors -> float32 (B, 3, H_max, W_max), each at the top-left, zeros elsewhere."""
    heights = [int(image.shape[1]) for image in images]
    widths = [int(image.shape[2]) for image in images]
    if len(set(heights)) == 1 and len(set(widths)) == 1:
        return torch.stack(list(images)).float()
    padded = images[0].new_zeros((len(images), 3, max(heights), max(widths)), dtype=torch.float32)
    for index, image in enumerate(images):  # one copy kernel per image
        padded[index, :, :image.shape[1], :image.shape[2]] = image
    return padded


def output_to_source_batch(windows: Tensor, flips: Tensor, output_size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """``(scale (B, 2), offset (B, 2))`` float64, [x, y]: source pixel = scale * output pixel + offset (continuous
    coordinates), for windows (B, 4) [x0, y0, width, height] source pixels and flips (B,) bool; as
    ``vision.transforms.one_pass.output_to_source`` per image."""
    windows = windows.double()
    out_width, out_height = output_size
    scale = windows[:, 2:] / windows.new_tensor([out_width, out_height])
    offset = windows[:, :2].clone()
    scale[:, 0] = torch.where(flips, -scale[:, 0], scale[:, 0])
    offset[:, 0] = torch.where(flips, offset[:, 0] + windows[:, 2], offset[:, 0])
    return scale, offset


def sampling_grid(scale: Tensor, offset: Tensor, padded_size: Tuple[int, int], output_size: Tuple[int, int]) -> Tensor:
    """``F.affine_grid`` (align_corners=False) for the maps ``scale``/``offset`` (B, 2) from output pixels to
    pixels of the padded input of ``padded_size`` (width, height). Returns float32 (B, H_out, W_out, 2)."""
    out = scale.new_tensor(output_size)
    padded = scale.new_tensor(padded_size)
    # Normalised output u in [-1, 1] is pixel (u + 1) * out / 2; normalised input is 2 * pixel / padded - 1.
    linear = scale * out / padded
    constant = (scale * out + 2 * offset) / padded - 1
    theta = torch.zeros((scale.shape[0], 2, 3), dtype=torch.float64, device=scale.device)
    theta[:, 0, 0], theta[:, 0, 2] = linear[:, 0], constant[:, 0]
    theta[:, 1, 1], theta[:, 1, 2] = linear[:, 1], constant[:, 1]
    width, height = output_size
    return F.affine_grid(theta.float(), [scale.shape[0], 3, height, width], align_corners=False)


def coverage(scale: Tensor, offset: Tensor, image_sizes: Tensor, output_size: Tuple[int, int]) -> Tensor:
    """float32 (B, 1, H_out, W_out): the weight bilinear sampling (zeros outside) gives to each photo's own pixels:
    1 inside, 0 beyond half a pixel past its edge (image_sizes (B, 2) [width, height])."""
    width, height = output_size
    factors = []
    for axis, length in ((0, width), (1, height)):
        positions = torch.arange(length, dtype=torch.float64, device=scale.device) + 0.5
        samples = scale[:, axis:axis + 1] * positions + offset[:, axis:axis + 1] - 0.5  # source pixel indices
        size = image_sizes[:, axis:axis + 1].to(samples)
        factors.append(torch.clamp(torch.minimum(samples + 1.0, size - samples), 0.0, 1.0).float())
    return (factors[1][:, None, :, None] * factors[0][:, None, None, :]).contiguous()


@dataclass
class PhotometricBatch:
    """Each image's colour draw as (B,) tensors (neutral where a step was not drawn): brightness added,
    contrast factor, contrast_first (bool), saturation factor, hue_shift in OpenCV units of 2 degrees; order
    (B, 3) int64, the channel order."""

    brightness: Tensor
    contrast: Tensor
    contrast_first: Tensor
    saturation: Tensor
    hue_shift: Tensor
    order: Tensor

    def to(self, device, non_blocking: bool = False) -> "PhotometricBatch":
        return PhotometricBatch(*(getattr(self, name).to(device, non_blocking=non_blocking) for name in
                                  ("brightness", "contrast", "contrast_first", "saturation", "hue_shift", "order")))

    @classmethod
    def stack(cls, parameters: Sequence) -> "PhotometricBatch":
        """From ``PhotometricParameters`` per image."""
        return cls(torch.tensor([p.brightness for p in parameters], dtype=torch.float32),
                   torch.tensor([p.contrast for p in parameters], dtype=torch.float32),
                   torch.tensor([p.contrast_first for p in parameters], dtype=torch.bool),
                   torch.tensor([p.saturation for p in parameters], dtype=torch.float32),
                   torch.tensor([p.hue_shift for p in parameters], dtype=torch.float32),
                   torch.tensor([list(p.order) for p in parameters], dtype=torch.int64).reshape(-1, 3))


def _per_image(values: Tensor) -> Tensor:
    return values.view(-1, 1, 1, 1)


def adjust_saturation_hue(images: Tensor, saturation: Tensor, hue_shift: Tensor) -> Tensor:
    """HSV saturation scale and hue shift, per image, on float RGB (B, 3, H, W) in 0..255, as the CPU recipe
    does in OpenCV's HSV (S scaled and clipped, H shifted by 2 degrees a unit, wrapping).

    Hand-written: torchvision's adjust_saturation blends with grey (not an HSV scale) and its adjust_hue takes
    one factor for the whole batch.
    """
    value, _ = images.max(dim=1, keepdim=True)
    minimum, _ = images.min(dim=1, keepdim=True)
    delta = value - minimum
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    red, green, blue = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    hue = torch.where(value == red, torch.remainder((green - blue) / safe_delta, 6.0),
                      torch.where(value == green, (blue - red) / safe_delta + 2.0, (red - green) / safe_delta + 4.0))
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))  # in units of 60 degrees
    sat = torch.where(value > 0, delta / torch.where(value > 0, value, torch.ones_like(value)), torch.zeros_like(value))
    sat = torch.clamp(sat * _per_image(saturation), 0.0, 1.0)
    hue = torch.remainder(hue + _per_image(hue_shift) / 30.0, 6.0)
    # HSV -> RGB: channel n is v - v * s * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6, n = 5, 3, 1.
    channels = [value - value * sat * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
                for k in (torch.remainder(n + hue, 6.0) for n in (5.0, 3.0, 1.0))]
    return torch.cat(channels, dim=1)


def photometric_batch(images: Tensor, parameters: PhotometricBatch) -> Tensor:
    """The colour steps on float RGB (B, 3, H, W) in 0..255, each image with its own draw, clipped to 0..255
    after each step as the CPU recipe does (which also rounds to whole gray levels)."""
    images = torch.clamp(images + _per_image(parameters.brightness), 0.0, 255.0)
    first = torch.where(parameters.contrast_first, parameters.contrast, torch.ones_like(parameters.contrast))
    images = torch.clamp(images * _per_image(first), 0.0, 255.0)
    colour = (parameters.saturation != 1.0) | (parameters.hue_shift != 0)
    chosen = torch.nonzero(colour.cpu()).flatten().to(images.device)  # parameters usually come from the CPU: no sync
    if chosen.numel():
        images = images.index_copy(0, chosen, adjust_saturation_hue(images[chosen], parameters.saturation[chosen],
                                                                     parameters.hue_shift[chosen]))
    last = torch.where(parameters.contrast_first, torch.ones_like(parameters.contrast), parameters.contrast)
    images = torch.clamp(images * _per_image(last), 0.0, 255.0)
    order = parameters.order.view(-1, 3, 1, 1).expand(-1, -1, images.shape[2], images.shape[3])
    return torch.gather(images, 1, order)


@dataclass
class EncodedBatch:
    """A batch as the workers give it (``vision.datasets.encoded.collate_encoded_batch``).

    encoded: B uint8 1-D CPU tensors (the files); device_decodable: B bools (JPEG without EXIF rotation);
    image_sizes: int64 (B, 2) [width, height]; windows: float64 (B, 4); flips: bool (B,); photometric:
    PhotometricBatch; boxes float32 (B, M, 4) corner form 0..1 of the output, labels int64 (B, M), mask bool
    (B, M): the augmented ground truth, padded; num_skipped: samples dropped as unreadable.
    """

    encoded: List[Tensor]
    device_decodable: List[bool]
    image_sizes: Tensor
    windows: Tensor
    flips: Tensor
    photometric: PhotometricBatch
    boxes: Tensor
    labels: Tensor
    mask: Tensor
    num_skipped: int

    def __len__(self) -> int:
        return len(self.encoded)


class BatchedTrainAugmentation:
    """``EncodedBatch`` -> ``(images float32 (B, 3, H, W) normalised, gt_locations (B, P, 4), labels (B, P))`` on
    ``device``, the batch ``train_one_epoch`` expects, from the net's configuration ``config``."""

    def __init__(self, config, device: torch.device):
        self.device = torch.device(device)
        self.output_size = tuple(config.image_size)
        self.mean = torch.tensor(config.image_mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.inverse_std = 1.0 / torch.as_tensor(config.image_std, dtype=torch.float32, device=self.device).reshape(-1)
        self.inverse_std = self.inverse_std.expand(3).reshape(1, 3, 1, 1)
        self.match_prior = BatchedMatchPrior.from_config(config, self.device)

    def images(self, decoded: Sequence[Tensor], windows: Tensor, flips: Tensor,
               photometric: PhotometricBatch) -> Tensor:
        """Decoded RGB uint8 (3, h_i, w_i) images on the device -> normalised float32 (B, 3, H, W)."""
        padded = pad_images(decoded)
        image_sizes = torch.tensor([[int(image.shape[2]), int(image.shape[1])] for image in decoded],
                                   device=self.device)
        scale, offset = output_to_source_batch(windows.to(self.device), flips.to(self.device), self.output_size)
        grid = sampling_grid(scale, offset, (padded.shape[3], padded.shape[2]), self.output_size)
        sampled = F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        weight = coverage(scale, offset, image_sizes, self.output_size)
        # Sampling with zeros outside mixed the photo with black at its edge; undo that, distort the photo's own
        # colour, then mix with the mean (which the recipe's colour steps never touch, as it zooms out after them).
        colour = sampled / weight.clamp_min(1e-6)
        colour = photometric_batch(colour, photometric.to(self.device, non_blocking=True))
        return (colour - self.mean) * weight * self.inverse_std

    def __call__(self, batch: EncodedBatch) -> Tuple[Tensor, Tensor, Tensor]:
        decoded = decode_images(batch.encoded, self.device, batch.device_decodable)
        for index, image in enumerate(decoded):
            width, height = (int(v) for v in batch.image_sizes[index])
            if (image.shape[2], image.shape[1]) != (width, height):
                raise ValueError(f"sample {index}: decoded {image.shape[2]}x{image.shape[1]} but its header says "
                                 f"{width}x{height}")
        images = self.images(decoded, batch.windows, batch.flips, batch.photometric)
        locations, labels = self.match_prior(batch.boxes.to(self.device), batch.labels.to(self.device),
                                             batch.mask.to(self.device))
        return images, locations, labels


def windows_and_flips(parameters: Sequence) -> Tuple[Tensor, Tensor]:
    """``(windows float64 (B, 4), flips bool (B,))`` from ``AugmentationParameters`` per image."""
    windows = torch.from_numpy(np.stack([p.window for p in parameters]).astype(np.float64)).reshape(-1, 4)
    return windows, torch.tensor([bool(p.flip) for p in parameters], dtype=torch.bool)
