"""The mb3 factories take the original's arguments; ``use_batch_norm`` and ``onnx_compatible`` change nothing."""
import inspect

import pytest
import torch

from vision.ssd.mobilenetv3_ssd_lite import (
    create_mobilenetv3_large_ssd_lite,
    create_mobilenetv3_small_ssd_lite,
    create_mobilenetv3_ssd_lite_predictor,
)

# The original's signatures, qfgaohao/pytorch-ssd vision/ssd/mobilenetv3_ssd_lite.py.
ORIGINAL_FACTORY_PARAMETERS = ["num_classes", "width_mult", "use_batch_norm", "onnx_compatible", "is_test"]
ORIGINAL_PREDICTOR_PARAMETERS = ["net", "candidate_size", "nms_method", "sigma", "device"]
FACTORIES = [create_mobilenetv3_large_ssd_lite, create_mobilenetv3_small_ssd_lite]


def _layers(net: torch.nn.Module) -> list:
    return [(name, type(module).__name__) for name, module in net.named_modules()]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factory_signature_is_the_originals(factory):
    assert list(inspect.signature(factory).parameters) == ORIGINAL_FACTORY_PARAMETERS
    assert list(inspect.signature(create_mobilenetv3_ssd_lite_predictor).parameters) == ORIGINAL_PREDICTOR_PARAMETERS


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_use_batch_norm_and_onnx_compatible_are_accepted_and_ignored(factory):
    torch.manual_seed(0)
    plain = factory(num_classes=4, width_mult=1.0, use_batch_norm=True, onnx_compatible=False, is_test=True)
    torch.manual_seed(0)
    flagged = factory(num_classes=4, width_mult=1.0, use_batch_norm=False, onnx_compatible=True, is_test=True)
    assert _layers(flagged) == _layers(plain)
    assert {n: t.shape for n, t in flagged.state_dict().items()} == {n: t.shape for n, t in plain.state_dict().items()}
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in flagged.modules()) > 0
    flagged.load_state_dict(plain.state_dict())
    image = torch.rand(1, 3, 300, 300)
    with torch.no_grad():
        for ours, theirs in zip(flagged.eval()(image), plain.eval()(image)):
            torch.testing.assert_close(ours, theirs)
    predictor = create_mobilenetv3_ssd_lite_predictor(flagged, candidate_size=50, nms_method="hard", sigma=0.5,
                                                      device=torch.device("cpu"))
    boxes, labels, probs = predictor.predict(torch.randint(0, 255, (120, 160, 3), dtype=torch.uint8).numpy(), 5, 0.0)
    assert boxes.shape == (len(labels), 4) and len(probs) == len(labels) <= 3 * 5  # top_k per class
