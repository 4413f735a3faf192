"""--resolution values and (width, height) sizes."""
import pytest

from vision.utils.image_size import as_width_height, format_size, parse_resolution


@pytest.mark.parametrize("text, expected", [("512", (512, 512)), ("640x360", (640, 360)), ("512X288", (512, 288)),
                                            (" 320 x 240 ", (320, 240))])
def test_resolution_forms(text, expected):
    assert parse_resolution(text) == expected


@pytest.mark.parametrize("text", ["", "x", "640x", "0", "640x0", "-3", "640y360", "1.5"])
def test_bad_resolution_is_a_one_line_error_with_the_forms(text):
    with pytest.raises(ValueError, match=r"expected N .* or WxH|must be positive"):
        parse_resolution(text)


def test_sizes_are_width_then_height():
    assert as_width_height(300) == (300, 300) and as_width_height((640, 360)) == (640, 360)
    assert as_width_height([640, 360]) == (640, 360) and format_size(512) == "512x512"
    for bad in ((1, 2, 3), "big", True):
        with pytest.raises(ValueError):
            as_width_height(bad)
