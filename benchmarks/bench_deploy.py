"""Edge deployment on the CPU: eager PyTorch, the predictor's engine, ONNX Runtime float32 and INT8.

Three tables (``--tables``), each headed by the CPU model, core count and torch / onnxruntime versions, each
row with the load average beside it; every time is a median of ``--repeats`` rounds taken in turns (A, B,
C, A, B, C, ...), so a change of load weighs on all the runs of a row alike.

- ``options``: ONNX Runtime INT8 options on ``--option_nets`` (default mb1-ssd): QDQ against QOperator,
  U8S8 against U8U8 and S8S8, ``reduce_range``, the depthwise convolutions or the heads left in float32, and
  the session's graph optimisation level; forward pass at batch 1 and 8, beside float32. The fastest INT8
  setting of the first net is the "best" of the next table.
- ``speed``: every net type (deterministic weights: speed does not depend on training), forward pass ms per
  image at batch 1 and 8 of eager PyTorch (the BatchNorm-folded net the predictor runs), the engine
  ``engine="auto"`` picks (``vision.ssd.engines``), ONNX Runtime float32 (the export with a free batch axis)
  and INT8 with the default settings and with the best ones; calibrated on 32 synthetic images.
- ``accuracy``: a model trained for it: mb2-ssd-lite (the net whose INT8 lost 0.030 mAP on real data), 20
  epochs on 400 synthetic 320x240 images (5 shapes, seed 2026; batch 8, lr 0.03 cosine, no augmentation),
  trained once into ``<trained_work>/mb2-ssd-lite/last.pth`` and reused. VOC07 mAP on its 200 test images
  of float32 and of INT8 under each quantization strategy (calibration method and count, per-channel,
  weight types, reduce_range, float32 heads or depthwise layers, QOperator, the sensitivity pass with and
  without labelled search data), each with its batch-1 latency and the time quantization took. The
  sensitivity pass searches on a separate set of 200 images (seed 2027), never on the test images.

    python benchmarks/bench_deploy.py [--tables options speed accuracy] [--nets ...] [--repeats 7]
        [--work /tmp/ssd-deploy-bench] [--trained_work /tmp/ssd-int8-bench]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import interleaved_ms, load_average, versions_header  # noqa: E402
from vision.datasets import build_dataset  # noqa: E402
from vision.datasets.synthetic import generate_voc_dataset  # noqa: E402
from vision.export.compare import map_within, mean_ap  # noqa: E402
from vision.export.onnx_export import export_onnx  # noqa: E402
from vision.export.onnx_predictor import OnnxPredictor  # noqa: E402
from vision.export.quantize import (  # noqa: E402
    Int8Settings,
    PreparedModel,
    choose_calibration_images,
    quantize_onnx,
    read_rgb,
)
from vision.export.sensitivity import find_float_layers  # noqa: E402
from vision.ssd.registry import NET_TYPES, create_net, create_predictor  # noqa: E402
from vision.utils.reference_weights import load_deterministic_weights  # noqa: E402

TRAINED_NET = "mb2-ssd-lite"
TRAINED_FLAGS = ["--seed", "0", "--no_progress", "--batch_size", "8", "--no_augmentation", "--num_workers", "1",
                 "--use_cuda", "false", "--num_epochs", "20", "--lr", "0.03", "--scheduler", "cosine", "--t_max", "20"]
SPEED_CALIBRATION_IMAGES = 32
LEVELS = {"basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL}
# name -> (settings, graph optimisation level) of the options table; the first is the default.
OPTIONS: Dict[str, Tuple[Int8Settings, str]] = {
    "QDQ U8S8 (default)": (Int8Settings(), "all"),
    "QDQ U8S8 reduce_range": (Int8Settings(reduce_range=True), "all"),
    "QDQ U8U8": (Int8Settings(weights="uint8"), "all"),
    "QDQ S8S8": (Int8Settings(activations="int8"), "all"),
    "QOperator U8S8": (Int8Settings(quant_format="qoperator"), "all"),
    "QOperator U8U8": (Int8Settings(quant_format="qoperator", weights="uint8"), "all"),
    "QDQ U8S8, heads INT8": (Int8Settings(heads="int8"), "all"),
    "QDQ U8S8, depthwise float32": (Int8Settings(float_depthwise=True), "all"),
    "QDQ U8S8, per-tensor weights": (Int8Settings(per_channel=False), "all"),
    "QDQ U8S8, graph optimisation extended": (Int8Settings(), "extended"),
    "QDQ U8S8, graph optimisation basic": (Int8Settings(), "basic"),
}


def header(what: str) -> None:
    print(f"\n{versions_header()}; {what}\n", flush=True)


def session_runner(path: Path, level: str = "all") -> Callable[[np.ndarray], object]:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})


def photos(work: Path) -> Tuple[List[str], List[np.ndarray]]:
    """Calibration image files and 8 test pictures (500x375, synthetic shapes) for the speed tables."""
    root = work / "photos"
    if not (root / "labels.txt").exists():
        generate_voc_dataset(root, num_images=SPEED_CALIBRATION_IMAGES, num_test=8, seed=7)
    files = choose_calibration_images(root / "JPEGImages", SPEED_CALIBRATION_IMAGES, seed=0)
    return files, [read_rgb(path) for path in files[:8]]


def float_export(net_type: str, work: Path) -> Path:
    path = work / net_type / f"{net_type}.onnx"
    if not path.exists():
        net = load_deterministic_weights(create_net(net_type, 21, is_test=True)).eval()
        export_onnx(net, net_type, ["BACKGROUND"] + [f"class{index}" for index in range(1, 21)], path,
                    dynamic_batch=True)
    return path


def options_table(net_types, repeats: int, work: Path) -> Int8Settings:
    """The ``options`` table; returns the fastest INT8 settings of the first net at batch 1."""
    files, pictures = photos(work)
    header(f"ONNX Runtime INT8 options: forward pass ms per image, median of {repeats} rounds in turns; "
           f"calibrated on {len(files)} images (minmax)")
    print("| net | file | level | ms (b1) | ms (b8) | vs float32 (b1) | vs float32 (b8) | load |")
    print("|---|---|---|---|---|---|---|---|")
    best = None
    for net_type in net_types:
        float_path = float_export(net_type, work)
        batch1 = OnnxPredictor(str(float_path)).preprocess(pictures[:1])
        batches = {1: batch1, 8: np.concatenate([batch1] * 8)}
        runners = {"float32": session_runner(float_path)}
        with tempfile.TemporaryDirectory(prefix="ssd-int8-options-") as folder:
            prepared = PreparedModel(float_path, files, folder)
            written: Dict[Int8Settings, Path] = {}  # one file per settings; the levels are session options
            for name, (settings, level) in OPTIONS.items():
                if settings not in written:
                    written[settings] = Path(folder) / f"{len(written)}.onnx"
                    quantize_onnx(float_path, written[settings], files, settings=settings, prepared=prepared)
                runners[name] = session_runner(written[settings], level)
            ms = interleaved_ms(runners, batches, repeats)
        for name in runners:
            level = OPTIONS[name][1] if name in OPTIONS else "all"
            print(f"| {net_type} | {name} | {level} | {ms[(name, 1)]:.1f} | {ms[(name, 8)]:.1f} | "
                  f"{ms[('float32', 1)] / ms[(name, 1)]:.2f}x | {ms[('float32', 8)] / ms[(name, 8)]:.2f}x | "
                  f"{load_average():.1f} |", flush=True)
        if best is None:
            fastest = min((name for name in OPTIONS if OPTIONS[name][1] == "all"), key=lambda name: ms[(name, 1)])
            best = OPTIONS[fastest][0]
            print(f"\nfastest INT8 settings of {net_type} at batch 1: {fastest}\n")
    return best


def speed_table(net_types, repeats: int, work: Path, best: Int8Settings) -> None:
    files, pictures = photos(work)
    header(f"forward pass ms per image, median of {repeats} rounds in turns; deterministic weights, 21 classes; "
           f"INT8 calibrated on {len(files)} images; best INT8 = {best.describe()}")
    print("| net | eager (b1) | engine (b1) | ORT fp32 (b1) | INT8 default (b1) | INT8 best (b1) | "
          "eager (b8) | engine (b8) | ORT fp32 (b8) | INT8 default (b8) | INT8 best (b8) | engine | "
          "INT8 vs fp32 (b1) | load |")
    print("|" + "---|" * 14)
    for net_type in net_types:
        float_path = float_export(net_type, work)
        net = load_deterministic_weights(create_net(net_type, 21, is_test=True)).eval()
        eager = create_predictor(net_type, net, engine="eager")
        engine = create_predictor(net_type, net)
        engine.expect_images(None)
        torch_batches = {1: eager.preprocess(pictures[:1]), 8: eager.preprocess(pictures[:1] * 8)}
        with tempfile.TemporaryDirectory(prefix="ssd-int8-speed-") as folder:
            prepared = PreparedModel(float_path, files, folder)
            default_path, best_path = Path(folder) / "default.onnx", Path(folder) / "best.onnx"
            quantize_onnx(float_path, default_path, files, settings=Int8Settings(), prepared=prepared)
            quantize_onnx(float_path, best_path, files, settings=best, prepared=prepared)
            numpy_runners = {"fp32": session_runner(float_path), "default": session_runner(default_path),
                             "best": session_runner(best_path)}
            runners = {"eager": eager.forward, "engine": engine.forward,
                       **{name: (lambda batch, run=run: run(batch.numpy())) for name, run in numpy_runners.items()}}
            ms = interleaved_ms(runners, torch_batches, repeats)
        chosen = engine.last_engine_build.engine if engine.last_engine_build else "eager"
        cells = " | ".join(f"{ms[(name, size)]:.1f}" for size in (1, 8)
                           for name in ("eager", "engine", "fp32", "default", "best"))
        print(f"| {net_type} | {cells} | {chosen} | {ms[('fp32', 1)] / ms[('default', 1)]:.2f}x | "
              f"{load_average():.1f} |", flush=True)


def trained_model(trained_work: Path) -> Tuple[Path, Path, Path]:
    """(data root, search data root, checkpoint) of the accuracy table's model, trained when missing."""
    data, search = trained_work / "shapes-320x240", trained_work / "shapes-320x240-search"
    if not (data / "labels.txt").exists():
        generate_voc_dataset(data, num_images=400, num_test=200, seed=2026, width=320, height=240)
    if not (search / "labels.txt").exists():
        generate_voc_dataset(search, num_images=0, num_test=200, seed=2027, width=320, height=240)
    folder = trained_work / TRAINED_NET
    checkpoint = folder / "last.pth"
    if not checkpoint.exists():
        from vision.cli.train_ssd import main as train_main  # start-up time: only when the model is missing

        code = train_main(["--datasets", str(data), "--net", TRAINED_NET, "--checkpoint_folder", str(folder),
                           *TRAINED_FLAGS])
        if code != 0:
            raise SystemExit(f"{TRAINED_NET}: training failed with exit status {code}")
    return data, search, checkpoint


def accuracy_table(repeats: int, trained_work: Path, calibration_count: int) -> None:
    data, search_root, checkpoint = trained_model(trained_work)
    test_set, class_names = build_dataset("voc", [str(data)], is_test=True)
    search_set, _ = build_dataset("voc", [str(search_root)], is_test=True)
    net = create_net(TRAINED_NET, len(class_names), is_test=True)
    net.load(str(checkpoint))
    folder = trained_work / "int8"
    folder.mkdir(exist_ok=True)
    float_path = folder / f"{TRAINED_NET}.onnx"
    export_onnx(net.eval(), TRAINED_NET, class_names, float_path, dynamic_batch=True)
    all_files = choose_calibration_images(data / "JPEGImages", 400, seed=0)
    files = all_files[:calibration_count]
    picture = read_rgb(files[0])
    float_map = mean_ap(str(float_path), test_set, class_names)
    float_search_map = mean_ap(str(float_path), search_set, class_names)
    search_images = [search_set.get_image(index) for index in range(16)]
    rows = []  # (strategy, path, seconds, kept)
    with tempfile.TemporaryDirectory(prefix="ssd-int8-accuracy-") as work:
        prepared = {count: PreparedModel(float_path, all_files[:count], Path(work) / f"prepared-{count}")
                    for count in sorted({50, calibration_count, len(all_files)})}

        def variant(name: str, settings: Int8Settings, count: int = calibration_count, kept=()):
            path = Path(work) / f"{len(rows)}.onnx"
            start = time.perf_counter()
            quantize_onnx(float_path, path, all_files[:count], settings=settings, prepared=prepared[count])
            rows.append((name, path, time.perf_counter() - start, kept))

        variant(f"default: minmax, {calibration_count} images, per channel, U8S8, heads float32", Int8Settings())
        variant("heads INT8 too", Int8Settings(heads="int8"))
        variant("per-tensor weights", Int8Settings(per_channel=False))
        variant("reduce_range (7-bit weights)", Int8Settings(reduce_range=True))
        variant("U8U8 (uint8 weights)", Int8Settings(weights="uint8"))
        variant("QOperator", Int8Settings(quant_format="qoperator"))
        variant("depthwise convolutions float32", Int8Settings(float_depthwise=True))
        variant("minmax, 50 images", Int8Settings(), count=50)
        variant(f"minmax, {len(all_files)} images", Int8Settings(), count=len(all_files))
        variant("entropy", Int8Settings(method="entropy"))
        variant("percentile", Int8Settings(method="percentile"))
        within = map_within(search_set, class_names, float_search_map, 0.01)
        for label, base, accept in (("validation mAP within 0.01 (search set)", Int8Settings(), within),
                                    ("no labels: output error on 16 calibration images", Int8Settings(), None),
                                    ("heads INT8 too, validation mAP within 0.01 (search set)",
                                     Int8Settings(heads="int8"), within)):
            images = search_images if accept is not None else [read_rgb(path) for path in files[:16]]
            start = time.perf_counter()
            result = find_float_layers(prepared[calibration_count], base, images, accept=accept,
                                       folder=str(Path(work) / f"search-{len(rows)}"))
            search_seconds = time.perf_counter() - start
            variant(f"sensitivity pass, {label}", replace(base, keep_float=result.keep_float),
                    kept=result.keep_float)
            rows[-1] = rows[-1][:2] + (search_seconds + rows[-1][2], result.keep_float)
            print(f"{result.describe()}; steps (kept, output error, search mAP): {list(result.steps)}", flush=True)
        latency_runners = {"float32": session_runner(float_path),
                           **{name: session_runner(path) for name, path, _, _ in rows}}
        batch = OnnxPredictor(str(float_path)).preprocess([picture])
        ms = interleaved_ms(latency_runners, {1: batch}, repeats)
        maps = {name: mean_ap(str(path), test_set, class_names) for name, path, _, _ in rows}
    header(f"{TRAINED_NET} trained 20 epochs on 400 synthetic 320x240 images; VOC07 mAP on its {len(test_set)} "
           f"test images; batch-1 forward ms, median of {repeats} rounds in turns")
    print("| strategy | INT8 mAP | minus float32 | ms (b1) | vs float32 (b1) | quantization s | kept in float32 | "
          "load |\n|---|---|---|---|---|---|---|---|")
    print(f"| float32 | {float_map:.3f} | | {ms[('float32', 1)]:.1f} | 1.00x | | | {load_average():.1f} |")
    for name, _, seconds, kept in rows:
        print(f"| {name} | {maps[name]:.3f} | {maps[name] - float_map:+.3f} | {ms[(name, 1)]:.1f} | "
              f"{ms[('float32', 1)] / ms[(name, 1)]:.2f}x | {seconds:.0f} | {', '.join(kept) or '-'} | "
              f"{load_average():.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["options", "speed", "accuracy"],
                        choices=["options", "speed", "accuracy"])
    parser.add_argument("--nets", nargs="+", default=list(NET_TYPES), choices=list(NET_TYPES))
    parser.add_argument("--option_nets", nargs="+", default=["mb1-ssd"], choices=list(NET_TYPES))
    parser.add_argument("--work", default="/tmp/ssd-deploy-bench")
    parser.add_argument("--trained_work", default="/tmp/ssd-int8-bench",
                        help="the accuracy table's data and trained model (trained once, then reused)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calibration_images", type=int, default=200)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    best = Int8Settings()
    if "options" in args.tables:
        best = options_table(args.option_nets, args.repeats, work)
    if "speed" in args.tables:
        speed_table(args.nets, args.repeats, work, best)
    if "accuracy" in args.tables:
        accuracy_table(args.repeats, Path(args.trained_work), args.calibration_images)


if __name__ == "__main__":
    main()
