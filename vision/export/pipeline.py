"""What ``convert_to_caffe2_models.py`` does, as a library call: load a trained SSD, export it to ONNX, check
the file, publish it with its side files, optionally quantize it to INT8, and write Caffe2 files when
Caffe2 is importable.

    request = ExportRequest("mb1-ssd", "models/mb1-ssd.pth", tuple(read_label_file("models/labels.txt")),
                            output="models/mb1-ssd.onnx")
    result = export_model(request)          # prints what it did; result.onnx_path

An export is written under temporary names beside its final ones (``vision.utils.atomic.StagedFiles``) and
checked there: only a file that passes its check is published under its name; one that fails is kept as
``<name>.FAILED.onnx`` (with its side files) for inspection and nothing else is left behind.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Callable, List, Optional, Sequence, Tuple

from vision.evaluation.data import open_dataset
from vision.export import checks
from vision.export.caffe2_export import caffe2_backend, export_caffe2
from vision.export.compare import check_int8_detections, forward_latency_ms, map_within, mean_ap
from vision.export.metadata import side_file_paths
from vision.export.onnx_export import DEFAULT_OPSET, DEFAULT_PROB_THRESHOLD, export_onnx, resolve_exporter
from vision.export.quantize import (
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_FLOAT_LAYERS,
    DEFAULT_HEADS,
    DEFAULT_MAP_TOLERANCE,
    DEFAULT_REDUCE_RANGE,
    Int8Settings,
    PreparedModel,
    int8_output_path,
    quantize_onnx,
    read_rgb,
)
from vision.export.sensitivity import (
    DEFAULT_ERROR_GATE,
    DEFAULT_MAX_FLOAT_LAYERS,
    DEFAULT_SIGNIFICANCE,
    SEARCH_IMAGES,
    find_float_layers,
)
from vision.ssd.ssd import SSD
from vision.ssd.weights import load_net
from vision.utils.atomic import StagedFiles, remove_stale_temporaries
from vision.utils.image_size import ImageSize

Report = Callable[[str], None]


def print_warning(message: str) -> None:
    """The default ``warn``: ``warning: <message>`` on stderr."""
    print(f"warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Int8Options:
    """``--int8``: also write ``<name>.int8.onnx`` (``vision.export.quantize``).

    calibration_images: the image files to calibrate on (``choose_calibration_images``); calibration_data:
    the folder they were chosen from (named in the report). method: minmax, entropy or percentile. heads:
    ``"float"`` or ``"int8"`` for the heads' last convolutions. validation_dataset: a data set root (its
    test split, of ``validation_dataset_type``) on which float32 and INT8 mAP are reported; None: none.
    quant_format, weights, reduce_range, float_depthwise: as :class:`~vision.export.quantize.Int8Settings`.
    float_layers: the sensitivity pass (``vision.export.sensitivity``): None runs it and keeps in float32 the
    layers it finds (until the validation mAP is within ``map_tolerance`` of float32's, with a validation
    set; else those whose INT8 alone costs much of the outputs' accuracy on the calibration images); 0
    skips it; N keeps the N worst it ranks."""

    calibration_images: Tuple[str, ...]
    calibration_data: str
    method: str = DEFAULT_CALIBRATION_METHOD
    heads: str = DEFAULT_HEADS
    validation_dataset: Optional[str] = None
    validation_dataset_type: str = "voc"
    quant_format: str = "qdq"
    weights: str = "int8"
    reduce_range: bool = DEFAULT_REDUCE_RANGE
    float_depthwise: bool = False
    float_layers: Optional[int] = DEFAULT_FLOAT_LAYERS
    map_tolerance: float = DEFAULT_MAP_TOLERANCE

    def settings(self) -> Int8Settings:
        """The quantization these options ask for (before the sensitivity pass adds its float32 layers)."""
        return Int8Settings(method=self.method, weights=self.weights, reduce_range=self.reduce_range,
                            quant_format=self.quant_format, heads=self.heads,
                            float_depthwise=self.float_depthwise).check()


@dataclass(frozen=True)
class ExportRequest:
    """One export, every option resolved.

    net_type: a registry name. model_path: the weights, a local file (a zoo name or URL is resolved by
    ``vision.ssd.weights.load_weights`` too). class_names: BACKGROUND first, as many as the checkpoint's
    classes. output: the ``.onnx`` path (side files ``.json`` and ``.labels.txt`` beside it). label_path:
    the label file class_names were read from; it indexes the labels of ``int8.validation_dataset``.
    image_size: ``(width, height)`` of the exported input, None for the net type's native size.
    opset, exporter (``auto``, ``torchscript``, ``dynamo``), dynamic_batch (a free batch axis, else 1),
    with_postprocess (box selection and NMS in the graph, ``candidate_size`` boxes per class before NMS and
    ``prob_threshold`` the default of its threshold input), mb2_width_mult: as ``export_onnx`` takes them.
    int8: the INT8 file's options, None for no INT8 file.
    """

    net_type: str
    model_path: str
    class_names: Tuple[str, ...]
    output: str
    label_path: Optional[str] = None
    image_size: Optional[ImageSize] = None
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"
    dynamic_batch: bool = False
    with_postprocess: bool = False
    candidate_size: int = 200
    prob_threshold: float = DEFAULT_PROB_THRESHOLD
    mb2_width_mult: float = 1.0
    int8: Optional[Int8Options] = None


@dataclass(frozen=True)
class ExportResult:
    """The published files: the checked ``.onnx`` (its side files beside it), the INT8 file (None without
    ``int8``) and the Caffe2 files (empty when Caffe2 is not importable)."""

    onnx_path: str
    int8_path: Optional[str] = None
    caffe2_paths: Tuple[str, ...] = ()


def export_model(request: ExportRequest, report: Report = print, warn: Report = print_warning) -> ExportResult:
    """Carry out ``request`` (see the module docstring); ``report`` gets each line of what was done and
    checked, ``warn`` each warning that does not stop the export. Raises ValueError/OSError with one line:
    a checkpoint that does not fit (or whose sidecar records other class names), an exporter that fails, a
    failed check (the file is then kept as ``<name>.FAILED.onnx``), an INT8 file that cannot run."""
    exporter = resolve_exporter(request.exporter, request.opset)
    net = load_net(request.net_type, request.model_path, len(request.class_names), image_size=request.image_size,
                   is_test=True, mb2_width_mult=request.mb2_width_mult, class_names=request.class_names,
                   label_file=request.label_path)
    net.eval()
    output = request.output
    _stage_and_check(request, net, exporter, report)
    report(f"Wrote {written_files_text(output)}")
    int8_path = _write_int8(request, output, request.int8, report) if request.int8 is not None else None
    return ExportResult(output, int8_path, tuple(_write_caffe2(output, report, warn)))


def written_files_text(output: str) -> str:
    """``"<x>.onnx, <x>.labels.txt and <x>.json"``: the published file and its side files, as printed."""
    model, metadata, labels = [output, *side_file_paths(output)]
    return f"{model}, {labels} and {metadata}"


def failed_output_path(output: str) -> str:
    """Where an export that failed its check is kept: ``models/x.onnx`` -> ``models/x.FAILED.onnx``."""
    root, extension = os.path.splitext(output)
    return f"{root}.FAILED{extension or '.onnx'}"


def _staged_model_files(final_path: str) -> StagedFiles:
    """The ``.onnx`` and its side files under temporary names beside ``final_path``; those a killed export
    left there are removed first."""
    finals = [final_path, *side_file_paths(final_path)]
    for path in finals:
        remove_stale_temporaries(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    return StagedFiles(finals)


def _staged_side_paths(staged: StagedFiles, final_path: str) -> Tuple[str, str]:
    json_path, labels_path = side_file_paths(final_path)
    return staged.path(json_path), staged.path(labels_path)


def _stage_and_check(request: ExportRequest, net: SSD, exporter: str, report: Report) -> None:
    """Export to staged names, check, publish (or keep as FAILED and raise ValueError)."""
    output = request.output
    with _staged_model_files(output) as staged:
        staging = staged.path(output)
        try:
            metadata = export_onnx(net, request.net_type, list(request.class_names), staging, opset=request.opset,
                                   dynamic_batch=request.dynamic_batch, exporter=exporter,
                                   with_postprocess=request.with_postprocess, candidate_size=request.candidate_size,
                                   prob_threshold=request.prob_threshold, mb2_width_mult=request.mb2_width_mult,
                                   side_paths=_staged_side_paths(staged, output))
        except (ValueError, OSError):
            raise
        except Exception as error:  # torch's exporters raise many types; the first line says what failed
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{request.net_type}: the {exporter} exporter failed ({reason[:300]})") from None
        batch = "dynamic batch" if request.dynamic_batch else "batch 1"
        report(f"Exported {request.net_type} at {net.config.size_text} ({len(request.class_names)} classes, "
               f"{metadata.num_priors} priors) with the {exporter} exporter, opset {request.opset}, {batch}"
               + (", with postprocess" if request.with_postprocess else ""))
        if request.with_postprocess:
            result = checks.check_postprocess(staging, net, request.net_type)
            report(str(result))
        else:
            result = checks.check_onnxruntime(staging, net)
            report(str(result))
            if result.ok:
                opencv = checks.check_opencv_dnn(staging, net, metadata)
                report(str(opencv) if opencv.ok else f"warning: {opencv}")
        if not result.ok:
            # Kept under another name, so nothing picks it up as a good export but the user can inspect it.
            kept = failed_output_path(output)
            staged.publish([kept, *side_file_paths(kept)])
            raise ValueError(f"{output}: not written, the check FAILED ({result.name}: {result.message}); "
                             f"the exported file is kept as {kept} for inspection")
        staged.publish()


def _write_int8(request: ExportRequest, output: str, options: Int8Options, report: Report) -> str:
    """Quantize the published float32 file ``output`` into ``<name>.int8.onnx`` (after the sensitivity pass,
    when asked), check it, report latency (and mAP); returns its path."""
    images: Sequence[str] = options.calibration_images
    final_path = int8_output_path(output)
    dataset = (open_dataset(options.validation_dataset_type, options.validation_dataset, request.label_path)
               if options.validation_dataset else None)
    float_map = None
    with tempfile.TemporaryDirectory(prefix="ssd-int8-") as work, _staged_model_files(final_path) as staged:
        prepared = PreparedModel(output, images, work)
        settings = options.settings()
        all_int8_path = None
        if options.float_layers != 0:
            if request.with_postprocess:
                report("Sensitivity pass skipped: it compares scores and boxes, which a --with_postprocess graph "
                       "does not output")
            else:
                accept = None
                if dataset is not None and options.float_layers is None:
                    float_map = mean_ap(output, dataset, request.class_names)
                    accept = map_within(dataset, list(request.class_names), float_map, options.map_tolerance)
                search = [read_rgb(path) for path in images[:SEARCH_IMAGES]]
                result = find_float_layers(prepared, settings, search, accept=accept,
                                           max_float_layers=options.float_layers or DEFAULT_MAX_FLOAT_LAYERS,
                                           significance=0.0 if options.float_layers else DEFAULT_SIGNIFICANCE,
                                           error_gate=0.0 if options.float_layers else DEFAULT_ERROR_GATE,
                                           report=report)
                report(result.describe())
                if result.keep_float:
                    all_int8_path = os.path.join(work, "all-int8.onnx")
                    quantize_onnx(output, all_int8_path, images, settings=settings, prepared=prepared)
                    settings = replace(settings, keep_float=result.keep_float)
        staging = staged.path(final_path)
        metadata = quantize_onnx(output, staging, images, settings=settings, prepared=prepared,
                                 side_paths=_staged_side_paths(staged, final_path))
        made = metadata.quantization
        report(f"Quantized to INT8 ({made['quantized_nodes']} nodes, {made['format']}, {settings.activations} "
               f"activations, {made['weights']} weights, heads in {made['heads']}, {options.method} calibration on "
               f"{len(images)} images of {options.calibration_data})")
        if settings.keep_float:
            report(f"Kept in float32 by the sensitivity pass: {', '.join(settings.keep_float)}")
        check_images = [read_rgb(path) for path in images[:8]]
        result = check_int8_detections(staging, output, check_images)
        if result.message.startswith("cannot run"):
            raise ValueError(f"{final_path}: not written, {result}")
        # Quantization's cost is the user's call (the mAP below says what it is): a mismatch warns.
        report(str(result) if result.ok else f"warning: {result}")
        float_ms, int8_ms = (forward_latency_ms(path, check_images[0]) for path in (output, staging))
        report(f"Latency at batch 1 (ONNX Runtime, CPU, forward pass, median of 20): float32 {float_ms:.1f} ms, "
               f"INT8 {int8_ms:.1f} ms ({float_ms / int8_ms:.2f}x)")
        if all_int8_path is not None:
            all_int8_ms = forward_latency_ms(all_int8_path, check_images[0])
            report(f"The {len(settings.keep_float)} float32 layer(s) cost {int8_ms - all_int8_ms:+.1f} ms: every layer "
                   f"in INT8 runs in {all_int8_ms:.1f} ms")
        staged.publish()
    report(f"Wrote {written_files_text(final_path)}")
    if dataset is not None:
        float_map = float_map if float_map is not None else mean_ap(output, dataset, request.class_names)
        int8_map = mean_ap(final_path, dataset, request.class_names)
        report(f"mAP (VOC07) on {len(dataset)} images of {options.validation_dataset}: float32 {float_map:.4f}, "
               f"INT8 {int8_map:.4f} ({int8_map - float_map:+.4f})")
    return final_path


def _write_caffe2(output: str, report: Report, warn: Report) -> List[str]:
    """The Caffe2 files of ``output`` when Caffe2 is importable; a failed conversion only warns."""
    backend = caffe2_backend()
    if backend is None:
        report("Caffe2 files not written: caffe2 cannot be imported (it was removed from PyTorch in the 2.x "
               "series); the ONNX model is the one to deploy.")
        return []
    try:
        written = export_caffe2(output, backend)
    except Exception as error:  # the ONNX part is done; Caffe2's converter is not ours to fix
        warn(f"Caffe2 conversion failed ({str(error).strip().splitlines()[0][:200]}); the ONNX model is complete")
        return []
    report(f"Wrote the Caffe2 model: {', '.join(written)}")
    return written
