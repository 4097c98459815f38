"""constraints.txt: every dependency pinned to the version tested, and used where we install.

``make lock`` (scripts/lock.py) writes the file from .venv; ``make setup`` (so ``make test``
and CI) and the Dockerfile install with ``-c constraints.txt``. These tests fail when
pyproject.toml declares a dependency the file does not pin, when the environment running the
tests holds another version than the pinned one, or when an install stops using the file.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from types import ModuleType

from deploy_support import DOCKERFILE, ROOT, dockerfile_instructions
from packaging.requirements import Requirement

CONSTRAINTS = ROOT / "constraints.txt"
_PIN = re.compile(r"(?P<name>[a-z0-9]+(?:-[a-z0-9]+)*)==(?P<version>[A-Za-z0-9.+!-]+)")
_RELOCK = "run `make lock` (after changing pyproject.toml) or `make setup` (after a pull)"


def _lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        match = _PIN.fullmatch(line)
        assert match, f"constraints.txt: {line!r} is not a normalised name==version pin"
        assert match["name"] not in pins, f"constraints.txt pins {match['name']} twice"
        pins[match["name"]] = match["version"]
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(text) for text in texts]


def test_the_file_is_sorted_pins_only_and_leaves_the_project_out() -> None:
    pins = _pins()
    assert list(pins) == sorted(pins), "keep constraints.txt sorted (make lock does)"
    assert "sharing-guard" not in pins, "the project is installed from the source, not pinned"


def test_every_dependency_declared_in_pyproject_is_pinned_within_its_range() -> None:
    pins = _pins()
    normalise = _lock_script().normalise
    for requirement in _declared():
        name = normalise(requirement.name)
        assert name in pins, f"{requirement} is not pinned in constraints.txt: {_RELOCK}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {requirement}: {_RELOCK}"
        )


def test_the_tests_run_on_exactly_the_pinned_versions_of_everything_needed() -> None:
    """The whole dependency tree of the project with its dev extra, as installed here
    (transitive dependencies and the extras asked for, e.g. psycopg[binary])."""
    lock = _lock_script()
    installed = lock.installed()
    needed = lock.required_closure(installed) - {lock.PROJECT}
    assert {lock.normalise(r.name) for r in _declared()} <= needed
    pins = _pins()
    missing = sorted(needed - set(pins))
    assert not missing, f"needed but not pinned: {missing}: {_RELOCK}"
    drift = {n: (installed[n].version, pins[n]) for n in needed if installed[n].version != pins[n]}
    assert not drift, f"installed (left) differs from pinned (right): {drift}: {_RELOCK}"


def test_the_installers_are_pinned_only_when_needed() -> None:
    lock = _lock_script()
    needed = lock.required_closure(lock.installed())
    for name in lock.INSTALLERS & set(_pins()):
        assert name in needed, f"{name} is pinned though nothing requires it"


def test_make_setup_installs_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = re.search(
        r"^\$\(BIN\)/\.installed:(?P<deps>.*)\n(?P<recipe>(?:\t.*\n)+)", makefile, re.M
    )
    assert target, "the Makefile's $(BIN)/.installed target is gone"
    assert "constraints.txt" in target["deps"].split(), "a new lock must reinstall"
    installs = [line for line in target["recipe"].splitlines() if "-e '.[dev]'" in line]
    assert installs, "the Makefile no longer installs the project with its dev extra"
    assert all("-c constraints.txt" in line for line in installs), installs
    assert re.search(r"^lock:.*\n(?:\t.*\n)*?\t.*scripts/lock\.py", makefile, re.M), (
        "make lock is gone"
    )


def test_the_image_installs_with_the_constraints() -> None:
    instructions = dockerfile_instructions()
    copied = {
        source
        for keyword, value, flags in instructions
        if keyword == "COPY" and not any(f.startswith("--from") for f in flags)
        for source in value[:-1]
    }
    assert "constraints.txt" in copied
    installs = [
        " ".join(value)
        for keyword, value, _ in instructions
        if keyword == "RUN" and "pip install" in " ".join(value)
    ]
    assert installs, f"{DOCKERFILE.name} installs nothing with pip"
    for command in installs:
        assert re.search(r"(-c|--constraint)[ =]constraints\.txt", command), command
