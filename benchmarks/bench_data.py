"""Augmentation throughput: this toolkit's numpy + OpenCV SSD pipeline against the same recipe built from
torchvision.transforms.v2, per step and end to end, on one CPU thread (as in a data-loading worker).

    python benchmarks/bench_data.py [--images DIR] [--size 300] [--repeats 3]

Images: the genuine VOC sample ($SSD_SHARED_DIR/datasets/voc2007-sample, by default ../shared beside the checkout) when
found, else synthetic VOC images generated into a temporary folder. Prints milliseconds per image and images/s.
"""
import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.inputs import voc_sample_root  # noqa: E402
from benchmarks.timing import cpu_model  # noqa: E402
from vision.datasets.voc_dataset import VOCDataset  # noqa: E402
from vision.transforms import augmentation as steps  # noqa: E402
from vision.transforms.pipelines import ResizeNormalize, TrainAugmentation, to_relative_boxes  # noqa: E402

MEAN, STD = 127.0, 128.0


def load_samples(root):
    dataset = VOCDataset(root, keep_difficult=True)
    return [dataset[i] for i in range(len(dataset))]


def time_per_image(function, samples, repeats):
    """Best of `repeats` passes over all samples, in ms per image."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for sample in samples:
            function(*sample)
        best = min(best, (time.perf_counter() - start) / len(samples))
    return best * 1000


def numpy_steps(size):
    to_tensor = ResizeNormalize(size, MEAN, STD)

    def finish(image, boxes, labels):
        height, width = image.shape[:2]
        to_relative_boxes(boxes, labels, width, height)
        return to_tensor(image)

    return {
        "photometric distort": steps.PhotometricDistort(),
        "expand (zoom out)": steps.Expand([MEAN] * 3),
        "IoU crop": steps.RandomIoUCrop(),
        "horizontal flip": steps.RandomHorizontalFlip(),
        "resize + normalise": finish,
        "whole pipeline": TrainAugmentation(size, MEAN, STD),
    }


def torchvision_steps(size):
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    def wrap(transform):
        def call(image, boxes, labels):
            tensor_image = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
            tensor_boxes = tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY",
                                                    canvas_size=image.shape[:2])
            return transform(tensor_image, {"boxes": tensor_boxes, "labels": torch.from_numpy(labels)})
        return call

    normalise = [v2.Resize((size, size), antialias=False), v2.ToDtype(torch.float32),
                 v2.Normalize([MEAN] * 3, [STD] * 3)]
    return {
        "photometric distort": wrap(v2.RandomPhotometricDistort()),
        "expand (zoom out)": wrap(v2.RandomZoomOut(fill=MEAN)),
        "IoU crop": wrap(v2.Compose([v2.RandomIoUCrop(), v2.SanitizeBoundingBoxes()])),
        "horizontal flip": wrap(v2.RandomHorizontalFlip()),
        "resize + normalise": wrap(v2.Compose(normalise)),
        "whole pipeline": wrap(v2.Compose([
            v2.RandomPhotometricDistort(), v2.RandomZoomOut(fill=MEAN), v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(), *normalise, v2.SanitizeBoundingBoxes()])),
    }


def time_decode(root, repeats):
    from torchvision.io import decode_jpeg, read_file
    paths = sorted((Path(root) / "JPEGImages").glob("*.jpg"))
    cv2_ms = time_per_image(lambda p: cv2.imread(str(p), cv2.IMREAD_COLOR_RGB), [(p,) for p in paths], repeats)
    tv_ms = time_per_image(lambda p: decode_jpeg(read_file(str(p))), [(p,) for p in paths], repeats)
    return cv2_ms, tv_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="a VOC root to take images from")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(0)
    torch.manual_seed(0)

    root = args.images or voc_sample_root()
    temporary = None
    if root is None:
        from vision.datasets.synthetic import generate_voc_dataset
        temporary = tempfile.TemporaryDirectory()
        root = temporary.name
        generate_voc_dataset(root, num_images=100, num_test=0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = load_samples(root)
    # v2.RandomIoUCrop loops forever on an image without boxes, so both pipelines get the same
    # images with at least one box.
    samples = [sample for sample in samples if len(sample[1])]
    sizes = sorted({s[0].shape[:2] for s in samples}, key=lambda hw: -hw[0] * hw[1])
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; torch "
          f"{torch.__version__}, OpenCV {cv2.__version__}; 1 thread; {len(samples)} images from {root} "
          f"(largest {sizes[0][1]}x{sizes[0][0]}); output {args.size}x{args.size}")

    ours, theirs = numpy_steps(args.size), torchvision_steps(args.size)
    print(f"{'step':22s} {'numpy+cv2 ms':>13s} {'v2 ms':>8s} {'numpy+cv2 img/s':>16s} {'v2 img/s':>9s}")
    for name in ours:
        ours_ms = time_per_image(ours[name], samples, args.repeats)
        theirs_ms = time_per_image(theirs[name], samples, args.repeats)
        print(f"{name:22s} {ours_ms:13.2f} {theirs_ms:8.2f} {1000 / ours_ms:16.0f} {1000 / theirs_ms:9.0f}")
    cv2_ms, tv_ms = time_decode(root, args.repeats)
    print(f"JPEG decode: cv2.imread {cv2_ms:.2f} ms, torchvision.io.decode_jpeg {tv_ms:.2f} ms per image")
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
