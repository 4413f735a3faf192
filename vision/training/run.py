"""One training run of ``train_ssd.py``: data, model, optimiser, loss and logging set up from a
:class:`~vision.training.settings.TrainingSettings`, then the epoch loop with validation, checkpoints and
history (:class:`TrainingRun`)."""
from __future__ import annotations

import json
import logging
import os
import random
from typing import Optional

import numpy as np
import torch

from vision.datasets import DatasetError, build_dataset, collate_training_batch, store_labels, worker_init_fn
from vision.datasets.boxes import relative_boxes
from vision.datasets.encoded import EncodedTrainingSamples
from vision.evaluation.runner import evaluate
from vision.nn.multibox_loss import MultiboxLoss
from vision.ssd import weights
from vision.ssd.prior_choice import AUTO, PRIORS_FILE, PriorChoice, choose_priors, write_prior_table
from vision.ssd.priors import TablePriors
from vision.ssd.registry import create_net, create_predictor, net_config
from vision.ssd.sidecar import read_sidecar, write_sidecar
from vision.ssd.ssd import MatchPrior
from vision.ssd.weights import checkpoint_priors
from vision.training import checkpoints, skipped
from vision.training.distributed import DistributedContext, barrier
from vision.training.gpu_augmentation import BatchedTrainAugmentation
from vision.training.gpu_data import DeviceAugmentedBatches, collate_encoded_batch
from vision.training.loops import NonFiniteLossError, train_one_epoch, validate
from vision.training.optimizer import create_optimizer, create_scheduler, parameter_groups
from vision.training.recipe import WeightAverage, ema_decay_description, epochs_to_steps, warmup_factor
from vision.training.resume import restore_optimizer_and_scheduler
from vision.training.settings import TrainingSettings
from vision.transforms import TestTransform, TrainAugmentation
from vision.transforms.one_pass import OnePassTrainAugmentation
from vision.utils.atomic import append_text, save_torch
from vision.utils.checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file
from vision.utils.image_size import ImageSize

log = logging.getLogger("train_ssd")
BEST_CHECKPOINT = "best.pth"  # the weights of the best validation mAP, a bare state_dict


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed(seed + rank)
    torch.manual_seed(seed + rank)


def autocast_settings(amp: bool, device: torch.device):
    """``(dtype or None, GradScaler or None)`` for ``--amp``."""
    if not amp:
        return None, None
    if device.type != "cuda":
        log.warning("--amp has effect on CUDA only; training in float32 on %s", device)
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def resumed_prior_table(resume: str, net_type: str) -> Optional[TablePriors]:
    """The prior table the checkpoint ``resume`` was trained with: its sidecar's, else ``priors`` in a
    ``last.pth``; None for the net type's own priors."""
    table = checkpoint_priors(resume, net_type)
    if table is not None or read_sidecar(resume) is not None:
        return table
    checkpoint = load_checkpoint_file(resume)
    document = checkpoint.get("priors") if isinstance(checkpoint, dict) else None
    return TablePriors.from_document(document, source=resume) if document else None


class _Matched(torch.utils.data.Dataset):
    """The training samples with their boxes matched to the priors: ``(image, locations, labels)``; None
    (a skipped sample) stays None."""

    def __init__(self, dataset, match_prior: MatchPrior):
        self.dataset = dataset
        self.match_prior = match_prior

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[index]
        if sample is None:
            return None
        image, boxes, labels = sample
        return (image, *self.match_prior(boxes, labels))


def resumed_input_size(resume: Optional[str]) -> Optional[ImageSize]:
    """The input size the checkpoint ``resume`` was trained at: its sidecar's, else ``image_size`` in a
    ``last.pth``; None when it records none (the net type's native size)."""
    if not resume:
        return None
    info = read_sidecar(resume)
    if info is not None:
        return info.image_size
    checkpoint = load_checkpoint_file(resume)
    if isinstance(checkpoint, dict) and checkpoint.get("image_size") is not None:
        return tuple(int(v) for v in checkpoint["image_size"])
    return None


class TrainingRun:
    """Everything one run needs, built from its settings; ``run()`` trains."""

    def __init__(self, settings: TrainingSettings, context: DistributedContext):
        self.settings = settings
        self.context = context
        self.device = settings.torch_device
        # The configuration at the run's input size; the priors are chosen once the training boxes are read.
        self.config = net_config(settings.net, settings.image_size, settings.mb2_width_mult)
        if context.is_main:
            for path in checkpoints.prepare_checkpoint_folder(settings.checkpoint_folder):
                log.info("Removed %s, a partial save left by a killed run", path)
        self._setup_data()
        resume_checkpoint = self._setup_model()
        self._setup_optimiser(resume_checkpoint)
        self._setup_loss()
        self._setup_logging()

    # -- set-up ---------------------------------------------------------------------------------
    def _setup_data(self) -> None:
        """Training and validation data sets with their transforms, the priors (their coverage printed, a
        fitted table written beside the checkpoints) and prior matching; writes ``labels.txt``."""
        args, config = self.settings, self.config
        self.gpu_data = args.gpu_data
        if self.gpu_data:
            # Workers read files and draw parameters; decoding, augmentation and matching run batched on the
            # device.
            self.train_dataset, self.class_names = build_dataset(args.dataset_type, args.datasets,
                                                                 balance_data=args.balance_data)
            recipe = TrainAugmentation(config.image_size, config.image_mean, config.image_std)
            if args.no_augmentation:
                recipe.steps = recipe.steps[:1]  # boxes sanitised, no random step: resize only
            self.train_samples = EncodedTrainingSamples(self.train_dataset, recipe)
        else:
            # The recipe's geometry in one resampling pass: the same draws as TrainAugmentation, faster
            # (benchmarks/bench_train.py end_to_end).
            transform_type = TestTransform if args.no_augmentation else OnePassTrainAugmentation
            train_transform = transform_type(config.image_size, config.image_mean, config.image_std)
            self.train_dataset, self.class_names = build_dataset(args.dataset_type, args.datasets,
                                                                 transform=train_transform,
                                                                 balance_data=args.balance_data)
        log.info("Training set: %d images, %d classes (%s)", len(self.train_dataset), len(self.class_names) - 1,
                 ", ".join(self.class_names[1:]))
        self.prior_choice = self._choose_priors()
        self.config = config = self.prior_choice.config
        self.match_prior = MatchPrior(config.priors, config.center_variance, config.size_variance,
                                      config.match_iou_threshold)
        if not self.gpu_data:
            self.train_samples = _Matched(self.train_dataset, self.match_prior)
        self.validation_dataset = None
        if args.validation_dataset:
            test_transform = TestTransform(config.image_size, config.image_mean, config.image_std)
            self.validation_dataset, validation_names = build_dataset(args.dataset_type, [args.validation_dataset],
                                                                      transform=test_transform,
                                                                      target_transform=self.match_prior, is_test=True)
            if [n.lower() for n in validation_names] != [n.lower() for n in self.class_names]:
                raise DatasetError(f"the validation set {args.validation_dataset} has classes {validation_names}, "
                                   f"the training set {args.datasets} has {self.class_names}")
            log.info("Validation set: %d images", len(self.validation_dataset))
            # The same images without transforms, for VOC mAP through the predictor.
            self.validation_raw, _ = build_dataset(args.dataset_type, [args.validation_dataset], is_test=True)
        if self.context.is_main:
            store_labels(os.path.join(args.checkpoint_folder, "labels.txt"), self.class_names)

    def _choose_priors(self) -> PriorChoice:
        """The run's priors (``--priors``; on a resume the checkpoint's table), with their coverage of the
        training boxes logged and a warning naming the flag that fixes a poorly covered class."""
        args = self.settings
        requested = args.priors
        if args.resume:
            resumed = resumed_prior_table(args.resume, args.net)
            if resumed is not None and requested not in (None, AUTO):
                raise ValueError(f"--priors {requested}: {args.resume} was trained with its own prior table, which "
                                 "a resumed run keeps; drop --priors")
            requested = resumed if resumed is not None else requested
            if requested == AUTO:
                raise ValueError(f"--priors auto with --resume: {args.resume} holds no fitted table; resume without "
                                 "--priors, or start a new run with --priors auto")
        boxes, labels = relative_boxes(self.train_dataset)
        choice = choose_priors(requested, args.net, self.config.image_size, boxes, labels, self.class_names,
                               seed=args.seed or 0, mb2_width_mult=args.mb2_width_mult,
                               advise=self.context.is_main)
        if not self.context.is_main:
            return choice
        log.info("Input size %s, %d priors (%s)", choice.config.size_text, choice.config.num_priors,
                 choice.description)
        for warning in choice.warnings:
            log.warning("%s", warning)
        if choice.before is not None:
            for line in choice.before.lines():
                log.info("%s", line)
        for line in choice.coverage.lines():
            log.info("%s", line)
        for line in choice.advice:
            log.warning("%s", line)
        if choice.fit is not None:
            path = write_prior_table(os.path.join(args.checkpoint_folder, PRIORS_FILE), choice.table, args.net)
            log.info("Wrote the fitted prior table to %s (train another run with --priors %s)", path, path)
        if choice.table is not None and args.pretrained_ssd:
            log.warning("--pretrained_ssd: its regression head learnt %s's own priors, not this table; fine-tuning "
                        "adapts it (docs/own_data.md)", args.net)
        return choice

    def _setup_model(self) -> Optional[dict]:
        """The net, its initial weights, device and memory format; returns a training checkpoint to restore."""
        args = self.settings
        self.net = create_net(args.net, len(self.class_names), mb2_width_mult=args.mb2_width_mult,
                              image_size=self.config.image_size, priors=self.prior_choice.table)
        self.start_epoch = 0
        self.global_step = 0
        resume_checkpoint = self._initial_weights()
        self.net.to(self.device)
        if args.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.model = self.net
        if self.context.enabled:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return resume_checkpoint

    def _setup_optimiser(self, resume_checkpoint: Optional[dict]) -> None:
        """SGD over the parameter groups, the scheduler and mixed precision; restores a resumed run's state."""
        args = self.settings
        groups = parameter_groups(self.net, args.lr, args.base_net_lr, args.extra_layers_lr, args.freeze_base_net,
                                  args.freeze_net)
        self.optimizer = create_optimizer(groups, args.lr, args.momentum, args.weight_decay)
        self.scheduler = create_scheduler(self.optimizer, args.scheduler, args.milestones, args.gamma, args.t_max)
        self.autocast_dtype, self.scaler = autocast_settings(args.amp, self.device)
        self.average = WeightAverage(self.net, args.ema_decay) if args.ema_decay else None
        self.best_map = -1.0
        if resume_checkpoint is not None:
            self._restore(resume_checkpoint)

    def _setup_loss(self) -> None:
        """MultiboxLoss for training (hard negatives counted across processes) and for validation."""
        config = self.net.config
        settings = dict(iou_threshold=config.match_iou_threshold, neg_pos_ratio=config.neg_pos_ratio,
                        center_variance=config.center_variance, size_variance=config.size_variance, device=self.device)
        self.criterion = MultiboxLoss(config.priors, background_negatives=self.settings.background_negatives,
                                      **settings)
        self.validation_criterion = MultiboxLoss(config.priors, across_processes=False, **settings)

    def _setup_logging(self) -> None:
        """A TensorBoard writer on the main process when ``--log_dir`` is given."""
        self.writer = None
        if self.settings.log_dir and self.context.is_main:
            from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard only with --log_dir

            self.writer = SummaryWriter(self.settings.log_dir)

    def _initial_weights(self) -> Optional[dict]:
        """Apply --resume / --base_net / --pretrained_ssd; return a training checkpoint to restore later."""
        args = self.settings
        if args.resume:
            checkpoint = load_checkpoint_file(args.resume)
            state_dict = extract_state_dict(checkpoint, args.resume)
            saved_net = (checkpoint.get("args") or {}).get("net") if isinstance(checkpoint, dict) else None
            if saved_net and saved_net != args.net:
                raise CheckpointError(f"{args.resume}: written by a {saved_net} run, not {args.net}; "
                                      f"run with --net {saved_net}")
            weights.load_state_dict(self.net, state_dict, args.resume, args.net)
            if checkpoints.is_training_checkpoint(checkpoint):
                log.info("Resuming %s after epoch %d", args.resume, int(checkpoint["epoch"]))
                return checkpoint
            log.info("Loaded weights from %s; starting at epoch 0", args.resume)
        elif args.base_net:
            log.info("Init from base net %s", args.base_net)
            weights.init_from_base_net(self.net, args.base_net)
        elif args.pretrained_ssd:
            log.info("Init from pretrained ssd %s", args.pretrained_ssd)
            weights.init_from_pretrained_ssd(self.net, args.pretrained_ssd, args.net)
        return None

    def _restore(self, checkpoint: dict) -> None:
        """Weights were loaded; epoch, step and RNG always follow, optimizer and scheduler state where the
        flags that shape them are unchanged (``vision.training.resume``)."""
        args = self.settings
        self.scheduler = restore_optimizer_and_scheduler(
            checkpoint, args.record(), self.optimizer, self.scheduler,
            lambda optimizer: create_scheduler(optimizer, args.scheduler, args.milestones, args.gamma, args.t_max),
            int(checkpoint["epoch"]) + 1, args.resume, log.info if self.context.is_main else (lambda message: None))
        if self.scaler is not None and "scaler" in checkpoint:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.global_step = int(checkpoint.get("step", 0))
        if "rng" in checkpoint and not self.context.enabled:
            checkpoints.restore_rng_state(checkpoint["rng"])
        if self.average is not None and isinstance(checkpoint.get("ema"), dict):
            self.average.load_state_dict(checkpoint["ema"])
        self.best_map = float(checkpoint.get("best_map", -1.0))

    def _train_loader(self):
        """The training batches: the DataLoader of transformed samples, or with ``--gpu_data`` the encoded
        batches augmented on the device (``vision.training.gpu_data``)."""
        if not self.gpu_data:
            return self._loader(self.train_samples, shuffle=True, epoch_sampler=True)
        loader = self._loader(self.train_samples, shuffle=True, epoch_sampler=True, collate_fn=collate_encoded_batch,
                              pin_memory=False)
        return DeviceAugmentedBatches(loader, BatchedTrainAugmentation(self.net.config, self.device))

    def _loader(self, dataset, shuffle: bool, epoch_sampler: bool, collate_fn=collate_training_batch,
                pin_memory: Optional[bool] = None):
        sampler = None
        if epoch_sampler and self.context.enabled:
            sampler = torch.utils.data.distributed.DistributedSampler(
                dataset, num_replicas=self.context.world_size, rank=self.context.rank, shuffle=shuffle,
                seed=self.settings.seed or 0)
        workers = self.settings.num_workers
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.settings.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
            num_workers=workers, collate_fn=collate_fn, worker_init_fn=worker_init_fn,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory)

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> Optional[str]:
        """Train from ``start_epoch`` to ``num_epochs``; returns the last saved model path."""
        args = self.settings
        train_loader = self._train_loader()
        validation_loader = (self._loader(self.validation_dataset, shuffle=False, epoch_sampler=False)
                             if self.validation_dataset else None)
        last_model_path = None
        last_path = os.path.join(args.checkpoint_folder, checkpoints.LAST_CHECKPOINT)
        show_progress = self.context.is_main and not args.no_progress
        warmup_steps = epochs_to_steps(args.warmup_epochs, len(train_loader))
        if self.context.is_main and (warmup_steps or self.average is not None):
            log.info("Warmup: %d steps; weight average (EMA): %s", warmup_steps,
                     ema_decay_description(args.ema_decay))
        for epoch in range(self.start_epoch, args.num_epochs):
            if isinstance(train_loader.sampler, torch.utils.data.distributed.DistributedSampler):
                train_loader.sampler.set_epoch(epoch)
            lr = self.optimizer.param_groups[-1]["lr"]
            try:
                result = train_one_epoch(self.model, train_loader, self.criterion, self.optimizer, self.device, epoch,
                                         autocast_dtype=self.autocast_dtype, scaler=self.scaler,
                                         channels_last=args.channels_last, freeze_bn=args.freeze_bn,
                                         debug_steps=args.debug_steps, show_progress=show_progress,
                                         log=log.info if self.context.is_main else (lambda message: None),
                                         on_step=self._log_step, global_step=self.global_step,
                                         lr_factor=(lambda step: warmup_factor(step, warmup_steps))
                                         if warmup_steps else None,
                                         after_step=self._update_average if self.average is not None else None)
            except NonFiniteLossError as error:
                kept = last_path if os.path.exists(last_path) else "none yet"
                raise NonFiniteLossError(f"{error}; stopping. Last good checkpoint: {kept}. "
                                         "Try a lower --lr.") from None
            if result.steps == 0:
                raise skipped.empty_epoch_error(self.train_dataset, epoch, result.skipped, args.datasets)
            if result.skipped > result.images and self.context.is_main:
                log.warning("%s", skipped.mostly_skipped_warning(self.train_dataset, epoch, result.skipped,
                                                                 result.skipped + result.images, args.datasets))
            self.global_step += result.steps
            self.scheduler.step()
            if self.context.is_main:
                log.info("Epoch: %d, lr %.6g, Training Loss: %.4f, Regression Loss %.4f, Classification Loss: %.4f, "
                         "%.1f images/s%s", epoch, lr, result.loss, result.regression_loss, result.classification_loss,
                         result.images * self.context.world_size / max(result.seconds, 1e-9),
                         f", skipped {result.skipped} unreadable samples (see warnings above)" if result.skipped
                         else "")
            record = {"epoch": epoch, "lr": lr, "train_loss": result.loss,
                      "train_regression_loss": result.regression_loss,
                      "train_classification_loss": result.classification_loss, "skipped": result.skipped}
            is_validation_epoch = epoch % args.validation_epochs == 0 or epoch == args.num_epochs - 1
            if is_validation_epoch and self.context.is_main:
                loss_for_name = result.loss
                if validation_loader is not None:
                    validation = validate(self.evaluated_net, validation_loader, self.validation_criterion,
                                          self.device, args.channels_last)
                    loss_for_name = validation.loss
                    record.update(validation_loss=validation.loss,
                                  validation_regression_loss=validation.regression_loss,
                                  validation_classification_loss=validation.classification_loss)
                    log.info("Epoch: %d, Validation Loss: %.4f, Validation Regression Loss %.4f, "
                             "Validation Classification Loss: %.4f", epoch, validation.loss,
                             validation.regression_loss, validation.classification_loss)
                    record["validation_map"] = self._validation_map()
                    log.info("Epoch: %d, Validation VOC07 mAP: %.4f", epoch, record["validation_map"])
                    if record["validation_map"] > self.best_map:
                        self.best_map = record["validation_map"]
                        self._save_weights(os.path.join(args.checkpoint_folder, BEST_CHECKPOINT))
                        record["best"] = True
                        log.info("Epoch: %d, best validation mAP so far: saved %s", epoch,
                                 os.path.join(args.checkpoint_folder, BEST_CHECKPOINT))
                last_model_path = os.path.join(args.checkpoint_folder,
                                               f"{args.net}-Epoch-{epoch}-Loss-{loss_for_name}.pth")
                self._save_weights(last_model_path)
                log.info("Saved model %s", last_model_path)
            if self.context.is_main:
                checkpoints.save_training_checkpoint(last_path, self.net, self.optimizer, self.scheduler, epoch,
                                                     self.global_step, args.record(), self.scaler,
                                                     info=self._training_state())
                self._write_sidecar(last_path)
                self._append_history(record)
            barrier(self.context)
        if self.writer is not None:
            self.writer.close()
        return last_model_path

    @property
    def evaluated_net(self) -> torch.nn.Module:
        """The weights that are validated and saved: the average when there is one, else the net's."""
        return self.average.net if self.average is not None else self.net

    def _update_average(self) -> None:
        self.average.update(self.net)

    def _save_weights(self, path: str) -> None:
        """The weights to use (``evaluated_net``) as a bare state_dict, the original's format, and its sidecar."""
        save_torch(self.evaluated_net.state_dict(), path)
        self._write_sidecar(path)

    def _training_state(self) -> dict:
        """What last.pth holds beside the optimiser's state: the model info, the average and the best mAP."""
        state = self._model_info()
        state["best_map"] = self.best_map
        if self.average is not None:
            state["ema"] = self.average.state_dict()
        return state

    def _validation_map(self) -> float:
        """VOC07 11-point mAP of the weights validated (``evaluated_net``) on the validation set
        (prob_threshold 0.01)."""
        predictor = create_predictor(self.settings.net, self.evaluated_net, device=self.device)
        result = evaluate(predictor, self.validation_raw, self.class_names, batch_size=self.settings.batch_size,
                          num_workers=min(self.settings.num_workers, 2), progress=False)
        return float(result.mean_ap)

    def _model_info(self) -> dict:
        """What last.pth records beside the training state: net type, input size ``[width, height]``, classes,
        the prior table (None: the net type's own)."""
        return {"net_type": self.settings.net, "image_size": list(self.net.config.image_size),
                "class_names": list(self.class_names), "priors": self._prior_document()}

    def _prior_document(self) -> Optional[dict]:
        table = self.prior_choice.table
        return table.to_document(self.settings.net) if table is not None else None

    def _write_sidecar(self, checkpoint_path: str) -> None:
        write_sidecar(checkpoint_path, self.settings.net, self.net.config.image_size, self.class_names,
                      self.settings.mb2_width_mult, priors=self._prior_document())

    def _log_step(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)

    def _append_history(self, record: dict) -> None:
        append_text(os.path.join(self.settings.checkpoint_folder, "history.jsonl"), json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    self.writer.add_scalar(f"epoch/{key}", value, record["epoch"])
