"""Faster CPU engines behind the predictor's forward pass: the same net run by ONNX Runtime, as a frozen
TorchScript graph, or compiled by ``torch.compile``.

    predictor = create_predictor("mb1-ssd", net)                   # engine="auto": the fastest measured for it
    predictor = create_predictor("mb1-ssd", net, engine="eager")   # plain PyTorch

An engine computes what the net with ``is_test=True`` computes, from the predictor's BatchNorm-folded copy
of it (:mod:`vision.ssd.fusion`): scores ``(N, P, C)`` softmaxed and boxes ``(N, P, 4)`` corner form 0..1;
preprocessing and NMS stay the predictor's. The user's net is never modified (the engines work on a copy).

- ``onnxruntime``: the copy exported by :func:`vision.ssd.onnx_graph.trace_to_onnx` (TorchScript exporter,
  free batch axis) and run in an ONNX Runtime CPU session. The export is cached in
  :func:`default_cache_folder`, named by a hash of everything the graph holds (the weights, the module
  tree, the input size, the priors and variances, the net type, torch's version), written atomically;
  a later run, or another predictor on the same weights, reuses it. The oldest files go once the folder
  holds more than :data:`CACHE_BYTES`.
- ``torchscript``: ``torch.jit.trace``, ``freeze``, ``optimize_for_inference``, in memory.
- ``compile``: ``torch.compile`` (inductor); its first call compiles.

``engine="auto"`` picks :data:`FASTEST_ENGINE` for the net type (``torchscript`` when onnxruntime is not
installed) and builds it only once it pays: when the predictor was told to expect, or has been asked for,
:data:`MIN_IMAGES` images. An engine runs on the CPU, for a net in eval mode with ``is_test=True``; any
other case runs eager. A build that fails (an unwritable cache folder, an export torch cannot make, a
missing optional package) leaves the predictor eager with one :class:`EngineWarning`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from vision.ssd.fusion import fuse_batchnorm
from vision.ssd.onnx_graph import INPUT_NAME, OUTPUT_NAMES, trace_to_onnx
from vision.utils.atomic import write_bytes

ENGINES = ("auto", "eager", "onnxruntime", "torchscript", "compile")
# The fastest engine of each net type on the CPU, by benchmarks/bench_predict.py --engines (docs/benchmarks.md).
FASTEST_ENGINE: Dict[str, str] = {
    "vgg16-ssd": "onnxruntime",
    "mb1-ssd": "onnxruntime",
    "mb1-ssd-lite": "onnxruntime",
    "mb2-ssd-lite": "onnxruntime",
    "mb3-large-ssd-lite": "onnxruntime",
    "mb3-small-ssd-lite": "onnxruntime",
    "sq-ssd-lite": "onnxruntime",
    "ssdlite320-mb3-large": "onnxruntime",
    "ssd300-vgg16": "onnxruntime",
}
DEFAULT_ENGINE = "onnxruntime"  # a net the registry does not name
FALLBACK_ENGINE = "torchscript"  # without onnxruntime: the second fastest in the same benchmark
# engine="auto" builds once this many images are expected or seen: about the most images a first build
# (export and session, an empty cache) takes to pay for itself at batch 1 in the same benchmark, so a
# single image, or a few dozen, never pays for it.
MIN_IMAGES = 100
CACHE_BYTES = 2 << 30
ONNX_OPSET = 13
CACHE_FORMAT = "ssd-engine-1"  # part of every cache key: a change of what the files hold starts afresh

log = logging.getLogger(__name__)
Runner = Callable[[Tensor], Tuple[Tensor, Tensor]]


class EngineWarning(UserWarning):
    """An engine could not be built; the predictor runs eager PyTorch instead."""


def check_engine(name: str) -> str:
    """``name`` when it is one of :data:`ENGINES`, else a ValueError listing them."""
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
    return name


def onnxruntime_available() -> bool:
    """Whether the onnxruntime package is installed (looked up, not imported)."""
    return importlib.util.find_spec("onnxruntime") is not None


def auto_engine(net_type: Optional[str]) -> str:
    """What ``engine="auto"`` runs for ``net_type`` (None: a net the registry does not name)."""
    fastest = FASTEST_ENGINE.get(net_type or "", DEFAULT_ENGINE)
    if fastest == "onnxruntime" and not onnxruntime_available():
        return FALLBACK_ENGINE
    return fastest


def pays_off(images_expected: float, images_seen: int, batch_size: int) -> bool:
    """Whether ``engine="auto"`` builds now, before a forward pass of ``batch_size`` images."""
    return max(images_expected, images_seen + batch_size) >= MIN_IMAGES


def default_cache_folder() -> str:
    """``$SSD_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/pytorch-ssd-toolkit/engines`` (``~/.cache`` without it)."""
    explicit = os.environ.get("SSD_ENGINE_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pytorch-ssd-toolkit", "engines")


def cache_key(net: nn.Module, net_type: Optional[str] = None) -> str:
    """A hex digest of everything the exported graph holds: the net type, the module tree (``repr``), every
    state_dict entry (name, dtype, shape, values), the priors, the input size, class count and variances,
    the export's opset, torch's version and :data:`CACHE_FORMAT`. Equal keys give equal graphs."""
    digest = hashlib.blake2b(digest_size=16)
    config = net.config
    header = (CACHE_FORMAT, torch.__version__, ONNX_OPSET, net_type or type(net).__qualname__, repr(net),
              tuple(config.image_size), int(net.num_classes), float(config.center_variance),
              float(config.size_variance))
    digest.update(repr(header).encode())
    tensors = list(net.state_dict().items()) + [("priors", net.priors)]
    for name, tensor in tensors:
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineBuild:
    """What one build did: the engine, the seconds it took, the cached export used or written (ONNX Runtime)
    and whether it was already there."""

    engine: str
    net: str
    seconds: float
    cache_path: Optional[str] = None
    from_cache: bool = False

    def describe(self) -> str:
        """The line a command prints once, when the engine is ready."""
        if self.cache_path is None:
            return f"engine: {self.engine} for {self.net}, built in {self.seconds:.1f} s (once)"
        if self.from_cache:
            return f"engine: {self.engine} for {self.net}, ready in {self.seconds:.1f} s from {self.cache_path}"
        return (f"engine: {self.engine} for {self.net}, exported in {self.seconds:.1f} s (once) to "
                f"{self.cache_path}; later runs reuse it")


def _net_text(net: nn.Module, net_type: Optional[str]) -> str:
    width, height = net.config.image_size
    return f"{net_type or type(net).__name__} at {width}x{height}"


def build_engine(engine: str, net: nn.Module, net_type: Optional[str] = None,
                 cache_folder: Optional[str] = None) -> Tuple[Runner, EngineBuild]:
    """Build ``engine`` (``onnxruntime``, ``torchscript`` or ``compile``) for ``net`` (an is_test SSD on the CPU,
    in eval mode; not modified). Returns the runner, batch float32 ``(N, 3, H, W)`` -> ``(scores, boxes)``, and
    what the build did. Raises whatever the build meets: ImportError without the optional package, a
    WriteError for a cache folder that cannot be written, torch's errors for a graph it cannot export."""
    start = time.perf_counter()
    # Built outside inference mode (evaluation runs in it): tracing and exporting need ordinary tensors.
    with torch.inference_mode(False), torch.no_grad():
        folded = fuse_batchnorm(net)
        if engine == "onnxruntime":
            runner, path, from_cache = _onnxruntime_runner(folded, net, net_type,
                                                           cache_folder or default_cache_folder())
            return runner, EngineBuild(engine, _net_text(net, net_type), time.perf_counter() - start, path,
                                       from_cache)
        if engine == "torchscript":
            runner = _torchscript_runner(folded)
        elif engine == "compile":
            runner = _compile_runner(folded)
        else:
            raise ValueError(f"not an engine to build: {engine!r}")
    return runner, EngineBuild(engine, _net_text(net, net_type), time.perf_counter() - start)


def _example_batch(net: nn.Module) -> Tensor:
    width, height = net.config.image_size
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def _onnxruntime_runner(folded: nn.Module, net: nn.Module, net_type: Optional[str],
                        cache_folder: str) -> Tuple[Runner, str, bool]:
    # onnxruntime is an optional dependency: imported when this engine is built
    import onnxruntime

    name = f"{(net_type or type(net).__name__).replace(os.sep, '_')}-{'x'.join(map(str, net.config.image_size))}"
    path = os.path.join(cache_folder, f"{name}-{cache_key(net, net_type)}.onnx")
    from_cache = os.path.isfile(path)
    if from_cache:
        try:
            os.utime(path)  # the cache keeps the most recently used files
        except OSError:
            pass  # a read-only cache still serves its files
    else:
        write_bytes(path, trace_to_onnx(folded, net.config.image_size, ONNX_OPSET, dynamic_batch=True))
        _trim_cache(cache_folder, keep=path)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's idle worker threads spin-wait for the next run by default, and steal the cores from the torch
    # work (preprocessing, NMS) that follows each forward pass in this process: without spinning the whole
    # predictor runs at the forward pass's speed (benchmarks/bench_predict.py --against_original).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(batch: Tensor) -> Tuple[Tensor, Tensor]:
        scores, boxes = session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(batch.numpy())})
        return torch.from_numpy(scores), torch.from_numpy(boxes)

    return run, path, from_cache


def _trim_cache(folder: str, keep: str) -> None:
    """Remove the least recently used exports while the folder holds more than CACHE_BYTES (never ``keep``)."""
    try:
        entries = [os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".onnx")]
        entries.sort(key=os.path.getmtime, reverse=True)
        total = 0
        for path in entries:
            total += os.path.getsize(path)
            if total > CACHE_BYTES and path != os.path.abspath(keep) and path != keep:
                os.remove(path)
    except OSError:
        pass  # another process trimming at the same time, or a file gone: the next write trims again


def _torchscript_runner(folded: nn.Module) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
        traced = torch.jit.trace(folded, (_example_batch(folded),), check_trace=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    def run(batch: Tensor) -> Tuple[Tensor, Tensor]:
        scores, boxes = frozen(batch)
        return scores, boxes

    return run


def _compile_runner(folded: nn.Module) -> Runner:
    compiled = torch.compile(folded)
    compiled(_example_batch(folded))  # the compilation itself, so that the build's time counts it

    def run(batch: Tensor) -> Tuple[Tensor, Tensor]:
        scores, boxes = compiled(batch)
        return scores, boxes

    return run


def _state_key(net: nn.Module) -> Tuple:
    """Changes when a parameter or buffer of ``net`` changes in place or is replaced (a state_dict loaded,
    ``use_config`` at another size or prior table), or when ``is_test`` does."""
    tensors = list(net.parameters()) + list(net.buffers())
    return (id(net), getattr(net, "is_test", None), tuple(getattr(net.config, "image_size", ())),
            tuple((id(tensor), tensor._version) for tensor in tensors))


class EngineSlot:
    """The engine of one predictor: built when first asked for, built again when the net changed, and given
    up for good after a failed build (one :class:`EngineWarning`; eager from then on)."""

    def __init__(self) -> None:
        self.runner: Optional[Runner] = None
        self.last_build: Optional[EngineBuild] = None
        self.failed = False
        self._key: Optional[Tuple] = None

    @property
    def built(self) -> bool:
        return self.runner is not None

    def runner_for(self, engine: str, net: nn.Module, net_type: Optional[str], cache_folder: Optional[str],
                   report: Callable[[str], None]) -> Optional[Runner]:
        """The runner of ``engine`` for ``net`` as it is now, or None when it cannot be built."""
        if self.failed:
            return None
        key = (engine, _state_key(net))
        if key != self._key:
            self.runner, self._key = None, None
            try:
                self.runner, self.last_build = build_engine(engine, net, net_type, cache_folder)
            except Exception as error:  # noqa: BLE001 - any failure of an optional speed-up falls back to eager
                self.failed = True
                reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
                warnings.warn(f"the {engine} engine could not be built ({reason}); running eager PyTorch",
                              EngineWarning, stacklevel=4)
                return None
            self._key = key
            report(self.last_build.describe())
        return self.runner


def expected_count(count: Optional[int]) -> float:
    """``Predictor.expect_images``' argument as a number: None (an open-ended stream) is infinite."""
    return math.inf if count is None else float(max(0, count))
