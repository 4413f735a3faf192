"""``train_ssd.py``: train an SSD / SSD-Lite detector on VOC, Open Images, COCO JSON, YOLO or CSV data.

Flags, names and defaults are the original toolkit's, plus this project's (docs/training.md). The flags are
parsed once into a frozen :class:`~vision.training.settings.TrainingSettings` with every value resolved
(device, input size, memory format, local weight files), which the run is built from.
Multi-GPU / multi-node: ``torchrun --nproc_per_node=N train_ssd.py ...`` (DistributedDataParallel).

Exit status: 0 trained; 1 a file could not be written (a full disk, a read-only folder) or read; 2 a mistake
in the flags or the data, found before training (also "nothing to train"); 3 the loss became NaN; 130
interrupted (Ctrl-C), with the ``--resume`` that continues.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from typing import List, Optional

from vision.cli.flags import add_device_argument, add_input_size_argument, add_width_mult_argument, str2bool
from vision.datasets import DatasetError
from vision.datasets.factory import DATASET_TYPES
from vision.ssd import weights
from vision.ssd.registry import NET_TYPES
from vision.training.distributed import DistributedContext, init_distributed, shutdown
from vision.training.loops import NonFiniteLossError
from vision.training.run import TrainingRun, resumed_input_size, seed_everything
from vision.training.run_folder import RunFolder, saved_epoch, take_run_folder
from vision.training.settings import TrainingSettings
from vision.utils.checkpoint import CheckpointError
from vision.utils.device import torch_device
from vision.utils.image_size import parse_resolution

log = logging.getLogger("train_ssd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Single Shot MultiBox Detector Training With PyTorch")
    parser.add_argument("--dataset_type", default="auto", choices=list(DATASET_TYPES),
                        help="Dataset format: voc, open_images, coco, yolo, csv, or auto (default: detected per root)")
    parser.add_argument("--datasets", nargs="+", help="Dataset directory path(s); several are concatenated")
    parser.add_argument("--validation_dataset", help="Dataset directory path")
    parser.add_argument("--balance_data", action="store_true",
                        help="Balance training data by down-sampling more frequent labels: each class keeps at "
                             "most as many images as the rarest one has (every format; images without boxes stay)")
    parser.add_argument("--net", default="vgg16-ssd", choices=list(NET_TYPES), help="The network architecture")
    parser.add_argument("--freeze_base_net", action="store_true", help="Freeze base net layers.")
    parser.add_argument("--freeze_net", action="store_true", help="Freeze all the layers except the prediction head.")
    add_width_mult_argument(parser)
    parser.add_argument("--lr", "--learning-rate", default=1e-3, type=float, help="initial learning rate")
    parser.add_argument("--momentum", default=0.9, type=float, help="Momentum value for optim")
    parser.add_argument("--weight_decay", default=5e-4, type=float, help="Weight decay for SGD")
    parser.add_argument("--gamma", default=0.1, type=float, help="Gamma update for SGD (multi-step scheduler)")
    parser.add_argument("--base_net_lr", default=None, type=float, help="initial learning rate for base net.")
    parser.add_argument("--extra_layers_lr", default=None, type=float,
                        help="initial learning rate for the layers not in base net and prediction heads.")
    parser.add_argument("--base_net",
                        help="Pretrained base model: a file, a zoo name or URL (python -m vision.zoo list)")
    parser.add_argument("--pretrained_ssd", help="Pre-trained base model: a file, a zoo name or URL")
    parser.add_argument("--resume", default=None, type=str,
                        help="Checkpoint to resume from: last.pth continues the run; a bare state_dict loads weights "
                             "and starts at epoch 0")
    parser.add_argument("--scheduler", default="multi-step", choices=["multi-step", "cosine"],
                        help="Scheduler for SGD. It can one of multi-step and cosine")
    parser.add_argument("--milestones", default="80,100", type=str, help="milestones for MultiStepLR")
    parser.add_argument("--t_max", default=120, type=float, help="T_max value for Cosine Annealing Scheduler.")
    parser.add_argument("--batch_size", default=32, type=int, help="Batch size for training (per process)")
    parser.add_argument("--num_epochs", default=120, type=int, help="the number epochs")
    parser.add_argument("--num_workers", default=4, type=int, help="Number of workers used in dataloading")
    parser.add_argument("--validation_epochs", default=5, type=int, help="the number epochs between validations")
    parser.add_argument("--debug_steps", default=100, type=int, help="Set the debug log output frequency.")
    parser.add_argument("--use_cuda", default=True, type=str2bool, help="Use CUDA to train model")
    parser.add_argument("--checkpoint_folder", default="models/", help="Directory for saving checkpoint models")
    parser.add_argument("--overwrite", action="store_true",
                        help="let a new run replace the run already in --checkpoint_folder (its last.pth, labels.txt "
                             "and history.jsonl); without it such a folder is refused")
    # This project's flags.
    parser.add_argument("--seed", default=None, type=int, help="seed Python, numpy and torch for a reproducible run")
    add_device_argument(parser)
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision on CUDA: bf16 where supported, else fp16 with a grad scaler")
    parser.add_argument("--channels_last", type=str2bool, nargs="?", const=True, default=None,
                        help="channels-last memory format; default: on when training on the CPU (faster end to end "
                             "there, docs/benchmarks.md), off on CUDA (give it with --amp on recent GPUs); "
                             "--channels_last false turns it off")
    parser.add_argument("--log_dir", default=None, help="write TensorBoard logs here")
    parser.add_argument("--background_negatives", default=0, type=int,
                        help="every image contributes at least K hard negatives, so background-only images teach the "
                             "net")
    parser.add_argument("--no_augmentation", action="store_true",
                        help="train on resized images only (debugging, exact comparisons)")
    parser.add_argument("--gpu_data", action="store_true",
                        help="workers only read files; decoding, augmentation and prior matching run batched on "
                             "the training device. See docs/training.md")
    parser.add_argument("--freeze_bn", action="store_true", help="keep BatchNorm layers in eval mode while training")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars (e.g. in log files)")
    add_input_size_argument(parser)
    parser.add_argument("--priors", default=None,
                        help="the prior table: default (the net type's own), auto (fitted to the training boxes for "
                             "this net and --resolution; written to <checkpoint_folder>/priors.json) or a .json table; "
                             "with --resume: the checkpoint's. See docs/own_data.md")
    parser.add_argument("--warmup_epochs", default=0.0, type=float,
                        help="raise the learning rate linearly from near 0 over this many epochs (counted in steps)")
    parser.add_argument("--ema_decay", default=0.0, type=float,
                        help="keep an exponential moving average of the weights with this decay (e.g. 0.999), "
                             "validated and saved instead of the raw weights; 0: none")
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """One-line ValueErrors for flag values that cannot work, before anything is read or downloaded."""
    if not args.datasets:
        raise ValueError("--datasets is required: one or more dataset folders")
    if args.batch_size < 1 or args.num_epochs < 0 or args.validation_epochs < 1:
        raise ValueError("--batch_size and --validation_epochs must be at least 1, --num_epochs at least 0")
    if args.num_epochs == 0:
        raise ValueError("nothing to train: --num_epochs 0; give --num_epochs 1 or more")
    check_schedule_flags(args)
    if args.resolution:
        parse_resolution(args.resolution)


def check_schedule_flags(args: argparse.Namespace) -> None:
    """The learning-rate flags, checked before any epoch: a bad one would otherwise fail after the first
    (``--t_max 0`` divides by zero when the scheduler steps), and that epoch would not be saved."""
    if args.scheduler == "cosine" and not (math.isfinite(args.t_max) and args.t_max > 0):
        raise ValueError(f"--t_max {args.t_max:g}: the cosine schedule's period must be a number of epochs above 0")
    if args.scheduler == "multi-step":
        try:
            milestones = [int(value) for value in args.milestones.split(",") if value.strip()]
        except ValueError:
            raise ValueError(f"--milestones {args.milestones!r}: expected comma-separated epochs such as "
                             "80,100") from None
        if any(value < 1 for value in milestones):
            raise ValueError(f"--milestones {args.milestones}: epochs must be 1 or more")
    for flag in ("lr", "gamma"):
        value = getattr(args, flag)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{flag} {value:g}: must be above 0")
    for flag in ("base_net_lr", "extra_layers_lr", "momentum", "weight_decay", "warmup_epochs"):
        value = getattr(args, flag, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{flag} {value:g}: must be 0 or more")


def check_something_to_train(settings: TrainingSettings) -> None:
    """"nothing to train" when ``--resume`` names a run that has finished ``--num_epochs`` already."""
    done = saved_epoch(settings.resume)
    if done is not None and done + 1 >= settings.num_epochs:
        raise ValueError(f"nothing to train: {settings.resume} has finished epochs 0 to {done} and --num_epochs is "
                         f"{settings.num_epochs}; give --num_epochs {done + 2} or more to train further")


def resume_advice(run_folder: Optional[RunFolder]) -> str:
    """``"resume with --resume <folder>/last.pth"``-style advice after a run stopped early, from what it saved."""
    point = run_folder.resume_point() if run_folder is not None else None
    if point is None:
        return "nothing was saved yet, so run the same command again"
    path, epoch = point
    return f"{path} holds epoch {epoch}: resume with --resume {path}"


def local_weight_file(flag: str, source: Optional[str]) -> Optional[str]:
    """The local file for a weight flag's value (a zoo name or URL is downloaded now, before any data is
    read); CheckpointError naming the flag when there is no such file."""
    if not source:
        return None
    path = weights.resolve(source)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file (--{flag})")
    return path


def training_settings(args: argparse.Namespace, context: DistributedContext) -> TrainingSettings:
    """The run's settings from the parsed flags, every value resolved: weight files downloaded, the device
    for this process, the input size (``--resolution``, else the resumed checkpoint's), the memory format."""
    base_net = local_weight_file("base_net", args.base_net)
    pretrained_ssd = local_weight_file("pretrained_ssd", args.pretrained_ssd)
    resume = local_weight_file("resume", args.resume) if args.resume else None
    device = torch_device(args.device, args.use_cuda, context.local_rank)
    image_size = parse_resolution(args.resolution) if args.resolution else resumed_input_size(resume)
    channels_last = device.type == "cpu" if args.channels_last is None else bool(args.channels_last)
    flags = {name: value for name, value in vars(args).items() if name in TrainingSettings.__dataclass_fields__}
    flags.update(base_net=base_net, pretrained_ssd=pretrained_ssd, resume=resume, device=str(device),
                 image_size=image_size, channels_last=channels_last, datasets=tuple(args.datasets))
    return TrainingSettings(**flags)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s", stream=sys.stdout)
    warnings.simplefilter("default")
    context = DistributedContext()
    run_folder: Optional[RunFolder] = None
    try:
        check_flags(args)
        context = init_distributed(torch_device(args.device, args.use_cuda).type)
        settings = training_settings(args, context)
        if settings.seed is not None:
            seed_everything(settings.seed, context.rank)
        if not context.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        log.info("Using %s%s", settings.device, f" ({context.world_size} processes)" if context.enabled else "")
        check_something_to_train(settings)
        if context.is_main:  # rank 0 alone writes checkpoints, so it alone takes the folder
            run_folder = take_run_folder(settings.checkpoint_folder, settings.resume, args.overwrite)
        run = TrainingRun(settings, context)
        if run_folder is not None:
            run_folder.start_history()
        run.run()
        return 0
    except KeyboardInterrupt:
        if context.is_main:
            point = run_folder.resume_point() if run_folder is not None else None
            if point is None:
                print("train_ssd.py: interrupted before the first checkpoint; nothing to resume, run the same command "
                      "again", file=sys.stderr)
            else:
                print(f"train_ssd.py: interrupted at epoch {point[1] + 1}; resume with --resume {point[0]}",
                      file=sys.stderr)
        return 130
    except (DatasetError, CheckpointError, NonFiniteLossError, ValueError) as error:
        print(f"train_ssd.py: error: {error}", file=sys.stderr)
        return 2 if not isinstance(error, NonFiniteLossError) else 3
    except OSError as error:  # a full disk, a read-only folder: one line (WriteError names the file)
        advice = f"; {resume_advice(run_folder)}" if run_folder is not None else ""
        print(f"train_ssd.py: error: {error}{advice}", file=sys.stderr)
        return 1
    finally:
        if run_folder is not None:
            run_folder.release()
        shutdown(context)


if __name__ == "__main__":
    sys.exit(main())
