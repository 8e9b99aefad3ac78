"""The README is a test: every example runs, against a real `switchyard up`, and prints what it shows.

The stack runs from a copy of the repository's policies (examples change them)
in a git repository of its own (`git diff policies/` is an example), with the
session's model store and on free ports: the README's default ports (10000,
18001, 18000, 9901) are rewritten to them in commands and outputs alike. See
``tests/support/readme.py`` for how blocks are written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from control_plane.policy.loader import load_texts
from tests.support.procs import free_port, wait_for
from tests.support.readme import Block, Command, blocks, matches

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DEFAULT_PORTS = ("10000", "18001", "18000", "9901")


class Stack:
    def __init__(self, root: Path, model_store: Path) -> None:
        self.root = root
        self.ports = {default: str(free_port()) for default in DEFAULT_PORTS}
        shutil.copytree(REPO / "policies", root / "policies")
        (root / ".venv").symlink_to(Path(sys.executable).parents[1])
        for args in (["init", "-q"], ["add", "policies"], ["commit", "-q", "-m", "policies"]):
            subprocess.run(["git", *args], cwd=root, check=True, env=self.env())
        self.log = (root / "up.log").open("wb")
        self.up = subprocess.Popen(
            [
                str(root / ".venv" / "bin" / "switchyard"),
                "up",
                "--model-store",
                str(model_store),
                "--port",
                self.ports["10000"],
                "--admin-port",
                self.ports["18001"],
                "--xds-port",
                self.ports["18000"],
                "--envoy-admin-port",
                self.ports["9901"],
            ],
            cwd=root,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env(),
        )
        wait_for(lambda: "everything is ready" in self.output() or self.up.poll() is not None, timeout=600, what="up")
        assert self.up.poll() is None, self.output()

    def env(self) -> dict[str, str]:
        env = {**os.environ, "GIT_AUTHOR_NAME": "readme", "GIT_AUTHOR_EMAIL": "readme@example.com"}
        env.update(GIT_COMMITTER_NAME="readme", GIT_COMMITTER_EMAIL="readme@example.com")
        env["PATH"] = f"{self.root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # `source .venv/bin/activate`
        for name in ("SWITCHYARD_TOKEN", "VIRTUAL_ENV"):
            env.pop(name, None)
        # The commands' own defaults (the admin API on 18001, Envoy on 10000), moved to the free ports.
        env["SWITCHYARD_URL"] = f"http://127.0.0.1:{self.ports['18001']}"
        env["SWITCHYARD_ENVOY_URL"] = f"http://127.0.0.1:{self.ports['10000']}"
        return env

    def localize(self, text: str) -> str:
        for default, port in self.ports.items():
            text = re.sub(rf"(?<=[:/ ]){default}\b", port, text)
        return text

    def run(self, command: Command) -> tuple[int, list[str]]:
        result = subprocess.run(
            ["bash", "-c", self.localize(command.text)],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
        return result.returncode, result.stdout.splitlines()

    def output(self) -> str:
        return (self.root / "up.log").read_text(errors="replace")

    def stop(self) -> None:
        self.up.terminate()
        try:
            self.up.wait(120)
        except subprocess.TimeoutExpired:
            self.up.kill()
        self.log.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("readme"), model_store)
    try:
        yield running
    finally:
        running.stop()


def readme_blocks() -> list[Block]:
    return blocks(README)


def test_every_shell_and_http_example_runs_or_says_why_not() -> None:
    for block in readme_blocks():
        if block.language in ("bash", "sh", "shell", "http", "console"):
            assert block.language == "console" or block.skip, (
                f"README line {block.line}: a ```{block.language} block is neither run (```console) nor skipped"
                " with a reason (<!-- readme: skip REASON -->)"
            )


def test_every_complete_policy_example_validates() -> None:
    examples = [b for b in readme_blocks() if b.language == "yaml" and "apiVersion: switchyard/v1" in "\n".join(b.body)]
    assert len(examples) >= 3
    # Together they are one consistent policy set (the Fleet runs the ModelRoute's versions).
    load_texts({f"README.md:{block.line}": "\n".join(block.body) + "\n" for block in examples})


def test_the_policy_reference_example_is_the_shipped_policy() -> None:
    (reference,) = [
        b
        for b in readme_blocks()
        if b.language == "yaml" and "kind: ModelRoute" in "\n".join(b.body) and "rules:" in "\n".join(b.body)
    ]
    shown = yaml.safe_load("\n".join(reference.body))
    shipped = next(
        d for d in yaml.safe_load_all((REPO / "policies" / "sentiment.yaml").read_text()) if d["kind"] == "ModelRoute"
    )
    for doc in (shown, shipped):
        for version in doc["spec"]["versions"].values():
            # The reference shows local addresses; the file, the containers'. Both serve gRPC too.
            version.pop("endpoints")
            assert version.pop("grpc_endpoints")
    assert shown == shipped


def test_the_readme_examples_print_what_they_show(stack: Stack) -> None:
    failures: list[str] = []
    ran = 0
    for block in readme_blocks():
        if block.language != "console" or block.skip:
            continue
        for command in block.commands:
            code, output = stack.run(command)
            ran += 1
            expected = tuple(stack.localize(line) for line in command.expected)
            if code != command.exit_code or not matches(expected, output):
                failures.append(
                    f"README.md:{command.line}: $ {command.text}\n  exit {code} (expected {command.exit_code})\n"
                    + "  expected:\n"
                    + "".join(f"    {line}\n" for line in expected)
                    + "  got:\n"
                    + "".join(f"    {line}\n" for line in output)
                )
    assert ran > 10
    assert not failures, "\n".join(failures) + "\n--- switchyard up ---\n" + stack.output()[-3000:]
    assert httpx.get(f"http://127.0.0.1:{stack.ports['18001']}/healthz", timeout=5).status_code == 200
