"""Resuming from ``last.pth`` when the flags changed since the run that wrote it.

The original toolkit resumed from weights alone, so users' recipes change flags on resume ("unfreeze the
backbone after N epochs", a new ``--lr`` or ``--scheduler``). The rule:

- weights, epoch and step are always restored (done by the caller);
- the optimizer state (momentum buffers, scheduled learning rates) is restored when the parameter groups
  are the same (``--freeze_base_net`` / ``--freeze_net`` unchanged); otherwise it is reset;
- a changed ``--lr``, ``--base_net_lr``, ``--extra_layers_lr``, ``--momentum`` or ``--weight_decay``
  replaces the checkpoint's value in every group;
- the scheduler state is restored when none of those nor ``--scheduler``, ``--milestones``, ``--gamma``
  or ``--t_max`` changed; otherwise a new scheduler starts from the flags at the resumed epoch (its
  epoch 0 is that epoch, as the original's fresh scheduler was on resume).

Each change is logged in one line; nothing here stops the run.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Tuple

import torch

from vision.training import checkpoints

GROUP_FLAGS = ("freeze_base_net", "freeze_net")
HYPER_FLAGS = ("lr", "base_net_lr", "extra_layers_lr", "momentum", "weight_decay")
SCHEDULE_FLAGS = ("scheduler", "milestones", "gamma", "t_max")


def changed_flags(saved: Mapping[str, Any], current: Mapping[str, Any],
                  names: Tuple[str, ...]) -> List[Tuple[str, Any, Any]]:
    """``(flag, checkpoint's value, current value)`` for each of ``names`` that the checkpoint recorded
    with another value (flags it did not record count as unchanged)."""
    return [(name, saved[name], current.get(name)) for name in names
            if name in saved and saved[name] != current.get(name)]


def _group_layout(optimizer_state: Mapping[str, Any]) -> List[int]:
    return [len(group["params"]) for group in optimizer_state["param_groups"]]


def restore_optimizer_and_scheduler(checkpoint: Mapping[str, Any], args: Dict[str, Any],
                                    optimizer: torch.optim.Optimizer, scheduler,
                                    make_scheduler: Callable[[torch.optim.Optimizer], Any], resume_epoch: int,
                                    source: str, log: Callable[[str], None]):
    """Restore what the rule above allows into ``optimizer`` (built from the current flags) and return the
    scheduler to use: ``scheduler`` with its state restored, or ``make_scheduler(optimizer)`` restarted.
    ``args``: the current flags (``vars(args)``); ``resume_epoch``: the first epoch that will run."""
    saved = checkpoint.get("args") or {}
    fresh = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    group_changes = changed_flags(saved, args, GROUP_FLAGS)
    same_layout = _group_layout(checkpoint["optimizer"]) == [len(group["params"]) for group in optimizer.param_groups]
    optimizer_restored = False
    if group_changes or not same_layout:
        why = ", ".join(f"--{name}" for name, _, _ in group_changes) or "another layout"
        log(f"{source}: parameter groups changed ({why}): optimizer state reset")
    else:
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
            optimizer_restored = True
        except (ValueError, KeyError, RuntimeError) as error:
            log(f"{source}: optimizer state does not fit ({str(error).splitlines()[0]}): optimizer state reset")
    hyper_changes = changed_flags(saved, args, HYPER_FLAGS)
    schedule_changes = changed_flags(saved, args, SCHEDULE_FLAGS)
    for name, old, new in hyper_changes + schedule_changes:
        log(f"--{name} {new} replaces the checkpoint's {old}")
    if optimizer_restored and not hyper_changes and not schedule_changes:
        checkpoints.load_scheduler_state(scheduler, checkpoint["scheduler"])
        return scheduler
    # Learning rates, momentum and weight decay from the flags; a new schedule starting now.
    for group, settings in zip(optimizer.param_groups, fresh):
        group.update({key: value for key, value in settings.items() if key != "initial_lr"})
        group.pop("initial_lr", None)
    restarted = make_scheduler(optimizer)
    if hyper_changes or schedule_changes or not optimizer_restored:
        log(f"scheduler restarted at epoch {resume_epoch}")
    return restarted
