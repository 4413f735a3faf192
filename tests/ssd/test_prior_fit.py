"""--priors auto and --priors FILE.json: on a set where the net type's table covers under 5 % of a class the
fit raises its coverage, keeps each map's priors per location, and is the same for the same seed; a table
file with the wrong maps, counts or sizes is a one-line error naming it; the measured advice."""
import json

import numpy as np
import pytest

from vision.ssd.prior_choice import choose_priors, read_prior_table, write_prior_table
from vision.ssd.prior_fit import MIN_BOXES, fit_prior_table
from vision.ssd.priors import PriorTableError, TablePriors
from vision.ssd.registry import create_net, net_config
from vision.utils.image_size import parse_resolution

NAMES = ["BACKGROUND", "small", "large"]


def _crafted_boxes(count=600, seed=0):
    """A small class (5-7 % of the image, which mb1-ssd-lite's table misses) and a large one it covers."""
    rng = np.random.default_rng(seed)
    labels = np.where(np.arange(count) % 2 == 0, 1, 2)
    side = np.where(labels == 1, rng.uniform(0.05, 0.07, count), rng.uniform(0.35, 0.6, count))
    width, height = side, side * rng.uniform(0.8, 1.25, count)
    centre_x, centre_y = rng.uniform(width / 2, 1 - width / 2), rng.uniform(height / 2, 1 - height / 2)
    boxes = np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], 1)
    return boxes, labels


def _fit(boxes, labels, size=(512, 512), seed=0, net_type="mb1-ssd-lite"):
    config = net_config(net_type, size)
    return fit_prior_table(boxes, labels, NAMES, config.priors, config.feature_map_shapes,
                           config.prior_rule.priors_per_location(), config.image_size, seed=seed)


def test_the_fit_raises_a_poorly_covered_class_and_keeps_the_counts_per_location():
    boxes, labels = _crafted_boxes()
    fit = _fit(boxes, labels)
    assert fit.before.covered["small"] < 0.05
    assert fit.after.covered["small"] > 0.9 and fit.after.covered["large"] >= fit.before.covered["large"] - 0.02
    per_location = net_config("mb1-ssd-lite", (512, 512)).prior_rule.priors_per_location()
    assert fit.table.priors_per_location() == per_location
    net = create_net("mb1-ssd-lite", 3, image_size=512, priors=fit.table)  # the heads keep their shapes
    assert net.priors.shape == net_config("mb1-ssd-lite", (512, 512)).priors.shape
    assert all(0 < value <= 1 for level in fit.table.sizes for pair in level for value in pair)


def test_the_same_seed_gives_the_same_table():
    boxes, labels = _crafted_boxes(seed=1)
    assert _fit(boxes, labels, seed=3).table == _fit(boxes, labels, seed=3).table


def test_too_few_boxes_keep_the_net_types_priors_with_a_warning():
    boxes, labels = _crafted_boxes(count=MIN_BOXES - 1)
    choice = choose_priors("auto", "mb1-ssd-lite", None, boxes, labels, NAMES, advise=False)
    assert choice.table is None and "too few to fit priors" in choice.warnings[0]
    with pytest.raises(ValueError, match="too few"):
        _fit(boxes, labels)


def test_the_advice_names_the_flag_and_the_measured_size():
    boxes, labels = _crafted_boxes()
    default = choose_priors("default", "mb1-ssd-lite", None, boxes, labels, NAMES)
    assert default.table is None and "class 'small': only" in default.advice[0]
    # At 300 the grid is too coarse for 5 % boxes: the advice measures a larger size where a fit covers them.
    assert default.advice[-1].startswith("fix: --priors auto --resolution ")
    assert "(measured)" in default.advice[-1]
    recommended = parse_resolution(default.advice[-1].split("--resolution ")[1].split(":")[0])
    assert recommended > (300, 300)
    covered = choose_priors("auto", "mb1-ssd-lite", recommended, boxes, labels, NAMES)
    assert covered.coverage.lowest() >= 0.95 and not covered.advice


def test_a_table_file_round_trips_and_bad_files_are_one_line_naming_them(tmp_path):
    boxes, labels = _crafted_boxes()
    table = _fit(boxes, labels).table
    path = write_prior_table(str(tmp_path / "priors.json"), table, "mb1-ssd-lite")
    assert read_prior_table(path) == table
    choice = choose_priors(path, "mb1-ssd-lite", (512, 512), boxes, labels, NAMES, advise=False)
    assert choice.table == table and "the priors of" in choice.description
    document = json.loads((tmp_path / "priors.json").read_text())

    def write(name, change):
        bad = json.loads(json.dumps(document))
        change(bad)
        target = tmp_path / name
        target.write_text(json.dumps(bad))
        return str(target)

    cases = {
        write("maps.json", lambda d: d["maps"].pop()): "5 maps, but mb1-ssd-lite has 6",
        write("count.json", lambda d: d["maps"][0].pop()): "priors per location [5, 6, 6, 6, 6, 6] do not fit",
        write("negative.json", lambda d: d["maps"][1][0].__setitem__(0, -0.1)): "sizes must be positive",
        write("zero.json", lambda d: d["maps"][1][0].__setitem__(1, 0)): "sizes must be positive",
        write("big.json", lambda d: d["maps"][2][0].__setitem__(1, 3.0)): "relative to the image, at most 1",
        write("pair.json", lambda d: d["maps"][2].__setitem__(0, [0.1])): "is not a [width, height] pair",
        write("format.json", lambda d: d.pop("format")): "not a prior table",
    }
    for bad, message in cases.items():
        with pytest.raises(PriorTableError) as raised:
            choose_priors(bad, "mb1-ssd-lite", None, boxes, labels, NAMES, advise=False)
        assert str(raised.value).startswith(bad) and message in str(raised.value) and "\n" not in str(raised.value)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(PriorTableError, match="broken.json: not valid JSON"):
        read_prior_table(str(tmp_path / "broken.json"))
    with pytest.raises(PriorTableError, match="no such prior table file"):
        read_prior_table(str(tmp_path / "absent.json"))


def test_a_table_lays_its_priors_on_the_measured_grid_at_any_size():
    table = TablePriors((((0.1, 0.2), (0.3, 0.3)),))
    priors = table.priors((640, 360), ((3, 2),))
    assert priors.shape == (12, 4)
    np.testing.assert_allclose(priors[:4].numpy(), [[0.25, 1 / 6, 0.1, 0.2], [0.25, 1 / 6, 0.3, 0.3],
                                                    [0.75, 1 / 6, 0.1, 0.2], [0.75, 1 / 6, 0.3, 0.3]], rtol=1e-6)
