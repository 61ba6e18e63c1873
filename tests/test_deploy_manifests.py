"""deploy/: every kustomization renders with `kubectl kustomize`; every Kubernetes object passes
`kubernetes-validate --strict` at a pinned version; every KEDA / KServe custom resource passes its CRD's
schema (tests/data/crds) with jsonschema; and the facts the pods rely on hold in every overlay (the drain fits
the grace period, the probes name the health endpoints, one writable folder, the KServe runtime runs the
base's container, KEDA reads a metric the server exports)."""

import copy
import re
import subprocess

import pytest
import yaml
from manifests import (
    KUBERNETES_VERSION,
    KUSTOMIZATIONS,
    command_line,
    crd_validator,
    deployment_container,
    env_value,
    find,
    image,
    is_custom,
    render,
    runtime_container,
    tool,
)

GRACE_DEFAULT = 30  # Kubernetes' terminationGracePeriodSeconds where a pod spec gives none (KServe's runtimes)
WITH_DEPLOYMENT = [k for k in KUSTOMIZATIONS if k != "overlays/kserve"]


@pytest.fixture(scope="module")
def rendered():
    return {k: render(k) for k in KUSTOMIZATIONS}


def kubernetes_validate(tmp_path, objects: list[dict]) -> subprocess.CompletedProcess:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    command = [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_kustomizations_are_the_four_overlays_of_the_issue():
    assert KUSTOMIZATIONS == ["base", "overlays/gpu", "overlays/keda", "overlays/kserve"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_passes_the_kubernetes_schemas_strictly(kustomization, rendered, tmp_path):
    objects = [o for o in rendered[kustomization] if not is_custom(o)]
    if kustomization == "overlays/kserve":
        assert objects == []  # KServe makes the pods: the overlay holds custom resources only
        return
    out = kubernetes_validate(tmp_path, objects)
    assert out.returncode == 0, out.stdout + out.stderr
    passed = re.findall(r"passed for resource (\S+) against version", out.stdout + out.stderr)
    assert sorted(passed) == sorted(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objects)


def test_kubernetes_validate_refuses_an_unknown_field(rendered, tmp_path):
    deployment = copy.deepcopy(find(rendered["base"], "Deployment"))
    _, container = deployment_container([deployment])
    container["livenessProbe"]["httpGet"]["paht"] = "/v2/health/live"  # a typo kubectl apply would refuse
    out = kubernetes_validate(tmp_path, [deployment])
    assert out.returncode != 0 and "paht" in out.stdout + out.stderr


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_custom_resource_passes_its_crd_schema(kustomization, rendered):
    for obj in (o for o in rendered[kustomization] if is_custom(o)):
        errors = [e.message for e in crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj)]
        assert errors == [], f"{obj['kind']}/{obj['metadata']['name']}: {errors}"


def test_the_crd_schemas_refuse_what_the_api_server_would(rendered):
    service = copy.deepcopy(find(rendered["overlays/kserve"], "InferenceService"))
    model = service["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")  # wrong case: unknown field
    runtime = copy.deepcopy(find(rendered["overlays/kserve"], "ClusterServingRuntime"))
    runtime["spec"]["supportedModelFormats"][0]["priority"] = 0  # below the CRD's minimum, 1
    runtime["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"  # inside the embedded Container
    scaled = copy.deepcopy(find(rendered["overlays/keda"], "ScaledObject"))
    del scaled["spec"]["triggers"][0]["metadata"]  # required
    for obj, expected in ((service, "storageURI"), (runtime, "paht"), (runtime, "minimum"), (scaled, "metadata")):
        messages = " ".join(e.message for e in crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj))
        assert expected in messages


def containers(rendered, kustomization: str) -> tuple[dict, dict, int]:
    """(pod-level spec, container, grace period) of the server in `kustomization`'s manifests."""
    if kustomization == "overlays/kserve":
        spec, container = runtime_container(rendered[kustomization])
        return spec, container, GRACE_DEFAULT
    pod, container = deployment_container(rendered[kustomization])
    return pod, container, pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_drain_fits_in_the_grace_period(kustomization, rendered):
    _, container, grace = containers(rendered, kustomization)
    drain = float(env_value(container, "ZOO_SERVE_DRAIN_DELAY"))
    graceful = float(env_value(container, "ZOO_SERVE_TIMEOUT_GRACEFUL_SHUTDOWN"))
    assert drain > 0 and drain + graceful < grace


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_probes_name_the_health_endpoints_on_the_servers_port(kustomization, rendered):
    _, container, _ = containers(rendered, kustomization)
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    argv = command_line(container, image())
    served = int(argv[argv.index("--port") + 1])
    expected = {"startupProbe": "/v2/health/ready", "readinessProbe": "/v2/health/ready"}
    expected["livenessProbe"] = "/v2/health/live"
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == served
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 120


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_pod_is_locked_down_with_one_writable_folder(kustomization, rendered):
    pod, container, _ = containers(rendered, kustomization)
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    cache = env_value(container, "ZOO_CACHE_DIR")
    assert "emptyDir" in volumes[mounts[cache]["name"]]
    writable = [path for path, m in mounts.items() if not m.get("readOnly")]
    assert writable == [cache]
    if kustomization != "overlays/kserve":  # KServe mounts /mnt/models itself, read-only
        assert mounts["/mnt/models"]["readOnly"] and volumes[mounts["/mnt/models"]["name"]]["persistentVolumeClaim"]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert limits["cpu"] == requests["cpu"] and "memory" in limits


def test_the_kserve_runtime_runs_the_base_container(rendered):
    _, base = deployment_container(rendered["base"])
    spec, runtime = runtime_container(rendered["overlays/kserve"])
    assert runtime["name"] == "kserve-container" and spec["protocolVersions"] == ["v2"]
    assert runtime["image"] == base["image"]
    base_args = base["args"]
    assert runtime["args"] == [base_args[0], "--name", "{{.Name}}", *base_args[1:]]
    assert [v for v in base["env"] if "value" in v] == runtime["env"]  # all but the optional API key Secret
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        strip = ({k: v for k, v in base[probe].items() if k != "httpGet"}, base[probe]["httpGet"]["path"])
        assert strip == ({k: v for k, v in runtime[probe].items() if k != "httpGet"}, runtime[probe]["httpGet"]["path"])
    assert runtime["resources"] == base["resources"]
    service = find(rendered["overlays/kserve"], "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == find(rendered["overlays/kserve"], "ClusterServingRuntime")["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in spec["supportedModelFormats"]]
    assert model["protocolVersion"] == "v2"  # KServe assumes v1 otherwise, which this runtime does not speak


def test_keda_scales_the_deployment_on_a_metric_the_server_exports(rendered):
    from serve.metrics import Metrics

    objects = rendered["overlays/keda"]
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]  # KEDA makes its own
    scaled = find(objects, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == find(objects, "Deployment")["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and float(trigger["metadata"]["threshold"]) > 0
    exported = Metrics("lenet5", "onnxruntime", "cpu").render().decode()
    names = set(re.findall(r"\b(zoo_\w+)\{", trigger["metadata"]["query"]))
    assert names == {"zoo_queue_depth"} and re.search(r"^zoo_queue_depth \S+$", exported, re.M)


def test_the_gpu_overlay_asks_for_one_gpu_in_the_gpu_image(rendered):
    _, base = deployment_container(rendered["base"])
    _, gpu = deployment_container(rendered["overlays/gpu"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["image"].split(":")[0] == base["image"].split(":")[0] + "-gpu"
    assert gpu["args"] == base["args"] and gpu["env"] == base["env"]
