"""The batched device recipe: given the same draws, the CPU recipe's boxes exactly and its images within
interpolation (mean absolute difference below 2 gray levels); decoding of JPEG and PNG batches."""
import cv2
import numpy as np
import pytest
import torch

from vision.datasets.synthetic import render_image
from vision.ssd.registry import net_config
from vision.training.gpu_augmentation import (
    BatchedTrainAugmentation,
    PhotometricBatch,
    decode_images,
    photometric_batch,
    windows_and_flips,
)
from vision.transforms import TrainAugmentation
from vision.transforms.augmentation import PhotometricDistort, apply_photometric
from vision.transforms.one_pass import sample_parameters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def config():
    return net_config("mb1-ssd-lite", None)


@pytest.fixture(scope="module")
def photos():
    """Two photos of different sizes with their boxes."""
    result = []
    for seed, (width, height) in enumerate([(200, 150), (160, 210)]):
        image, objects = render_image((3, seed), width, height, 3)
        result.append((image, np.array([o.box for o in objects], np.float32), np.arange(1, len(objects) + 1)))
    return result


def as_tensor(image):
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


def recipe_for(config, colour: bool):
    recipe = TrainAugmentation(config.image_size, config.image_mean, config.image_std)
    if not colour:
        for step in recipe.steps:
            if isinstance(step, PhotometricDistort):
                step.p = 0.0
    return recipe


@pytest.mark.parametrize("colour", [False, True])
def test_batched_recipe_matches_the_cpu_recipe_given_the_same_draws(config, photos, colour):
    recipe = recipe_for(config, colour)
    augmentation = BatchedTrainAugmentation(config, "cpu")
    for round_index in range(6):
        expected, parameters = [], []
        for index, (image, boxes, labels) in enumerate(photos * 2):
            seed = 100 * round_index + index
            np.random.seed(seed)
            expected.append(recipe(image, boxes, labels))
            np.random.seed(seed)
            parameters.append(sample_parameters(recipe, image.shape[1], image.shape[0], boxes, labels))
        windows, flips = windows_and_flips(parameters)
        images = augmentation.images([as_tensor(image) for image, _, _ in photos * 2], windows, flips,
                                     PhotometricBatch.stack([p.photometric for p in parameters]))
        assert images.shape == (4, 3, config.height, config.width)
        for index, ((expected_image, expected_boxes, expected_labels), drawn) in enumerate(zip(expected, parameters)):
            np.testing.assert_array_equal(drawn.boxes, expected_boxes)
            np.testing.assert_array_equal(drawn.labels, expected_labels)
            difference = float((images[index] - expected_image).abs().mean()) * config.image_std
            assert difference < 2.0, (round_index, index, difference)


def test_colour_steps_match_opencv_hsv_within_rounding():
    image = render_image((3, 0), 100, 80, 3)[0]
    np.random.seed(5)
    distort = PhotometricDistort(p=0.7)
    for _ in range(12):
        parameters = distort.sample()
        expected = apply_photometric(image, parameters).astype(np.float32)
        actual = photometric_batch(as_tensor(image)[None].float(), PhotometricBatch.stack([parameters]))[0]
        assert float(np.abs(actual.permute(1, 2, 0).numpy() - expected).mean()) < 2.0, parameters


def test_the_batch_goes_to_normalised_images_and_matched_priors(config, photos):
    recipe = recipe_for(config, True)
    augmentation = BatchedTrainAugmentation(config, "cpu")
    from vision.training.batched_matching import pad_ground_truth
    from vision.training.gpu_augmentation import EncodedBatch

    encoded, parameters = [], []
    for image, boxes, labels in photos:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        encoded.append(torch.from_numpy(data.reshape(-1)))
        parameters.append(sample_parameters(recipe, image.shape[1], image.shape[0], boxes, labels))
    windows, flips = windows_and_flips(parameters)
    batch = EncodedBatch(encoded, [True, True], torch.tensor([[200, 150], [160, 210]]), windows, flips,
                         PhotometricBatch.stack([p.photometric for p in parameters]),
                         *pad_ground_truth([p.boxes for p in parameters], [p.labels for p in parameters]), 0)
    images, locations, labels = augmentation(batch)
    assert images.shape == (2, 3, config.height, config.width) and images.dtype == torch.float32
    assert locations.shape == (2, config.num_priors, 4) and labels.shape == (2, config.num_priors)
    assert float(images.abs().max()) <= 255.0 / config.image_std + 1e-4
    for index, drawn in enumerate(parameters):
        assert (labels[index] > 0).sum() >= len(drawn.labels)  # every box keeps at least its best prior
    wrong = EncodedBatch(encoded, [True, True], torch.tensor([[201, 150], [160, 210]]), windows, flips,
                         batch.photometric, batch.boxes, batch.labels, batch.mask, 0)
    with pytest.raises(ValueError, match="sample 0: decoded 200x150 but its header says 201x150"):
        augmentation(wrong)


def test_jpeg_and_png_decode_to_the_same_pixels_as_opencv(photos):
    image = photos[0][0]
    _, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    _, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    decoded = decode_images([torch.from_numpy(jpeg.reshape(-1)), torch.from_numpy(png.reshape(-1))],
                            torch.device("cpu"), [True, False])
    np.testing.assert_array_equal(decoded[1].permute(1, 2, 0).numpy(), image)
    opencv = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded[0].permute(1, 2, 0).numpy().astype(int) - opencv).mean() < 1.0
