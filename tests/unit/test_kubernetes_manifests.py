"""deploy/kubernetes/, checked without a cluster.

Every built-in object must be valid by the Kubernetes API's own schemas (strict: no
unknown fields); every custom resource by the CRD schema in crds.yaml and by the policy
loader; the pieces must fit each other (selectors, port names, the Service each
ModelRoute version names, probes, drain timing, least-privilege RBAC); the Envoy
bootstrap must be the current `switchyard bootstrap` output; the kustomization must list
exactly the files there are. Manifests are read as YAML 1.1 (PyYAML), as Kubernetes reads
them, so an unquoted `on:` key shows up as the boolean it becomes there.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from control_plane.admin.auth import load_tokens
from control_plane.cli.main import build_parser
from control_plane.policy.loader import load_texts
from model_services.cli import parser as model_service_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
POLICY_FILE = ROOT / "policies" / "sentiment.yaml"
CRDS = DEPLOY / "crds.yaml"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"

# The oldest Kubernetes these manifests claim (HPA autoscaling/v2, PDB policy/v1, ...),
# and the newest the installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]
CUSTOM_GROUP = "switchyard.dev"
NAMESPACE = "switchyard"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}

CONTROL_PLANE = "switchyard-control-plane"
XDS_PORT = 18000
ADMIN_PORT = 18001
# What the control plane may do, per (API group, resource): nothing else, no wildcards.
ALLOWED_VERBS: dict[tuple[str, str], set[str]] = {
    ("switchyard.dev", "modelroutes"): {"get", "list", "watch", "update", "patch"},
    ("switchyard.dev", "gateways"): {"get", "list", "watch", "update", "patch"},
    ("switchyard.dev", "modelroutes/status"): {"get", "patch", "update"},
    ("switchyard.dev", "gateways/status"): {"get", "patch", "update"},
    ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
    ("", "services"): {"get", "list", "watch"},
    ("coordination.k8s.io", "leases"): {"get", "list", "watch", "create", "update", "patch"},
    ("", "events"): {"create", "patch"},
}

Doc = dict[str, Any]


# --- reading the files ----------------------------------------------------------------------


def read_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def manifest_files() -> list[Path]:
    """Every manifest but the generated CRDs and the kustomization itself."""
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p not in (CRDS, KUSTOMIZATION))


def kustomized_docs() -> list[Doc]:
    """What `kubectl apply -k deploy/kubernetes` applies, crds.yaml aside."""
    resources = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))["resources"]
    return [doc for name in resources if DEPLOY / name != CRDS for doc in read_docs(DEPLOY / name)]


def all_docs() -> list[tuple[str, Doc]]:
    return [
        (f"{path.relative_to(DEPLOY)}#{i}", doc) for path in manifest_files() for i, doc in enumerate(read_docs(path))
    ]


def is_custom(doc: Doc) -> bool:
    return str(doc["apiVersion"]).split("/")[0] == CUSTOM_GROUP


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    return found


def containers(deployment: Doc) -> list[Doc]:
    found: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    return found


def port_numbers(container: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def probe_port(container: Doc, probe: str) -> int:
    port = container[probe]["httpGet"]["port"]
    return port if isinstance(port, int) else port_numbers(container)[port]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def model_args(container: Doc) -> argparse.Namespace:
    """The model-service container's arguments, as `python -m model_services serve` reads them."""
    return model_service_parser().parse_args(["serve", *container["args"]])


def serve_flags() -> set[str]:
    """`switchyard serve`'s option strings, spelled out (argparse would take a prefix)."""
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {flag for action in sub.choices["serve"]._actions for flag in action.option_strings}


def policy_docs() -> list[Doc]:
    """policies/sentiment.yaml as the policy loader reads it (YAML 1.2: `on` is a string)."""
    from ruamel.yaml import YAML

    return [dict(doc) for doc in YAML(typ="safe").load_all(POLICY_FILE.read_text(encoding="utf-8"))]


def crd_schema(kind: str) -> Doc:
    (crd,) = [c for c in read_docs(CRDS) if c["spec"]["names"]["kind"] == kind]
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert crd["spec"]["group"] == CUSTOM_GROUP
    schema: Doc = version["schema"]["openAPIV3Schema"]
    return schema


def as_policy_text(resources: list[Doc]) -> str:
    """Custom resources as the policy file a user would write in file mode."""
    return yaml.safe_dump_all(
        [
            {
                "apiVersion": "switchyard/v1",
                "kind": r["kind"],
                "metadata": {"name": r["metadata"]["name"]},
                "spec": r["spec"],
            }
            for r in resources
        ],
        sort_keys=False,
    )


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return kustomized_docs()


@pytest.fixture(scope="module")
def custom_resources(docs: list[Doc]) -> list[Doc]:
    found = [doc for doc in docs if is_custom(doc)]
    assert {doc["kind"] for doc in found} == {"ModelRoute", "Gateway"}
    return found


@pytest.fixture(scope="module")
def model_deployments(docs: list[Doc]) -> list[Doc]:
    found = [d for d in of_kind(docs, "Deployment") if containers(d)[0]["image"].startswith("switchyard/model-service")]
    assert found
    return found


# --- every document by its schema -----------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), [d for d in all_docs() if not is_custom(d[1])], ids=lambda v: str(v))
def test_built_in_objects_are_valid_by_the_kubernetes_schemas(version: str, where: str, doc: Doc) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def keys_that_are_not_strings(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        return [f"{path}.{k!r}" for k in node if not isinstance(k, str)] + [
            bad for k, v in node.items() for bad in keys_that_are_not_strings(v, f"{path}.{k}")
        ]
    if isinstance(node, list):
        return [bad for i, v in enumerate(node) for bad in keys_that_are_not_strings(v, f"{path}[{i}]")]
    return []


def test_no_key_changes_meaning_under_yaml_1_1() -> None:
    # Kubernetes reads YAML 1.1: `on:`, `yes:`, `off:` keys are booleans there.
    assert [bad for where, doc in all_docs() for bad in keys_that_are_not_strings(doc, where)] == []


def test_every_namespaced_object_is_in_the_switchyard_namespace() -> None:
    for where, doc in all_docs():
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == NAMESPACE, where


def pruned_fields(node: Any, schema: Doc, path: str = "") -> list[str]:
    """Fields a structural schema does not declare: the API server prunes them (and
    `kubectl apply`, validating strictly, refuses them). The OpenAPI validator cannot
    say so, as the schemas carry no additionalProperties: false."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(node, dict) and path != ".metadata":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        found: list[str] = []
        for key, value in node.items():
            if properties is not None and key in properties:
                found += pruned_fields(value, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += pruned_fields(value, extra, f"{path}.{key}")
            elif key not in ("apiVersion", "kind", "metadata") or path:
                found.append(f"{path}.{key}")
        return found
    if isinstance(node, list) and "items" in schema:
        return [bad for i, v in enumerate(node) for bad in pruned_fields(v, schema["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("kind", ["ModelRoute", "Gateway"])
def test_custom_resources_are_valid_by_the_crd_schema(custom_resources: list[Doc], kind: str) -> None:
    validator = OAS30Validator(crd_schema(kind))
    resources = of_kind(custom_resources, kind)
    assert resources
    for resource in resources:
        assert resource["apiVersion"] == f"{CUSTOM_GROUP}/v1alpha1"
        assert [e.message for e in validator.iter_errors(resource)] == [], resource["metadata"]["name"]
        assert pruned_fields(resource, crd_schema(kind)) == [], resource["metadata"]["name"]


def test_custom_resources_load_as_policies(custom_resources: list[Doc]) -> None:
    policies = load_texts({"modelroutes.yaml": as_policy_text(custom_resources)})
    assert [m.value.metadata.name for m in policies.models] == ["sentiment"]
    assert policies.gateway is not None


def test_custom_resources_are_the_example_policies_with_services(custom_resources: list[Doc]) -> None:
    """modelroutes.yaml is policies/sentiment.yaml, each version's endpoints replaced by its Service."""
    cluster = load_texts({"modelroutes.yaml": as_policy_text(custom_resources)})
    files = load_texts({"sentiment.yaml": POLICY_FILE.read_text(encoding="utf-8")})
    assert files.gateway is not None and cluster.gateway is not None
    assert cluster.gateway.value.spec == files.gateway.value.spec
    ((route,), (example,)) = cluster.models, files.models
    assert route.value.metadata.name == example.value.metadata.name
    assert route.value.spec.model_dump(exclude={"versions"}) == example.value.spec.model_dump(exclude={"versions"})
    assert route.value.spec.versions.keys() == example.value.spec.versions.keys()
    for name, version in route.value.spec.versions.items():
        assert version.endpoints is None and version.service is not None, name
        assert version.serves_grpc == example.value.spec.versions[name].serves_grpc, name


# --- the kustomization ----------------------------------------------------------------------


def test_kustomization_lists_exactly_the_manifests() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text(encoding="utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    # Plain resources only: this test reads the files, it does not run kustomize.
    assert not {"configMapGenerator", "secretGenerator", "patches", "components"} & kustomization.keys()
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    assert all((DEPLOY / name).is_file() for name in resources)
    present = {p.name for p in DEPLOY.glob("*.yaml")} - {KUSTOMIZATION.name}
    assert set(resources) == present  # examples/ is not applied


# --- Envoy ----------------------------------------------------------------------------------


def recorded_bootstrap_command() -> list[str]:
    """The `switchyard bootstrap ...` line envoy.yaml's header says its ConfigMap is the output of."""
    lines = [
        line.lstrip("# ").strip()
        for line in (DEPLOY / "envoy.yaml").read_text(encoding="utf-8").splitlines()
        if line.lstrip("# ").startswith("switchyard bootstrap ")
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def test_envoy_bootstrap_is_the_current_bootstrap_output(docs: list[Doc]) -> None:
    command = recorded_bootstrap_command()
    assert command[:2] == ["switchyard", "bootstrap"]
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--xds"] == f"{CONTROL_PLANE}:{XDS_PORT}"  # the control plane's Service
    output = subprocess.run(
        [sys.executable, "-m", "control_plane", *command[1:]], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert named(docs, "ConfigMap", "envoy-bootstrap")["data"]["envoy.yaml"] == output


def test_envoy_reads_the_bootstrap_and_is_probed_on_its_admin_port(docs: list[Doc]) -> None:
    bootstrap = yaml.safe_load(named(docs, "ConfigMap", "envoy-bootstrap")["data"]["envoy.yaml"])
    admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    deployment = named(docs, "Deployment", "envoy")
    (envoy,) = containers(deployment)
    args = envoy["args"]
    config = PurePosixPath(args[args.index("-c") + 1])
    (mount,) = [m for m in envoy["volumeMounts"] if PurePosixPath(m["mountPath"]) == config.parent]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "envoy-bootstrap"
    assert [item["path"] for item in volume["configMap"]["items"]] == [config.name]
    assert envoy["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probe_port(envoy, "readinessProbe") == admin_port


def test_each_envoy_replica_announces_its_own_node_id_and_admin_url(docs: list[Doc]) -> None:
    """The control plane reads canary statistics from the admin URL an Envoy announces; the
    bootstrap's admin listens on 0.0.0.0, so each replica adds its Pod IP (and Pod name as id)."""
    bootstrap = yaml.safe_load(named(docs, "ConfigMap", "envoy-bootstrap")["data"]["envoy.yaml"])
    admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    (envoy,) = containers(named(docs, "Deployment", "envoy"))
    args = envoy["args"]
    overlay = yaml.safe_load(args[args.index("--config-yaml") + 1])
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in envoy["env"]}
    assert overlay["node"]["id"] == "$(POD_NAME)" and env["POD_NAME"] == "metadata.name"
    assert overlay["node"]["metadata"] == {"switchyard.admin_url": f"http://$(POD_IP):{admin_port}"}
    assert env["POD_IP"] == "status.podIP"


def test_the_envoy_service_exposes_the_gateway_listener_only(docs: list[Doc]) -> None:
    gateway_port = named(docs, "Gateway", "edge")["spec"]["port"]
    service = named(docs, "Service", "envoy")
    assert service["spec"]["type"] == "LoadBalancer"
    (port,) = service["spec"]["ports"]
    (envoy,) = containers(named(docs, "Deployment", "envoy"))
    assert port_numbers(envoy)[port["targetPort"]] == gateway_port


# --- the control plane ----------------------------------------------------------------------


def test_control_plane_runs_two_replicas_under_a_disruption_budget(docs: list[Doc]) -> None:
    deployment = named(docs, "Deployment", CONTROL_PLANE)
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb for pdb in of_kind(docs, "PodDisruptionBudget") if selects(pdb["spec"]["selector"]["matchLabels"], labels)
    ]
    assert [pdb["spec"].get("minAvailable") for pdb in budgets] == [1]


def test_control_plane_command_probes_and_tokens(docs: list[Doc]) -> None:
    deployment = named(docs, "Deployment", CONTROL_PLANE)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "switchyard/control-plane:latest"
    args = container["args"]  # after the image's ENTRYPOINT, `python -m control_plane`
    options = build_parser().parse_args(args)
    assert {a for a in args if a.startswith("--")} <= serve_flags()
    assert options.command == "serve" and options.kubernetes is True and not options.policies
    assert (options.namespace, options.identity) == ("$(POD_NAMESPACE)", "$(POD_NAME)")
    assert options.lease_name == "switchyard-leader"
    assert options.xds_address == options.admin_address == "0.0.0.0"
    assert (options.xds_port, options.admin_port) == (XDS_PORT, ADMIN_PORT)
    # History and the audit log need a writable directory: the root filesystem is read-only.
    (state,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(options.state_dir)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == state["name"]]
    assert not state.get("readOnly") and "emptyDir" in volume
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert downward == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert port_numbers(container) == {"grpc-xds": XDS_PORT, "http-admin": ADMIN_PORT}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert probe_port(container, probe) == ADMIN_PORT
    # The tokens file: from the Secret, mounted read-only, in the admin API's format.
    tokens = PurePosixPath(options.tokens)
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == tokens.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = named(docs, "Secret", volume["secret"]["secretName"])
    assert secret["metadata"]["name"] == "switchyard-admin-tokens"
    assert [item["path"] for item in volume["secret"]["items"]] == [tokens.name]
    assert pod["serviceAccountName"] == CONTROL_PLANE


def test_example_tokens_are_in_the_admin_api_format(docs: list[Doc], tmp_path: Path) -> None:
    secret = named(docs, "Secret", "switchyard-admin-tokens")
    (name, text), *_ = secret["stringData"].items()
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert load_tokens(tmp_path / name)


@pytest.mark.parametrize("where", [w for w, d in all_docs() if d["kind"] == "Deployment"])
def test_containers_run_unprivileged(where: str) -> None:
    (deployment,) = [d for w, d in all_docs() if w == where]
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= container["resources"].keys()
    if name == CONTROL_PLANE:
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user


def test_rbac_is_least_privilege(docs: list[Doc]) -> None:
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    (role,) = of_kind(docs, "Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == ALLOWED_VERBS
    (binding,) = of_kind(docs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (account,) = of_kind(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert (
        named(docs, "Deployment", CONTROL_PLANE)["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )


# --- the model fleet ------------------------------------------------------------------------


def test_one_model_deployment_per_route_version_as_the_fleet_says(
    docs: list[Doc], custom_resources: list[Doc], model_deployments: list[Doc]
) -> None:
    (fleet,) = [doc for doc in policy_docs() if doc["kind"] == "Fleet"]
    versions = named(custom_resources, "ModelRoute", "sentiment")["spec"]["versions"]
    assert {d["metadata"]["name"] for d in model_deployments} == versions.keys() == fleet["spec"]["versions"].keys()
    for deployment in model_deployments:
        name = deployment["metadata"]["name"]
        args = model_args(containers(deployment)[0])
        run = fleet["spec"]["versions"][name]
        assert args.served_version == name
        assert args.model_dir == Path("/models") / run["model"]
        assert args.max_batch_size == run.get("max_batch_size", 32)
        assert args.host == "0.0.0.0"


def test_model_deployments_probe_drain_and_mount_the_store_read_only(
    docs: list[Doc], model_deployments: list[Doc]
) -> None:
    for deployment in model_deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        args = model_args(container)
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", name
        assert probe_port(container, "readinessProbe") == args.port, name
        assert port_numbers(container) == {"http": args.port, "grpc": args.grpc_port}, name
        # SIGKILL must not come before the drain grace (plus the requests it let in) is over.
        assert args.drain_grace_s is not None and args.drain_grace_s > 0, name
        assert pod["terminationGracePeriodSeconds"] > args.drain_grace_s, name
        (store,) = [
            m for m in container["volumeMounts"] if PurePosixPath(args.model_dir).is_relative_to(m["mountPath"])
        ]
        assert store["readOnly"] is True, name
        (volume,) = [v for v in pod["volumes"] if v["name"] == store["name"]]
        assert volume["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}, name
        assert "replicas" not in deployment["spec"], f"{name}: its HorizontalPodAutoscaler owns the replica count"
    claim = named(docs, "PersistentVolumeClaim", "model-store")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_each_model_deployment_has_its_autoscaler(docs: list[Doc], model_deployments: list[Doc]) -> None:
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert autoscalers.keys() == {d["metadata"]["name"] for d in model_deployments}
    for name, hpa in autoscalers.items():
        spec = hpa["spec"]
        assert hpa["apiVersion"] == "autoscaling/v2", name
        assert spec["scaleTargetRef"]["kind"] == "Deployment", name
        assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10), name
        assert spec["metrics"] == [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
            }
        ], name
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300, name
        assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0, name
        (container,) = containers(named(docs, "Deployment", name))
        assert "cpu" in container["resources"]["requests"], f"{name}: CPU utilization is relative to the request"


# --- how the pieces fit ---------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_service_selects_a_deployment_and_its_ports(path: Path) -> None:
    """Within its file set (the kustomization, or one example file on its own)."""
    docs = kustomized_docs() if path.parent == DEPLOY else read_docs(path)
    for service in of_kind(read_docs(path), "Service"):
        name = service["metadata"]["name"]
        matching = [
            d
            for d in of_kind(docs, "Deployment")
            if selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matching) == 1, name
        (deployment,) = matching
        assert selects(
            deployment["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
        )
        ports = {n: p for c in containers(deployment) for n, p in port_numbers(c).items()}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), f"{name}: {port}"


def test_every_route_version_names_a_service_port_that_exists(docs: list[Doc], custom_resources: list[Doc]) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for route in of_kind(custom_resources, "ModelRoute"):
        for version, spec in route["spec"]["versions"].items():
            ref = spec["service"]
            assert ref["name"] in services, version
            ports = services[ref["name"]]["spec"]["ports"]
            for key in ("port", "grpc_port"):
                if key in ref:
                    wanted = ref[key]
                    assert any(p["name"] == wanted or p["port"] == wanted for p in ports), f"{version}: {key} {wanted}"


def test_the_sidecar_example_talks_over_localhost() -> None:
    (deployment,) = read_docs(DEPLOY / "examples" / "sidecar.yaml")
    assert deployment["kind"] == "Deployment"
    app, model = containers(deployment)
    args = model_args(model)
    assert args.host == "127.0.0.1"
    assert app["command"][app["command"].index("--model-url") + 1] == f"http://127.0.0.1:{args.port}"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > args.drain_grace_s
