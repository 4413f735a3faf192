"""Which priors a net trains with (``--priors default|auto|FILE.json``), how well they cover the data, and
what to do when a class is poorly covered; shared by ``train_ssd.py`` and ``python -m vision.datasets.check``.

- ``default``: the net type's own table (the original's commands train the original's model);
- ``auto``: a table fitted to the training boxes for the net and input size (:mod:`vision.ssd.prior_fit`);
- a ``.json`` file: an explicit table (the format :class:`~vision.ssd.priors.TablePriors` writes).

When a class stays below :data:`~vision.ssd.coverage.COVERED_SHARE` the advice names the flag that fixes
it, measured: ``--priors auto`` when a fit at this size covers it, else the smallest larger ``--resolution``
at which a fit does, else that the grid is too coarse for these boxes at any size tried.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from vision.ssd.config.base import SSDConfig
from vision.ssd.coverage import COVERED_SHARE, PriorCoverage, prior_coverage
from vision.ssd.prior_fit import MIN_BOXES, PriorFit, fit_prior_table, size_reaching_coverage
from vision.ssd.priors import PriorTableError, TablePriors
from vision.ssd.registry import net_config, with_priors
from vision.utils.atomic import write_text
from vision.utils.image_size import ImageSize, format_size

DEFAULT, AUTO = "default", "auto"
PRIORS_FILE = "priors.json"  # the fitted table, beside the checkpoints


@dataclass(frozen=True)
class PriorChoice:
    """The priors chosen: ``table`` (None: the net type's own), ``config`` (the net type's at the input size,
    with them), their ``coverage`` of the boxes, the net type's coverage ``before`` a fit, the ``fit``
    itself, and ``advice`` lines for poorly covered classes (empty when every class is covered)."""

    table: Optional[TablePriors]
    config: SSDConfig
    coverage: PriorCoverage
    description: str
    before: Optional[PriorCoverage] = None
    fit: Optional[PriorFit] = None
    advice: Sequence[str] = ()
    warnings: Sequence[str] = ()


def read_prior_table(path: str) -> TablePriors:
    """The table of a ``--priors FILE.json``; :class:`PriorTableError` (one line naming the file) when it is
    missing, not JSON or not a table."""
    if not os.path.isfile(path):
        raise PriorTableError(f"{path}: no such prior table file (--priors takes default, auto or a .json table)")
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PriorTableError(f"{path}: not valid JSON ({error})") from None
    return TablePriors.from_document(document, source=path)


def write_prior_table(path: str, table: TablePriors, net_type: str) -> str:
    """Write ``table`` as a ``--priors`` file, atomically; returns its path."""
    return write_text(path, json.dumps(table.to_document(net_type), indent=1) + "\n")


def describe(net_type: str, config: SSDConfig, table_source: str) -> str:
    return f"{net_type} at {format_size(config.image_size)}, {table_source}"


def coverage_of(config: SSDConfig, boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                description: str) -> PriorCoverage:
    """The coverage of ``boxes`` (``(n, 4)`` corner 0..1) by ``config``'s priors at its match threshold."""
    return prior_coverage(boxes, labels, class_names, config.priors, config.match_iou_threshold, description,
                          config.feature_map_shapes, config.prior_rule.priors_per_location())


def fit_for(net_type: str, image_size: Optional[ImageSize], boxes: np.ndarray, labels: np.ndarray,
            class_names: Sequence[str], seed: int = 0, mb2_width_mult: float = 1.0) -> PriorFit:
    """A table fitted to ``boxes`` for ``net_type`` at ``image_size`` (None: its native size)."""
    config = net_config(net_type, image_size, mb2_width_mult)
    return fit_prior_table(boxes, labels, class_names, config.priors, config.feature_map_shapes,
                           config.prior_rule.priors_per_location(), config.image_size,
                           config.match_iou_threshold, seed, f"{net_type} at {format_size(config.image_size)}")


def choose_priors(priors: Union[str, TablePriors, None], net_type: str, image_size: Optional[ImageSize],
                  boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0,
                  mb2_width_mult: float = 1.0, advise: bool = True) -> PriorChoice:
    """The priors ``priors`` (``default``/None, ``auto``, a table file, or a table already read, e.g. a resumed
    checkpoint's) give ``net_type`` at ``image_size`` for these training ``boxes`` (``(n, 4)`` corner 0..1)
    and ``labels`` (indexes into ``class_names``), with
    their coverage and, when ``advise``, measured advice for poorly covered classes."""
    config = net_config(net_type, image_size, mb2_width_mult)
    mode = priors or DEFAULT
    warnings = []
    if mode == AUTO:
        if len(boxes) < MIN_BOXES:
            warnings.append(f"--priors auto: {len(boxes)} boxes are too few to fit priors to (at least "
                            f"{MIN_BOXES}); keeping {net_type}'s own priors")
            mode = DEFAULT
        else:
            fit = fit_for(net_type, image_size, boxes, labels, class_names, seed, mb2_width_mult)
            chosen = with_priors(config, fit.table, net_type, "--priors auto")
            advice = _advice(fit.after, fit, net_type, chosen, boxes, labels, class_names, seed, mb2_width_mult,
                             advise)
            return PriorChoice(fit.table, chosen, fit.after, describe(net_type, chosen, "priors fitted to the data"),
                               before=fit.before, fit=fit, advice=advice)
    if mode == DEFAULT:
        text = describe(net_type, config, f"{net_type}'s own priors")
        coverage = coverage_of(config, boxes, labels, class_names, text)
        advice = _advice(coverage, None, net_type, config, boxes, labels, class_names, seed, mb2_width_mult, advise)
        return PriorChoice(None, config, coverage, text, advice=advice, warnings=warnings)
    table = mode if isinstance(mode, TablePriors) else read_prior_table(mode)
    resumed = isinstance(mode, TablePriors)
    chosen = with_priors(config, table, net_type, "the checkpoint's priors" if resumed else mode)
    text = describe(net_type, chosen, "the checkpoint's priors" if resumed else f"the priors of {mode}")
    coverage = coverage_of(chosen, boxes, labels, class_names, text)
    advice = _advice(coverage, None, net_type, chosen, boxes, labels, class_names, seed, mb2_width_mult, advise)
    return PriorChoice(table, chosen, coverage, text, advice=advice)


def _advice(coverage: PriorCoverage, fit: Optional[PriorFit], net_type: str, config: SSDConfig, boxes: np.ndarray,
            labels: np.ndarray, class_names: Sequence[str], seed: int, mb2_width_mult: float,
            advise: bool) -> Sequence[str]:
    """One warning line per poorly covered class and, measured, the flag that fixes it."""
    poor = coverage.poorly_covered()
    if not poor:
        return ()
    lines = [f"class {name!r}: only {coverage.covered[name]:.1%} of its {coverage.boxes[name]} boxes have a prior at "
             f"IoU >= {coverage.threshold:g}; training matches each of the others to one prior only"
             for name in poor]
    if not advise or len(boxes) < MIN_BOXES:
        return lines
    size = config.image_size
    if fit is None:  # the net type's or a given table: would a fit at this size do?
        fit = fit_for(net_type, size, boxes, labels, class_names, seed, mb2_width_mult)
        if fit.after.lowest() >= COVERED_SHARE:
            shares = ", ".join(f"{name} {fit.after.covered[name]:.1%}" for name in poor)
            return lines + [f"fix: --priors auto (fitted at {format_size(size)} it covers {shares})"]
    reached = size_reaching_coverage(
        lambda candidate: fit_for(net_type, candidate, boxes, labels, class_names, seed, mb2_width_mult), size)
    if reached is not None:
        larger, larger_fit = reached
        shares = ", ".join(f"{name} {larger_fit.after.covered[name]:.1%}" for name in poor)
        return lines + [f"fix: --priors auto --resolution {format_size(larger)}: the grid at {format_size(size)} is "
                        f"too coarse for these boxes; at {format_size(larger)} a fit covers {shares} (measured)"]
    return lines + [f"no fix found: even fitted priors at up to 3x {format_size(size)} leave a class below "
                    f"{COVERED_SHARE:.0%}; the boxes are too small for {net_type}'s grid (crop or tile the images)"]
