"""The repository stands on its own: a copy of its files with nothing beside it (no ``../shared``) runs the
demo's first steps and the tests that read the reference facts."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tests.conftest import REPO_ROOT


def repository_files() -> List[str]:
    """The files a commit of the working tree holds: tracked ones plus untracked ones git does not ignore
    (in a fresh clone, the tracked files alone). A file git ignores is left out, as a clone lacks it."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip(f"{REPO_ROOT} is not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sorted({name for name in listed if name and (REPO_ROOT / name).is_file()})


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """``<tmp>/repo``: the repository's files copied alone; ``<tmp>/shared`` does not exist."""
    root = tmp_path_factory.mktemp("standalone") / "repo"
    for name in repository_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    assert not (root.parent / "shared").exists()
    return root


def _run(clone: Path, argv: List[str], timeout: int) -> subprocess.CompletedProcess:
    """``python argv`` in the clone, importing the clone's code, with no shared folder to find."""
    env = {name: value for name, value in os.environ.items() if name != "SSD_SHARED_DIR"}
    env.update(PYTHONPATH=str(clone), OMP_NUM_THREADS="2", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, *argv], cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)


def test_clone_holds_the_reference_facts_and_imports_its_own_code(clone):
    for folder, count in (("keys", 7), ("priors", 7), ("config", 7), ("forward", 1)):
        assert len(list((clone / "tests" / "data" / folder).iterdir())) == count, folder
    completed = _run(clone, ["-c", "import vision.cli.demo, tests.conftest as c; print(vision.cli.demo.__file__); "
                                   "print(c.SHARED, c.reference_photos_present())"], timeout=300)
    assert completed.returncode == 0, completed.stderr
    module_file, shared_line = completed.stdout.splitlines()
    assert Path(module_file).resolve().is_relative_to(clone.resolve())
    assert shared_line == f"{clone.parent / 'shared'} False"


@pytest.mark.timeout(600)
def test_demo_first_steps_run_in_a_clone_with_nothing_beside_it(clone, tmp_path):
    """Steps 1-4 at tiny settings: about 35 s of CPU time."""
    output = tmp_path / "demo"
    completed = _run(clone, ["-m", "vision.cli.demo", "--output", str(output), "--num_images", "8", "--num_epochs", "1",
                             "--last_step", "4"], timeout=540)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert (output / "data" / "labels.txt").is_file()
    assert list((output / "checkpoints").glob("mb1-ssd-lite-Epoch-0-*.pth"))
    assert (output / "eval" / "summary.json").is_file()
    # Step 4 ran on a test image and on two photos: two more generated test images (the demo reads nothing else).
    test_ids = (output / "data" / "ImageSets" / "Main" / "test.txt").read_text().split()
    assert sorted(p.name for p in (output / "detections").iterdir()) == [f"{i}_ssd.jpg" for i in test_ids[:3]]
    assert "=== 5." not in completed.stdout  # --last_step 4 stopped there


@pytest.mark.timeout(600)
def test_reference_fact_tests_pass_in_a_clone_with_nothing_beside_it(clone):
    completed = _run(clone, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ssd/test_nets.py",
                             "-k", "reference"], timeout=540)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert " passed" in completed.stdout and "skipped" not in completed.stdout
