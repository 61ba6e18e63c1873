"""The images: hadolint reports nothing on either Dockerfile; both run the same server the same way; and the
image's ENTRYPOINT with each manifest's arguments is the command line the pod contract
(tests/test_deploy_pod.py) runs. No image is built here (no Docker engine on these machines)."""

import re
import subprocess

import pytest
from manifests import (
    DOCKERFILES,
    KUSTOMIZATIONS,
    ROOT,
    command_line,
    deployment_container,
    env_value,
    image,
    render,
    runtime_container,
    tool,
)

POD_COMMAND = ["zoo", "serve", "/mnt/models", "--host", "0.0.0.0", "--port", "8080"]


def hadolint(path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("hadolint"), str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_reports_nothing(dockerfile):
    out = hadolint(dockerfile)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


def test_hadolint_reports_what_it_should(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\n")
    out = hadolint(bad)
    assert out.returncode != 0 and "DL3007" in out.stdout and "DL3013" in out.stdout


def test_both_images_run_the_same_server_the_same_way():
    cpu, gpu = map(image, DOCKERFILES)
    assert cpu == gpu
    assert cpu.entrypoint == ["zoo", "serve"] and cpu.user.split(":")[0] not in ("", "0", "root")
    scripts = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^zoo = "zoo\.cli:main"$', scripts, re.M)  # the console script ENTRYPOINT runs


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_image_and_the_manifests_form_the_pod_contracts_command_line(kustomization):
    img = image()
    objects = render(kustomization)
    if kustomization == "overlays/kserve":
        _, container = runtime_container(objects)
        uid = container["securityContext"]["runAsUser"]
        name = POD_COMMAND.index("/mnt/models") + 1
        expected = [*POD_COMMAND[:name], "--name", "{{.Name}}", *POD_COMMAND[name:]]
    else:
        pod, container = deployment_container(objects)
        uid = pod["securityContext"]["runAsUser"]
        expected = POD_COMMAND
        assert img.entrypoint + img.cmd == command_line(container, img)  # `docker run IMAGE` serves as the pod does
    assert "command" not in container  # the image's ENTRYPOINT runs
    assert command_line(container, img) == expected
    assert str(uid) == img.user.split(":")[0]
    assert env_value(container, "ZOO_CACHE_DIR") == img.env["ZOO_CACHE_DIR"] == img.env["HOME"]


def test_the_image_holds_what_pip_installs():
    text = (ROOT / "pyproject.toml").read_text()
    packages = re.findall(r'"(\w+)"', re.search(r"^include = \[(.*?)\]", text, re.M).group(1))
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for dockerfile in DOCKERFILES:
        copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile.read_text(), re.M)
        sources = {s for line in copied for s in line.split()}
        for needed in ("pyproject.toml", "README.md", *packages):
            assert needed in sources, f"{dockerfile.name} does not copy {needed}"
            assert f"!{needed}" in ignored or f"!{needed}/" in ignored, f".dockerignore leaves out {needed}"
