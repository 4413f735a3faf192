"""Predictor latency per image, split into preprocess / forward / postprocess, for every net type.

Weights: the deterministic ones of vision/utils/reference_weights.py; image: the VOC photo 000138.jpg
(replicated for batch 8; a generated 500x332 picture without the shared folder, see benchmarks/inputs.py). Prints a
markdown table; ``--original`` adds the original toolkit's one-image-at-a-time predictor (per-class Python NMS loop) on
the same machine as the baseline.

    python benchmarks/bench_predict.py [--nets mb1-ssd mb2-ssd-lite] [--repeats 5] [--original]
    python benchmarks/bench_predict.py --summary   # input, parameters, priors, CPU batch-1 latency per type
    python benchmarks/bench_predict.py --engines [--compile]   # forward pass per CPU engine, build cost, break-even
    python benchmarks/bench_predict.py --against_original      # whole predictor at 0.01: original, eager, engine
    python benchmarks/bench_predict.py --eval_process          # eval_ssd.py on 200 images against the original's loop

``--engines`` is the measurement behind ``vision.ssd.engines.FASTEST_ENGINE`` and ``MIN_IMAGES``: per net
type, the forward pass (ms per image, batch 1 and 8) of eager PyTorch (the BatchNorm-folded net the
predictor runs), ONNX Runtime, frozen TorchScript and (``--compile``) torch.compile, timed in turns; each
engine's first build (an empty cache) and, for ONNX Runtime, a build from the cache; the images after which
the fastest engine's first build has paid for itself at batch 1; its largest score difference from eager.
``--against_original`` times the whole predictor (preprocess, forward, NMS) on one image at prob_threshold
0.01 (the original's evaluation setting) against the original's ``predictor.predict`` loop, eager and on
the engine ``engine="auto"`` picks. ``--eval_process`` times ``eval_ssd.py`` as a whole process (start-up,
imports, loading, prediction, scoring, files) on 200 synthetic 500x375 images against the original's
evaluation loop in this process (``get_image`` and ``predict`` per image; neither its start-up nor its
scoring counted). Every row prints the load average beside it.

``--summary`` sets the original's net types beside the ones on torchvision's architectures
(ssdlite320-mb3-large, ssd300-vgg16): each at its native input and its own postprocessing defaults
(score threshold: the original's 0.01 vs torchvision's 0.001 / 0.01), and at threshold 0.4.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inputs import benchmark_photo  # noqa: E402
from benchmarks.original_predictor import original_predict  # noqa: E402
from benchmarks.timing import cpu_model, interleaved_ms, load_average, versions_header  # noqa: E402
from vision.datasets import build_dataset  # noqa: E402
from vision.datasets.synthetic import generate_voc_dataset  # noqa: E402
from vision.ssd import engines  # noqa: E402
from vision.ssd.registry import NET_TYPES, create_net, create_predictor  # noqa: E402
from vision.utils.atomic import save_torch  # noqa: E402
from vision.utils.reference_weights import load_deterministic_weights  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_stages(predictor, images, prob_threshold: float, repeats: int) -> dict:
    """Median seconds per image of each stage over ``repeats`` runs (after one warm-up)."""
    stages = {"preprocess": [], "forward": [], "postprocess": []}
    sizes = [image.shape[:2] for image in images]
    detections = 0
    for run in range(repeats + 1):
        _sync(predictor.device)
        start = time.perf_counter()
        batch = predictor.preprocess(images)
        _sync(predictor.device)
        after_pre = time.perf_counter()
        scores, boxes = predictor.forward(batch)
        _sync(predictor.device)
        after_forward = time.perf_counter()
        results = predictor.postprocess(scores, boxes, sizes, prob_threshold=prob_threshold)
        _sync(predictor.device)
        end = time.perf_counter()
        if run == 0:
            continue
        stages["preprocess"].append((after_pre - start) / len(images))
        stages["forward"].append((after_forward - after_pre) / len(images))
        stages["postprocess"].append((end - after_forward) / len(images))
        detections = sum(len(r[1]) for r in results) / len(images)
    timings = {name: statistics.median(values) for name, values in stages.items()}
    timings["total"] = sum(timings.values())
    timings["detections"] = detections
    return timings


def time_original(predictor, image, prob_threshold: float, repeats: int) -> float:
    original_predict(predictor, image, prob_threshold=prob_threshold)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        original_predict(predictor, image, prob_threshold=prob_threshold)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def print_summary(net_types, num_classes: int, repeats: int) -> None:
    """One row per net type: input size, parameters, priors, predictor ms/img on the CPU at batch 1, at the
    type's default score threshold and at 0.4. Runs are interleaved (one image per type in turn, ``repeats``
    rounds), so a load that varies during the run weighs on every type alike; the last column is the
    ratio to the first type's latency at 0.4."""
    photo_name, image = benchmark_photo()
    print(f"torch {torch.__version__}; {cpu_model()}, {torch.get_num_threads()} "
          f"threads; image {photo_name} {image.shape[1]}x{image.shape[0]}; {num_classes} classes\n")
    predictors = {}
    for net_type in net_types:
        net = load_deterministic_weights(create_net(net_type, num_classes, is_test=True))
        predictors[net_type] = create_predictor(net_type, net.to("cpu"))
    runs = {(net_type, mode): [] for net_type in net_types for mode in ("default", "0.4")}
    for round_index in range(repeats + 1):
        for net_type, predictor in predictors.items():
            for mode, threshold in (("default", predictor.filter_threshold), ("0.4", 0.4)):
                start = time.perf_counter()
                predictor.predict(image, prob_threshold=threshold)
                if round_index:  # the first round warms up
                    runs[(net_type, mode)].append(time.perf_counter() - start)
    print("| net | input | parameters (M) | priors | default score threshold | ms/img at it | ms/img at 0.4 | "
          f"vs {net_types[0]} |")
    print("|---|---|---|---|---|---|---|---|")
    reference = statistics.median(runs[(net_types[0], "0.4")])
    for net_type, predictor in predictors.items():
        net = predictor.net
        at_default, at_04 = (statistics.median(runs[(net_type, mode)]) for mode in ("default", "0.4"))
        parameters = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"| {net_type} | {net.config.size_text} | {parameters:.2f} | {net.priors.shape[0]} | "
              f"{predictor.filter_threshold} | {at_default * 1e3:.1f} | {at_04 * 1e3:.1f} | {at_04 / reference:.2f}x |")


ORIGINAL_NET_TYPES = ("vgg16-ssd", "mb1-ssd", "mb1-ssd-lite", "mb2-ssd-lite", "mb3-large-ssd-lite",
                      "mb3-small-ssd-lite", "sq-ssd-lite")


def deterministic_net(net_type: str, num_classes: int = 21):
    return load_deterministic_weights(create_net(net_type, num_classes, is_test=True)).eval()


def print_engines(net_types, repeats: int, candidates, work: Path) -> None:
    """The ``--engines`` table (module docstring)."""
    photo_name, image = benchmark_photo()
    print(f"{versions_header()}; image {photo_name}; forward pass only, ms per image, median of {repeats} rounds "
          "taken in turns; deterministic weights, 21 classes\n")
    columns = " | ".join(f"{name} ms" for name in ("eager", *candidates))
    print(f"| net | batch | {columns} | fastest | first build s ({', '.join(candidates)}) | ONNX Runtime from the "
          "cache s | break-even images | largest score difference | load |")
    print("|" + "---|" * (9 + len(candidates)))
    for net_type in net_types:
        net = deterministic_net(net_type)
        eager = create_predictor(net_type, net, engine="eager")
        batches = {size: eager.preprocess([image] * size) for size in (1, 8)}
        runners = {"eager": eager.forward}
        cold, differences = {}, {}
        warm = float("nan")
        for name in candidates:
            folder = work / f"cache-{net_type}-{time.time_ns()}"
            runners[name], build = engines.build_engine(name, net, net_type, str(folder))
            cold[name] = build.seconds
            if name == "onnxruntime":
                warm = engines.build_engine(name, net, net_type, str(folder))[1].seconds
            with torch.no_grad():
                differences[name] = (runners[name](batches[8])[0] - eager.forward(batches[8])[0]).abs().max().item()
        medians = interleaved_ms(runners, batches, repeats)
        for size in batches:
            ms = {name: medians[(name, size)] for name in runners}
            fastest = min(ms, key=ms.get)
            build_text = " / ".join(f"{cold[name]:.1f}" for name in candidates)
            saving = ms["eager"] - ms[fastest]
            break_even = f"{cold[fastest] / (saving / 1e3):.0f}" if fastest != "eager" and saving > 0 else "-"
            difference = f"{differences[fastest]:.1e}" if fastest != "eager" else "0"
            print(f"| {net_type} | {size} | {' | '.join(f'{ms[name]:.1f}' for name in runners)} | {fastest} | "
                  f"{build_text} | {warm:.2f} | {break_even if size == 1 else ''} | {difference} | "
                  f"{load_average():.1f} |", flush=True)


def print_against_original(net_types, repeats: int, threshold: float = 0.01) -> None:
    """The ``--against_original`` table (module docstring)."""
    photo_name, image = benchmark_photo()
    print(f"{versions_header()}; image {photo_name}; whole predictor (preprocess, forward, NMS) on one image at "
          f"prob_threshold {threshold}, ms, median of {repeats} rounds taken in turns; deterministic weights, "
          "21 classes\n")
    print("| net | original's predict ms | eager ms | engine | engine ms | eager vs original | engine vs original | "
          "detections | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for net_type in net_types:
        net = deterministic_net(net_type)
        eager = create_predictor(net_type, net, engine="eager")
        fast = create_predictor(net_type, net)
        fast.expect_images(None)
        runs = {"original": lambda: original_predict(eager, image, prob_threshold=threshold),
                "eager": lambda: eager.predict(image, prob_threshold=threshold),
                "engine": lambda: fast.predict(image, prob_threshold=threshold)}
        times = {name: [] for name in runs}
        for run in runs.values():
            run()  # warm-up; builds the engine
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        ms = {name: statistics.median(values) * 1e3 for name, values in times.items()}
        engine_name = fast.last_engine_build.engine if fast.last_engine_build else "eager"
        detections = len(eager.predict(image, prob_threshold=threshold)[1])
        note = " (the original cannot run it: 2454 predictions for 2568 priors)" if net_type == "sq-ssd-lite" else ""
        print(f"| {net_type}{note} | {ms['original']:.0f} | {ms['eager']:.1f} | {engine_name} | {ms['engine']:.1f} | "
              f"{ms['original'] / ms['eager']:.2f}x | {ms['original'] / ms['engine']:.2f}x | {detections} | "
              f"{load_average():.1f} |", flush=True)


def print_eval_process(net_type: str, num_images: int, repeats: int, work: Path) -> None:
    """The ``--eval_process`` table (module docstring)."""
    data = work / f"eval-{num_images}"
    if not (data / "labels.txt").exists():
        generate_voc_dataset(data, num_images=0, num_test=num_images, seed=11, width=500, height=375)
    dataset, class_names = build_dataset("voc", [str(data)], is_test=True)
    weights = work / f"{net_type}-{len(class_names)}-classes.pth"
    if not weights.exists():
        save_torch(deterministic_net(net_type, len(class_names)).state_dict(), weights)
    cache = work / f"eval-engine-cache-{time.time_ns()}"
    root = Path(__file__).resolve().parents[1]

    def original_loop():
        net = create_net(net_type, len(class_names), is_test=True)
        net.load(str(weights))
        predictor = create_predictor(net_type, net.eval(), engine="eager")
        for index in range(len(dataset)):
            original_predict(predictor, dataset.get_image(index), prob_threshold=0.01)

    def eval_process(engine: str):
        def run():
            command = [sys.executable, str(root / "eval_ssd.py"), "--net", net_type, "--trained_model", str(weights),
                       "--dataset", str(data), "--use_cuda", "false", "--eval_dir", str(work / f"eval-out-{engine}"),
                       "--engine", engine]
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, "SSD_ENGINE_CACHE": str(cache)})
        return run

    runs = {"the original's loop: load + predict, in this process": original_loop,
            "eval_ssd.py --engine auto, first run (exports the engine)": eval_process("auto"),
            "eval_ssd.py --engine auto, later runs (engine from the cache)": eval_process("auto"),
            "eval_ssd.py --engine eager": eval_process("eager")}
    times = {name: [] for name in runs}
    loads = {name: [] for name in runs}
    for round_index in range(repeats):
        for name, run in runs.items():
            if "first run" in name and round_index:
                continue
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            loads[name].append(load_average())
    print(f"{versions_header()}; {net_type}, deterministic weights, {len(class_names)} classes; {len(dataset)} "
          f"synthetic 500x375 images at prob_threshold 0.01; wall seconds, median of {repeats} rounds taken in turns\n")
    print("| what | seconds | images/s | vs the original's loop | load |\n|---|---|---|---|---|")
    reference = statistics.median(times["the original's loop: load + predict, in this process"])
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"| {name} | {seconds:.1f} | {len(dataset) / seconds:.1f} | {reference / seconds:.2f}x | "
              f"{statistics.median(loads[name]):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", default=list(NET_TYPES), choices=list(NET_TYPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.01, 0.4])
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--original", action="store_true", help="also time the original's predictor (batch 1)")
    parser.add_argument("--summary", action="store_true",
                        help="input, parameters, priors and CPU batch-1 latency of each net type at its defaults")
    parser.add_argument("--classes", type=int, default=21, help="with --summary: class count of the nets")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--engine", default="auto", choices=engines.ENGINES,
                        help="the predictor's engine in the stage table (built before the timing)")
    parser.add_argument("--engines", action="store_true", help="forward pass per CPU engine (module docstring)")
    parser.add_argument("--compile", action="store_true", help="with --engines: torch.compile too (tens of s a net)")
    parser.add_argument("--against_original", action="store_true",
                        help="whole predictor at 0.01 against the original's loop, eager and on the engine")
    parser.add_argument("--eval_process", action="store_true",
                        help="eval_ssd.py as a whole process against the original's evaluation loop")
    parser.add_argument("--eval_images", type=int, default=200, help="with --eval_process: test images")
    parser.add_argument("--eval_net", default="mb1-ssd", choices=list(NET_TYPES), help="with --eval_process")
    parser.add_argument("--work", default="/tmp/ssd-predict-bench", help="generated data, weights, engine caches")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.summary:
        print_summary(args.nets, args.classes, args.repeats)
        return
    if args.engines:
        candidates = ["onnxruntime", "torchscript"] + (["compile"] if args.compile else [])
        print_engines(args.nets, args.repeats, candidates, work)
        return
    if args.against_original:
        print_against_original([name for name in args.nets if name in ORIGINAL_NET_TYPES], args.repeats)
        return
    if args.eval_process:
        print_eval_process(args.eval_net, args.eval_images, args.repeats, work)
        return

    photo_name, image = benchmark_photo()
    device_names = {"cpu": f"{cpu_model()}, {torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        device_names["cuda"] = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}; image {photo_name} {image.shape[1]}x{image.shape[0]}; "
          f"devices: {', '.join(f'{k}={v}' for k, v in device_names.items() if k in args.devices)}\n")
    header = ("| net | device | threshold | batch | preprocess ms | forward ms | postprocess ms | total ms/img | "
              "detections/img |")
    if args.original:
        header += " original ms/img | speed-up |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for net_type in args.nets:
        for device_name in args.devices:
            device = torch.device(device_name)
            net = load_deterministic_weights(create_net(net_type, 21, is_test=True))
            predictor = create_predictor(net_type, net.to(device), engine=args.engine)
            predictor.expect_images(None)  # an engine is built by the warm-up run, not inside the timing
            for threshold in args.thresholds:
                for batch_size in args.batch_sizes:
                    timings = time_stages(predictor, [image] * batch_size, threshold, args.repeats)
                    row = (f"| {net_type} | {device_name} | {threshold} | {batch_size} | "
                           f"{timings['preprocess'] * 1e3:.1f} | {timings['forward'] * 1e3:.1f} | "
                           f"{timings['postprocess'] * 1e3:.1f} | {timings['total'] * 1e3:.1f} | "
                           f"{timings['detections']:.0f} |")
                    if args.original:
                        if batch_size == 1:
                            original = time_original(predictor, image, threshold, max(2, args.repeats // 2))
                            row += f" {original * 1e3:.0f} | {original / timings['total']:.1f}x |"
                        else:
                            row += " | |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()
