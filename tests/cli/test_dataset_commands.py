"""The data set commands run as a user runs them: ``python -m vision.datasets.{check,convert,synthetic}``."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["vision.datasets.check", "vision.datasets.convert", "vision.datasets.synthetic"])
def test_python_m_prints_the_commands_help_and_exits_0(module):
    completed = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"usage: python -m {module} ")


def test_python_m_synthetic_writes_a_data_set_and_exits_0(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "vision.datasets.synthetic", "--root", str(tmp_path / "shapes"),
                                "--num_images", "2", "--num_test", "1", "--width", "64", "--height", "48",
                                "--num_workers", "1"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "wrote 2 trainval + 1 test images (voc)" in completed.stdout
    assert (tmp_path / "shapes" / "labels.txt").is_file()
