"""``make demo``: the whole pipeline on data it generates, with nothing to download.

1. generate a small synthetic VOC-format data set of shapes;
2. train the fastest net on it for a few minutes on the CPU (``train_ssd.py``);
3. evaluate it on the test split (``eval_ssd.py``);
4. detect objects in a test image and in two photos (``run_ssd_example.py``);
5. export it to ONNX and check the file in ONNX Runtime and OpenCV DNN (``convert_to_caffe2_models.py``);
6. time the predictor on the photos.

The photos of steps 4 and 6 are two more generated test images: the demo needs nothing beside the
repository and downloads nothing. ``--last_step`` stops early (a quick check).
Every output goes under ``--output`` (default ``demo_output/``); the end of the run lists where.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import cv2
import torch

from vision.datasets.synthetic import generate_voc_dataset
from vision.ssd.registry import create_net, create_predictor
from vision.utils.labels import read_label_file

NET = "mb1-ssd-lite"
LAST_STEP = 6


def demo_photos(data: Path, test_ids: List[str]) -> List[Path]:
    """The photos of steps 4 and 6: the 2nd and 3rd test images of the generated data set at ``data``."""
    return [data / "JPEGImages" / f"{image_id}.jpg" for image_id in test_ids[1:3]]


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run_cli(module: str, argv: List[str]) -> int:
    """Run a script's ``main(argv)`` in this process, as ``python <script>.py argv`` would."""
    print("$ python " + module.rsplit(".", 1)[-1] + ".py " + " ".join(argv), flush=True)
    code = importlib.import_module(module).main(argv)
    if code:
        raise SystemExit(f"demo: {module} exited with status {code}")
    return code


def time_predictor(model: Path, labels: Path, images: List[Path]) -> None:
    class_names = read_label_file(labels)
    net = create_net(NET, len(class_names), is_test=True)
    net.load(str(model))
    predictor = create_predictor(NET, net)
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        predictor.predict(image)
        start = time.perf_counter()
        batch = predictor.preprocess([image])
        after_pre = time.perf_counter()
        scores, boxes = predictor.forward(batch)
        after_forward = time.perf_counter()
        boxes_out, labels_out, probs = predictor.postprocess(scores, boxes, [image.shape[:2]], prob_threshold=0.4)[0]
        end = time.perf_counter()
        print(f"{path.name} ({image.shape[1]}x{image.shape[0]}): {len(labels_out)} detections at 0.4; "
              f"preprocess {1e3 * (after_pre - start):.1f} ms, forward {1e3 * (after_forward - after_pre):.1f} ms, "
              f"postprocess {1e3 * (end - after_forward):.1f} ms")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output", help="folder for everything the demo writes")
    parser.add_argument("--num_images", type=int, default=320, help="synthetic trainval images")
    parser.add_argument("--num_epochs", type=int, default=4, help="training epochs (a few minutes on 2 CPU cores)")
    parser.add_argument("--last_step", type=int, default=LAST_STEP, choices=range(1, LAST_STEP + 1),
                        help="stop after this step (1: data, 2: training, 3: evaluation, 4: detection, 5: export)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    output = Path(args.output)
    data, checkpoints = output / "data", output / "checkpoints"
    eval_dir, detections = output / "eval", output / "detections"

    banner("1. synthetic VOC-format data")
    if not (data / "labels.txt").exists():
        summary = generate_voc_dataset(data, num_images=args.num_images, num_test=max(20, args.num_images // 8), seed=7,
                                       width=320, height=240)
        print(f"wrote {len(summary.trainval_ids)} trainval + {len(summary.test_ids)} test images with "
              f"{summary.num_objects} objects of classes {', '.join(summary.class_names)}")
    print(f"data set: {data}")
    if args.last_step == 1:
        return list_outputs(output)

    banner(f"2. train {NET} on the CPU")
    # Without augmentation: the synthetic test split comes from the training distribution, and a few
    # minutes of CPU training learn far more without it (see the README's learning check).
    run_cli("vision.cli.train_ssd", [
        "--dataset_type", "voc", "--datasets", str(data), "--validation_dataset", str(data), "--net", NET,
        "--batch_size", "8", "--num_epochs", str(args.num_epochs), "--lr", "0.03", "--scheduler", "cosine",
        "--no_augmentation",
        "--t_max", str(args.num_epochs), "--validation_epochs", str(args.num_epochs), "--num_workers", "2",
        "--checkpoint_folder", str(checkpoints), "--seed", "0", "--use_cuda", "false",
        "--overwrite",  # a second make demo trains again into its own folder
    ])
    model = max(checkpoints.glob(f"{NET}-Epoch-*.pth"), key=os.path.getmtime)
    labels = checkpoints / "labels.txt"
    if args.last_step == 2:
        return list_outputs(output)

    banner("3. evaluate on the test split")
    run_cli("vision.cli.eval_ssd", ["--net", NET, "--trained_model", str(model), "--dataset", str(data),
                                    "--label_file", str(labels), "--eval_dir", str(eval_dir), "--use_cuda", "false"])
    if args.last_step == 3:
        return list_outputs(output)

    test_ids = (data / "ImageSets" / "Main" / "test.txt").read_text().split()
    test_image = data / "JPEGImages" / f"{test_ids[0]}.jpg"
    photos = demo_photos(data, test_ids)
    example = importlib.util.find_spec("vision.cli.run_ssd_example")
    if example is not None:
        banner("4. detect objects in images")
        # A few minutes of training give modest scores: show what passes 0.25 rather than the default 0.4.
        run_cli("vision.cli.run_ssd_example", [NET, str(model), str(labels), str(test_image),
                                               "--prob_threshold", "0.25",
                                               "--output", str(detections / f"{test_image.stem}_ssd.jpg")])
        run_cli("vision.cli.run_ssd_example", [NET, str(model), str(labels), *map(str, photos),
                                               "--output", str(detections)])
    if args.last_step == 4:
        return list_outputs(output)
    if importlib.util.find_spec("vision.cli.convert_to_caffe2_models") is not None:
        banner("5. export to ONNX and check it")
        onnx_model = output / f"{NET}.onnx"
        run_cli("vision.cli.convert_to_caffe2_models", [NET, str(model), str(labels), "--output", str(onnx_model)])
        banner("5b. the exported model in ONNX Runtime (no PyTorch), and a graph with NMS built in")
        run_cli("vision.cli.run_ssd_example", [NET, str(onnx_model), str(labels), str(test_image), "--backend", "onnx",
                                               "--output", str(detections / f"{test_image.stem}_onnx.jpg"),
                                               "--json", str(output / "detections_onnx.json")])
        run_cli("vision.cli.convert_to_caffe2_models", [NET, str(model), str(labels), "--with_postprocess",
                                                        "--dynamic_batch", "--output", str(output / f"{NET}-nms.onnx")])
    if args.last_step == 5:
        return list_outputs(output)

    banner("6. predictor timings (CPU)")
    time_predictor(model, labels, photos)
    return list_outputs(output)


def list_outputs(output: Path) -> int:
    """Print where the demo's outputs under ``output`` are (those written so far); returns 0."""
    data, checkpoints = output / "data", output / "checkpoints"
    eval_dir, detections = output / "eval", output / "detections"
    models = sorted(checkpoints.glob(f"{NET}-Epoch-*.pth"), key=os.path.getmtime)
    model = models[-1] if models else checkpoints / f"{NET}-Epoch-*.pth"
    banner("where everything went")
    for label, path in [("synthetic data set", data), ("checkpoints and labels.txt", checkpoints),
                        ("trained model", model), ("evaluation (det_test_*.txt, summary.json, PR plots)", eval_dir),
                        ("images with detections", detections),
                        ("ONNX model (+ .json, .labels.txt)", output / f"{NET}.onnx"),
                        ("ONNX model with NMS in the graph", output / f"{NET}-nms.onnx"),
                        ("detections from ONNX Runtime (JSON)", output / "detections_onnx.json")]:
        if Path(path).exists():
            print(f"{label}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
