"""Loading the deployment: the Bicep files, the parameters file, azure.yaml, the Dockerfile and the
service's list of environment variables, from a checkout (or a copy of one)."""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bicep import BicepFile, BicepSyntaxError, bicep_files, parse_file
from common import Finding, relative

CONFIG_MODULE = Path("service/dicomlake/config.py")


def parse_all(root: Path) -> tuple[dict[Path, BicepFile], list[Finding]]:
    """Parse every Bicep file below ``root/infra``; a file that does not parse is a finding."""
    parsed: dict[Path, BicepFile] = {}
    findings: list[Finding] = []
    paths = bicep_files(root / "infra")
    if not paths:
        findings.append(Finding("infra", 0, "no .bicep file found"))
    for path in paths:
        try:
            parsed[path.resolve()] = parse_file(path)
        except BicepSyntaxError as error:
            findings.append(Finding(relative(path, root), error.line or 0, f"does not parse: {error.message}"))
    return parsed, findings


def environment_variables(root: Path) -> set[str]:
    """The keys of ``ENVIRONMENT_VARIABLES`` in the service's config module, read from its source
    (the service's dependencies are not installed where the infra checks run)."""
    path = root / CONFIG_MODULE
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for statement in tree.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(statement, ast.AnnAssign):
            target, value = statement.target, statement.value
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        if isinstance(target, ast.Name) and target.id == "ENVIRONMENT_VARIABLES":
            if not isinstance(value, ast.Dict):
                raise ValueError(f"{path}: ENVIRONMENT_VARIABLES is not a dict literal")
            names: set[str] = set()
            for key in value.keys:
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise ValueError(f"{path}: every ENVIRONMENT_VARIABLES key must be a string literal")
                names.add(key.value)
            return names
    raise ValueError(f"{path}: ENVIRONMENT_VARIABLES not found")


def development_python(root: Path) -> str:
    """The Python minor version of development and CI, as the project declares it (mypy/ruff target)."""
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    version = data.get("tool", {}).get("mypy", {}).get("python_version")
    if isinstance(version, str):
        return version
    target = data.get("tool", {}).get("ruff", {}).get("target-version", "")
    match = re.fullmatch(r"py3(\d+)", str(target))
    if match:
        return f"3.{match.group(1)}"
    raise ValueError("pyproject.toml declares no Python version (tool.mypy.python_version)")


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# ---- Dockerfile ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None."""
        text = self.arguments.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Instructions grouped by build stage (continuation lines joined, comments dropped)."""
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        logical.append((start, buffer))
    for line, text in logical:
        keyword, _, arguments = text.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip(), line)
        if instruction.keyword == "FROM":
            words = shlex.split(instruction.arguments)
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0] if words else "", name, line))
        if stages:
            stages[-1].instructions.append(instruction)
    return stages


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether ``path`` is left out of the build context (last matching pattern wins, ``!`` re-includes)."""
    import fnmatch

    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip().strip("/")
        if body.startswith("**/"):
            matched = any(fnmatch.fnmatch(p.split("/")[-1], body[3:]) for p in prefixes)
        else:
            matched = any(fnmatch.fnmatch(p, body) for p in prefixes)
        if matched:
            excluded = not negate
    return excluded


def read_dockerignore(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]
