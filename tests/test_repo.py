"""The README's newcomer commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_gives_setup_and_test_commands():
    setup, test = _readme_commands()
    assert "pip install -c constraints.txt" in setup  # the CPU torch pin applies
    assert "earthx" in setup.split("&&")[-1]  # it ends by running the main job
    assert "pytest" in test


def test_ci_runs_the_readme_commands_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    for command in _readme_commands():
        assert command in ci, f".ci/run does not run the README command: {command}"


def test_constraints_pin_the_cpu_torch_wheel():
    pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert "torch==2.13.0" in pins
