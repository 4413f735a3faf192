"""The console commands of pyproject.toml's ``[project.scripts]``, as the installed distribution declares them."""
import subprocess
import sys
import typing
from importlib import metadata
from pathlib import Path

import pytest

DISTRIBUTION = "pytorch-ssd-toolkit"
# command -> the module whose ``main(argv=None) -> int`` it runs; the original's root scripts run the same ones.
COMMANDS = {
    "ssd-train": "vision.cli.train_ssd",
    "ssd-eval": "vision.cli.eval_ssd",
    "ssd-detect": "vision.cli.run_ssd_example",
    "ssd-live": "vision.cli.run_ssd_live_demo",
    "ssd-export": "vision.cli.convert_to_caffe2_models",
    "ssd-openimages": "vision.cli.open_images_downloader",
}


def _console_scripts() -> dict:
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{DISTRIBUTION} is not installed (pip install -e .)")
    return {entry.name: entry for entry in distribution.entry_points if entry.group == "console_scripts"}


def test_every_command_is_declared_and_names_its_cli_main():
    scripts = _console_scripts()
    assert {name: scripts[name].value for name in COMMANDS if name in scripts} == \
        {name: f"{module}:main" for name, module in COMMANDS.items()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_resolves_to_a_main_returning_an_exit_status(command):
    main = _console_scripts()[command].load()
    assert callable(main)
    assert typing.get_type_hints(main)["return"] is int  # sys.exit(main()) gives that status


def test_installed_ssd_eval_prints_its_help_and_exits_0():
    _console_scripts()
    executable = Path(sys.executable).parent / "ssd-eval"
    if not executable.exists():
        pytest.skip(f"{executable} not found: the package was installed into another environment")
    completed = subprocess.run([str(executable), "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: ssd-eval")
    assert "--trained_model" in completed.stdout
