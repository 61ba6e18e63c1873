"""Helpers for the deployment tests: the kustomizations under deploy/ rendered by `kubectl kustomize`, the
image the Dockerfiles describe (its ENTRYPOINT, CMD and ENV), and the command line a container of a
rendered manifest runs in that image, as the kubelet puts it together."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILES = (ROOT / "Dockerfile", ROOT / "Dockerfile.gpu")
KUBERNETES_VERSION = "1.32.0"  # the schemas kubernetes-validate checks against (it ships them, offline)
KUSTOMIZATIONS = sorted(p.parent.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("kustomization.yaml"))


def tool(name: str) -> str:
    """The path of a command-line tool the deployment tests need; the test skips, saying which, where it
    is missing (CI has them: kubectl on the machine, the others from the `dev` extra). The Python
    environment's own bin folder comes first, activated or not."""
    beside = pathlib.Path(sys.executable).parent / name
    path = str(beside) if beside.is_file() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (kubectl: the machine's; hadolint, kubernetes-validate: the dev extra)")
    return path


def render(kustomization: str) -> list[dict]:
    """The objects `kubectl kustomize deploy/KUSTOMIZATION` renders."""
    import yaml

    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"kubectl kustomize deploy/{kustomization}:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: list[dict], kind: str) -> dict:
    """The one object of `kind` among `objects`."""
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


@dataclasses.dataclass(frozen=True)
class Image:
    """What the final stage of a Dockerfile gives a container: ENTRYPOINT, CMD (exec form), ENV, USER,
    WORKDIR."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    user: str
    workdir: str


def image(dockerfile: pathlib.Path = DOCKERFILES[0]) -> Image:
    """Parse the final stage of `dockerfile` (instructions after its last FROM, continuation lines joined)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    found: dict = {"ENTRYPOINT": [], "CMD": [], "ENV": {}, "USER": "", "WORKDIR": "/"}
    for line in lines[last + 1 :]:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word in ("ENTRYPOINT", "CMD"):
            found[word] = json.loads(rest)
        elif word == "ENV":
            found["ENV"].update(pair.split("=", 1) for pair in shlex.split(rest))
        elif word in ("USER", "WORKDIR"):
            found[word] = rest.strip()
    return Image(found["ENTRYPOINT"], found["CMD"], found["ENV"], found["USER"], found["WORKDIR"])


def command_line(container: dict, img: Image) -> list[str]:
    """The argv a container runs in `img`, as Kubernetes builds it: its command (else the image's
    ENTRYPOINT), then its args (else, where it gives no command, the image's CMD)."""
    if container.get("command"):
        return [*container["command"], *container.get("args", [])]
    args = container["args"] if "args" in container else img.cmd
    return [*img.entrypoint, *args]


def deployment_container(objects: list[dict]) -> tuple[dict, dict]:
    """(the pod spec, its one container) of the Deployment among `objects`."""
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def runtime_container(objects: list[dict]) -> tuple[dict, dict]:
    """(the ServingRuntime spec, its one container) of the ClusterServingRuntime among `objects`."""
    spec = find(objects, "ClusterServingRuntime")["spec"]
    (container,) = spec["containers"]
    return spec, container


def env_value(container: dict, name: str) -> str | None:
    """The plain value (not valueFrom) a container's env gives `name`, or None."""
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


CRDS = ROOT / "tests" / "data" / "crds"
CRD_SCHEMAS = {  # (apiVersion, kind) -> the schema file in tests/data/crds (its SOURCE in README.md there)
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.v1alpha1.yaml",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "serving.kserve.io_clusterservingruntimes.v1alpha1.yaml",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.v1beta1.yaml",
}


def is_custom(obj: dict) -> bool:
    """Whether `obj` is a custom resource (its group is a CRD's, KEDA's or KServe's), not a Kubernetes kind."""
    return obj["apiVersion"].split("/")[0] in {api.split("/")[0] for api, _ in CRD_SCHEMAS}


def kubernetes_definitions() -> dict:
    """The pinned Kubernetes version's strict definitions (kubernetes-validate ships them; its $id is
    https://kubernetes.io/api/_definitions.json)."""
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (the dev extra)")
    from kubernetes_validate.utils import schema_contents

    path = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json"
    return schema_contents(path, KUBERNETES_VERSION)


def _strict(node, definitions: dict) -> None:
    """As the API server's strict field validation (kubectl's default) does: an unknown field is an error.
    Every object schema with properties and no additionalProperties or x-kubernetes-preserve-unknown-fields
    refuses other keys; `x-zoo-inline: NAME` first adds the fields of that Kubernetes type (a Go struct
    embedded inline in the CRD's type)."""
    import copy

    if isinstance(node, list):
        for item in node:
            _strict(item, definitions)
        return
    if not isinstance(node, dict):
        return
    inline = node.pop("x-zoo-inline", None)
    if inline is not None:
        for name, schema in definitions["$defs"][inline]["properties"].items():
            node["properties"].setdefault(name, copy.deepcopy(schema))
    if "properties" in node and "additionalProperties" not in node:
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    for value in list(node.values()):
        _strict(value, definitions)


def crd_validator(api_version: str, kind: str):
    """A jsonschema validator (draft 2020-12) of a custom resource, from its schema in tests/data/crds,
    strict, with the Kubernetes types it refers to resolved in the pinned version's definitions."""
    import yaml
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    definitions = kubernetes_definitions()
    schema = yaml.safe_load((CRDS / CRD_SCHEMAS[api_version, kind]).read_text())
    _strict(schema, definitions)
    schema["$id"] = f"https://kubernetes.io/crds/{kind.lower()}"  # so /api/_definitions.json refs resolve
    registry = Resource.from_contents(definitions) @ Registry()
    return Draft202012Validator(schema, registry=registry)
