"""Transfer learning: torchvision checkpoints load with a new head, inputs adapt, frozen stays frozen."""

import dataclasses
import functools
import hashlib
import http.server
import json
import threading

import pytest
import torch

from zoo import download
from zoo.models import Weights, create, get_spec, list_models, registry
from zoo.train import transfer
from zoo.train.transfer import PretrainedError, freeze, load_pretrained, param_groups


def publish(monkeypatch, arch: str, weights: Weights) -> None:
    """Let `arch`'s spec publish `weights` for the length of a test."""
    spec = get_spec(arch)
    monkeypatch.setitem(registry._REGISTRY, spec.name, dataclasses.replace(spec, weights=weights))


def checkpoint_like(shapes: dict) -> dict:
    """A torchvision-layout state dict whose every tensor is distinct (cheap to make, easy to check)."""
    return {
        k: (torch.tensor(0) if k.endswith("num_batches_tracked") else torch.full(shape, 1.0 + (i % 97) / 100))
        for i, (k, shape) in enumerate(shapes.items())
    }


@pytest.fixture(scope="module")
def reference(shared):
    return json.loads((shared / "fixtures" / "torchvision_reference.json").read_text())["models"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "alexnet",
        "vgg11",
        "vgg16",
        "vgg11_bn",
        "vgg16_bn",
        "googlenet",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
    ],
)
def test_every_torchvision_fixture_loads_with_a_10_class_head(name, reference, tmp_path):
    ckpt = checkpoint_like(reference[name]["state_dict_shapes"])
    path = tmp_path / f"{name}.pth"
    torch.save(ckpt, path)
    model = create(name, num_classes=10)
    notes = []
    prov = load_pretrained(model, name, str(path), log=notes.append)
    own = model.state_dict()
    head = {k for k in own if k.startswith(transfer.get_spec(name).head + ".")}
    assert own[sorted(head)[-1]].shape[0] == 10
    assert all(torch.equal(own[k], v) for k, v in ckpt.items() if k not in head)
    assert prov["new_head"] and prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert any("1000 -> 10 classes" in n for n in notes)


def test_grayscale_data_folds_conv1(reference, tmp_path):
    ckpt = checkpoint_like(reference["resnet18"]["state_dict_shapes"])
    ckpt["conv1.weight"] = torch.randn(64, 3, 7, 7)
    torch.save(ckpt, tmp_path / "r18.pth")
    model = create("resnet18", num_classes=2, in_channels=1)
    notes = []
    load_pretrained(model, "resnet18", str(tmp_path / "r18.pth"), log=notes.append)
    assert torch.equal(model.conv1.weight, ckpt["conv1.weight"].sum(1, keepdim=True))  # the same sum: exact
    assert any("3-channel filters to 1 input channel" in n for n in notes)


def test_wrong_architecture_names_keys_unless_partial(reference, tmp_path):
    ckpt = checkpoint_like(reference["resnet18"]["state_dict_shapes"])
    torch.save(ckpt, tmp_path / "r18.pth")
    model = create("resnet34")
    with pytest.raises(PretrainedError, match=r"missing \(layer1\.2\.conv1\.weight"):
        load_pretrained(model, "resnet34", str(tmp_path / "r18.pth"))
    prov = load_pretrained(model, "resnet34", str(tmp_path / "r18.pth"), partial=True, log=lambda s: None)
    assert prov["loaded_tensors"] < len(model.state_dict())
    assert torch.equal(model.layer1[0].conv1.weight, ckpt["layer1.0.conv1.weight"])


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(PretrainedError, match="model.safetensors is missing"):
        load_pretrained(create("lenet"), "lenet", str(tmp_path))


def test_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="not a loadable weights file"):
        load_pretrained(create("lenet"), "lenet", str(tmp_path / "x.pth"))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture
def http_dir(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_imagenet_download_from_a_local_mirror_checks_sha256(http_dir, tmp_path, monkeypatch):
    root, url = http_dir
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_WEIGHTS_URL", url)
    src = create("lenet", num_classes=10)
    torch.save(src.state_dict(), tmp_path / "ckpt.pth")
    data = (tmp_path / "ckpt.pth").read_bytes()
    name = f"lenet5-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (root / name).write_bytes(data)
    publish(monkeypatch, "lenet5", Weights(name))

    model = create("lenet", num_classes=3)
    prov = load_pretrained(model, "lenet", "imagenet", log=lambda s: None)
    assert (tmp_path / "cache" / "weights" / name).read_bytes() == data
    assert torch.equal(model.features[0].weight, src.features[0].weight)
    assert prov["source"] == "imagenet" and prov["sha256"].startswith(name[7:15])

    bad = "lenet5-00000000.pth"  # a file whose hash does not match its name
    (root / bad).write_bytes(data)
    publish(monkeypatch, "lenet5", Weights(bad))
    with pytest.raises(PretrainedError, match="sha256"):
        load_pretrained(model, "lenet", "imagenet")
    assert not (tmp_path / "cache" / "weights" / bad).exists()  # nothing half-written


def test_imagenet_full_digest_is_checked_where_known(http_dir, tmp_path, monkeypatch):
    root, url = http_dir
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_WEIGHTS_URL", url)
    torch.save(create("lenet", num_classes=10).state_dict(), tmp_path / "ckpt.pth")
    data = (tmp_path / "ckpt.pth").read_bytes()
    full = hashlib.sha256(data).hexdigest()
    name = f"lenet5-{full[:8]}.pth"  # the name's 8 hex digits match: only the full digest can refuse it
    (root / name).write_bytes(data)
    wrong = full[:-1] + ("0" if full[-1] != "0" else "1")  # the last hex digit differs
    publish(monkeypatch, "lenet5", Weights(name, sha256=wrong))
    with pytest.raises(PretrainedError) as e:
        load_pretrained(create("lenet", num_classes=3), "lenet", "imagenet")
    assert "checksum mismatch" in str(e.value) and full in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "cache" / "weights" / name).exists()
    publish(monkeypatch, "lenet5", Weights(name, sha256=full))
    prov = load_pretrained(create("lenet", num_classes=3), "lenet", "imagenet", log=lambda s: None)
    assert prov["sha256"] == full
    (tmp_path / "cache" / "weights" / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a corrupt cache
    load_pretrained(create("lenet", num_classes=3), "lenet", "imagenet", log=lambda s: None)  # fetched again
    assert (tmp_path / "cache" / "weights" / name).read_bytes() == data


def test_imagenet_digest_table_holds_full_digests_of_the_published_files():
    published = [w for w in (get_spec(n).weights for n in list_models()) if w is not None]
    assert [w.file for w in published if w.sha256] == ["resnet18-f37072fd.pth"]
    for w in published:
        assert w.digest == (w.sha256 or w.file.rsplit("-", 1)[1].split(".")[0])  # the 8 digits of its name
        assert w.digest.startswith(w.file.rsplit("-", 1)[1].split(".")[0])
    with pytest.raises(ValueError, match="64 hex digits"):
        Weights("x-0123abcd.pth", sha256="0123abcd" + "0" * 55)
    with pytest.raises(ValueError, match="starting with 0123abcd"):
        Weights("x-0123abcd.pth", sha256="f" * 64)


def test_imagenet_offline_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    monkeypatch.setenv("ZOO_WEIGHTS_URL", "http://127.0.0.1:9/")  # discard port: nothing listens
    with pytest.raises(PretrainedError) as e:
        load_pretrained(create("resnet18"), "resnet18", "imagenet")
    msg = str(e.value)
    assert "resnet18-f37072fd.pth" in msg and str(tmp_path / "weights") in msg and "\n" not in msg
    with pytest.raises(PretrainedError, match="no published ImageNet weights for zfnet"):
        load_pretrained(create("zfnet"), "zfnet", "imagenet")


def _train_steps(model, groups, steps=3, size=32, classes=4):
    groups = [{**g, "lr": 0.1 * g["lr_mult"]} for g in groups]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        x = torch.randn(4, 3, size, size, generator=g)
        y = torch.randint(0, classes, (4,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_frozen_backbone_never_changes_including_batchnorm_statistics():
    torch.manual_seed(0)
    model = create("resnet18", num_classes=4)
    info = freeze(model, "resnet18", "backbone")
    assert info["trainable_stages"] == ["head"] and info["trainable_params"] == 512 * 4 + 4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_steps(model, param_groups(model, "resnet18"))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_freeze_last_n_stages_and_lr_multiplier():
    torch.manual_seed(0)
    model = create("resnet18", num_classes=4)
    info = freeze(model, "resnet18", 2)
    assert info["trainable_stages"] == ["layer4", "head"]
    groups = param_groups(model, "resnet18", backbone_lr_mult=0.1)
    assert [g["lr_mult"] for g in groups] == [1.0, 0.1] and [g["name"] for g in groups] == ["head", "backbone"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_steps(model, groups)
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer4", "fc"}


def test_freeze_rejects_nonsense():
    with pytest.raises(PretrainedError):
        freeze(create("lenet"), "lenet", "most")
    with pytest.raises(PretrainedError):
        freeze(create("lenet"), "lenet", 0)


def test_download_fetch_reuses_a_good_cached_file(http_dir, tmp_path):
    root, url = http_dir
    (root / "a.bin").write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    dest = download.fetch(url + "a.bin", tmp_path / "a.bin", digest=digest, progress=False)
    (root / "a.bin").unlink()
    assert download.fetch(url + "a.bin", dest, digest=digest).read_bytes() == b"abc"
