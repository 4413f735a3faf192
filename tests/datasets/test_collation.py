import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vision.datasets import VOCDataset, collate_training_batch, worker_init_fn
from vision.transforms import TrainAugmentation

NUM_PRIORS = 16


def stand_in_match_prior(boxes, labels):
    """Stands in for vision.ssd.ssd.MatchPrior: (n, 4) 0..1 boxes -> (P, 4) float32, (P,) int64;
    prior k takes box k (cycling), background when there is no box."""
    boxes, labels = torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)
    if len(boxes) == 0:
        return torch.zeros(NUM_PRIORS, 4), torch.zeros(NUM_PRIORS, dtype=torch.int64)
    pick = torch.arange(NUM_PRIORS) % len(boxes)
    return boxes[pick], labels[pick]


def sample(value=0.0):
    return torch.full((3, 8, 8), value), np.zeros((NUM_PRIORS, 4), np.float32), np.ones(NUM_PRIORS, np.int64)


def test_training_collate_drops_and_counts_bad_samples():
    images, locations, labels, num_skipped = collate_training_batch([sample(1.0), None, sample(2.0), None])
    assert num_skipped == 2
    assert tuple(images.shape) == (2, 3, 8, 8) and images.dtype == torch.float32
    assert tuple(locations.shape) == (2, NUM_PRIORS, 4) and locations.dtype == torch.float32
    assert tuple(labels.shape) == (2, NUM_PRIORS) and labels.dtype == torch.int64
    assert images[:, 0, 0, 0].tolist() == [1.0, 2.0]


def test_training_collate_of_only_bad_samples_is_an_empty_batch():
    images, locations, labels, num_skipped = collate_training_batch([None, None])
    assert num_skipped == 2 and images.shape[0] == locations.shape[0] == labels.shape[0] == 0


def test_training_collate_names_the_sample_with_a_different_size():
    odd = (torch.zeros(3, 9, 9),) + sample()[1:]
    with pytest.raises(ValueError, match="sample 2 has image of shape"):
        collate_training_batch([sample(), None, odd])


def test_data_loader_over_shapes_with_empty_images_bad_files_and_workers(shapes_root, tmp_path):
    """The whole data path: synthetic root (some images without objects, one corrupt JPEG), TrainAugmentation,
    a MatchPrior stand-in, two worker processes, the training collate."""
    import shutil
    root = tmp_path / "shapes"
    shutil.copytree(shapes_root, root)
    (root / "JPEGImages" / "000001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    dataset = VOCDataset(root, transform=TrainAugmentation(64, 127, 128.0), target_transform=stand_in_match_prior)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_training_batch,
                        worker_init_fn=worker_init_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    assert sum(batch[3] for batch in batches) == 1
    assert sum(batch[0].shape[0] for batch in batches) == len(dataset) - 1
    for images, locations, labels, _ in batches:
        assert tuple(images.shape[1:]) == (3, 64, 64)
        assert torch.isfinite(images).all() and torch.isfinite(locations).all()
        assert ((locations >= 0) & (locations <= 1)).all()
    assert any((labels == 0).all(dim=1).any() for _, _, labels, _ in batches)  # an image without objects


class _Probe(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return torch.get_num_threads(), float(np.random.random()), torch.utils.data.get_worker_info().id


def _first(items):
    return items[0]


def test_worker_init_fn_uses_one_torch_thread_and_seeds_numpy_differently_per_worker():
    loader = DataLoader(_Probe(), batch_size=1, num_workers=2, worker_init_fn=worker_init_fn,
                        collate_fn=_first)
    results = list(loader)
    assert [threads for threads, _, _ in results] == [1, 1]
    assert sorted(worker for _, _, worker in results) == [0, 1]
    assert results[0][1] != results[1][1]


def test_real_match_prior_batches_images_without_objects_without_nan(shapes_root):
    """The training data path as train_ssd.py builds it: shapes (a quarter without objects), the MobileNet
    recipe at 300x300, vision.ssd.ssd.MatchPrior in the dataset, the training collate."""
    from vision.ssd.config import mobilenetv1_ssd_config as config
    from vision.ssd.ssd import MatchPrior

    np.random.seed(0)
    target_transform = MatchPrior(config.priors, config.center_variance, config.size_variance, 0.5)
    transform = TrainAugmentation(config.image_size, config.image_mean, config.image_std)
    dataset = VOCDataset(shapes_root, transform=transform, target_transform=target_transform)
    images, locations, labels, num_skipped = collate_training_batch([dataset[i] for i in range(len(dataset))])
    num_priors = config.priors.shape[0]
    assert num_skipped == 0 and tuple(images.shape) == (len(dataset), 3, 300, 300)
    assert tuple(locations.shape) == (len(dataset), num_priors, 4) and tuple(labels.shape) == (len(dataset), num_priors)
    assert torch.isfinite(images).all() and torch.isfinite(locations).all()
    empty_images = [i for i in range(len(dataset)) if len(dataset.get_annotation(i)[1][0]) == 0]
    assert len(empty_images) == 3 and (labels[empty_images] == 0).all()
    # The crop always keeps an object, and MatchPrior gives every object its best prior.
    assert int((labels.max(dim=1).values > 0).sum()) == len(dataset) - 3


def test_workers_start_after_the_parent_used_opencv_threads():
    """cv2.setNumThreads in a forked worker could deadlock once the parent had used OpenCV's pool;
    worker_init_fn must not trigger that (this hung the suite when it did, about 1 run in 10)."""
    import cv2

    big = np.zeros((1500, 1500, 3), np.uint8)
    for _ in range(3):
        cv2.resize(big, (700, 700))
        cv2.cvtColor(big, cv2.COLOR_RGB2HSV)
    for _ in range(3):
        loader = DataLoader(_Probe(), batch_size=1, num_workers=2, worker_init_fn=worker_init_fn,
                            collate_fn=_first, timeout=30)
        assert len(list(loader)) == 2
