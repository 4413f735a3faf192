"""One training epoch and one validation pass."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from tqdm import tqdm


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and keeps the last good checkpoint."""


@dataclass
class EpochResult:
    loss: float
    regression_loss: float
    classification_loss: float
    images: int
    skipped: int
    seconds: float
    steps: int


def set_batch_norm_eval(net: nn.Module) -> None:
    """Put every BatchNorm in eval mode (running statistics are used and not updated)."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train_one_epoch(net: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, *, autocast_dtype: Optional[torch.dtype] = None, scaler=None,
                    channels_last: bool = False, freeze_bn: bool = False, debug_steps: int = 100,
                    show_progress: bool = True,
                    log: Callable[[str], None] = print, on_step: Optional[Callable[[int, dict], None]] = None,
                    global_step: int = 0, lr_factor: Optional[Callable[[int], float]] = None,
                    after_step: Optional[Callable[[], None]] = None) -> EpochResult:
    """Train over ``loader`` (batches of ``collate_training_batch``: images, gt_locations, labels,
    num_skipped). Raises NonFiniteLossError on a NaN/inf loss, before the optimiser step.

    lr_factor: ``factor(step)`` scales every group's learning rate at that global step (the warmup), the
    scheduler's rates restored at the end of the epoch; after_step: called after each optimiser step (the
    weight average)."""
    net.train(True)
    scheduled = [group["lr"] for group in optimizer.param_groups]
    if freeze_bn:
        set_batch_norm_eval(net)
    totals = {"loss": 0.0, "regression": 0.0, "classification": 0.0}
    window = {"loss": 0.0, "regression": 0.0, "classification": 0.0, "steps": 0}
    images_seen = skipped = steps = 0
    start = time.perf_counter()
    progress = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not show_progress, dynamic_ncols=True)
    for images, gt_locations, labels, num_skipped in progress:
        skipped += int(num_skipped)
        if images.shape[0] == 0:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        gt_locations = gt_locations.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        if lr_factor is not None:
            factor = lr_factor(global_step + steps)
            for group, rate in zip(optimizer.param_groups, scheduled):
                group["lr"] = rate * factor
        context = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        with context:
            confidence, locations = net(images)
        regression_loss, classification_loss = criterion(confidence.float(), locations.float(), labels, gt_locations)
        loss = regression_loss + classification_loss
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"the loss became {loss.item()} at epoch {epoch}, step {steps} "
                                     f"(regression {regression_loss.item()}, "
                                     f"classification {classification_loss.item()})")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if after_step is not None:
            after_step()
        steps += 1
        images_seen += images.shape[0]
        values = {"loss": loss.item(), "regression": regression_loss.item(),
                  "classification": classification_loss.item()}
        for key, value in values.items():
            totals[key] += value
            window[key] += value
        window["steps"] += 1
        elapsed = time.perf_counter() - start
        progress.set_postfix(loss=f"{values['loss']:.3f}", img_s=f"{images_seen / max(elapsed, 1e-9):.1f}")
        if on_step is not None:
            on_step(global_step + steps, values)
        if debug_steps > 0 and steps % debug_steps == 0:
            n = window["steps"]
            log(f"Epoch: {epoch}, Step: {steps}, Average Loss: {window['loss'] / n:.4f}, "
                f"Average Regression Loss {window['regression'] / n:.4f}, "
                f"Average Classification Loss: {window['classification'] / n:.4f}")
            window = {"loss": 0.0, "regression": 0.0, "classification": 0.0, "steps": 0}
    progress.close()
    for group, rate in zip(optimizer.param_groups, scheduled):
        group["lr"] = rate
    n = max(steps, 1)
    return EpochResult(totals["loss"] / n, totals["regression"] / n, totals["classification"] / n, images_seen, skipped,
                       time.perf_counter() - start, steps)


@torch.no_grad()
def validate(net: nn.Module, loader, criterion: nn.Module, device: torch.device, channels_last: bool = False,
             show_progress: bool = False) -> EpochResult:
    """Average validation losses per batch, as the original computes them."""
    net.eval()
    totals = {"loss": 0.0, "regression": 0.0, "classification": 0.0}
    batches = images_seen = skipped = 0
    start = time.perf_counter()
    for images, gt_locations, labels, num_skipped in tqdm(loader, desc="validation", unit="batch",
                                                          disable=not show_progress, dynamic_ncols=True, leave=False):
        skipped += int(num_skipped)
        if images.shape[0] == 0:
            continue
        images = images.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        confidence, locations = net(images)
        regression_loss, classification_loss = criterion(confidence.float(), locations.float(), labels.to(device),
                                                         gt_locations.to(device))
        totals["regression"] += regression_loss.item()
        totals["classification"] += classification_loss.item()
        totals["loss"] += (regression_loss + classification_loss).item()
        batches += 1
        images_seen += images.shape[0]
    n = max(batches, 1)
    if batches == 0:
        return EpochResult(math.nan, math.nan, math.nan, 0, skipped, time.perf_counter() - start, 0)
    return EpochResult(totals["loss"] / n, totals["regression"] / n, totals["classification"] / n, images_seen, skipped,
                       time.perf_counter() - start, batches)
