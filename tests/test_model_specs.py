"""Every family says, beside its definition, what the rest of the zoo needs to know about it: its published
weights (or none), its stages for freezing, its paper layer names; and no code outside zoo/models/ names a
family, so adding one touches zoo/models/ only."""

import ast
import io
import pathlib
import re
import tokenize

import pytest
import torch

from zoo.models import Layer, Weights, create, get_spec, list_models

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAMILY = re.compile(r"googlenet|resnet|vgg|alexnet|zfnet|lenet", re.IGNORECASE)
NO_WEIGHTS = {"lenet5", "alexnet_v1", "zfnet"}  # nothing published: the specs say weights=None

# Family names outside zoo/models/ that are data a user reads, not knowledge of a family: the default
# model of `zoo train` / `zoo augment-preview`, and example commands in help and error messages.
ALLOWED = {
    ("zoo/train/config.py", '"lenet5"'),
    ("zoo/commands/augment_preview.py", '"lenet"'),
    ("zoo/commands/augment_preview.py", '"resnet18"'),
    ("zoo/commands/augment_preview.py", '"(default lenet for MNIST, resnet18 for image folders)."'),
    ("zoo/commands/train.py", '"which model? e.g. `zoo train lenet` (`zoo models` lists them)"'),
    ("zoo/rundir.py", 'f"no finished run under {root}/ (train one with `zoo train lenet`)"'),
}


@pytest.mark.parametrize("name", list_models())
def test_every_spec_says_what_weights_it_publishes(name):
    weights = get_spec(name).weights
    if name in NO_WEIGHTS:
        assert weights is None
    else:
        assert isinstance(weights, Weights) and weights.url().startswith("https://download.pytorch.org/")
        assert re.fullmatch(r"[0-9a-f]{8}", weights.prefix) and weights.file.endswith(".pth")


@pytest.mark.parametrize("name", list_models())
def test_every_spec_has_stages_that_cover_the_model_once(name):
    spec = get_spec(name)
    with torch.device("meta"):
        model = create(name, **spec.training_kwargs)  # auxiliary heads too: they train with the head
    stages = spec.stages(model)
    names = [n for n, _ in stages]
    assert len(stages) >= 3 and names[-1] == "head" and len(set(names)) == len(names)
    owned = [id(p) for _, modules in stages for m in modules for p in m.parameters()]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())  # every parameter, exactly once
    assert model.get_submodule(spec.head) in stages[-1][1]


@pytest.mark.parametrize("name", list_models())
def test_every_spec_names_the_classifier_layer_of_each_head(name):
    """`spec.heads` is the one list of heads (the head stage and transfer learning's new heads both read
    it): each classifier layer maps to the classes, and lies in its head's module."""
    spec = get_spec(name)
    with torch.device("meta"):
        model = create(name, num_classes=7, **spec.training_kwargs)
    heads = spec.heads(model)
    assert heads[0] == (spec.head, spec.head) and len(heads) == 1 + len(spec.aux_modules(model))
    for module, layer in heads:
        assert layer == module or layer.startswith(module + ".")
        assert model.get_submodule(layer).weight.shape[0] == 7


@pytest.mark.parametrize("name", list_models())
def test_every_spec_names_its_layers_as_the_paper_does(name):
    spec = get_spec(name)
    with torch.device("meta"):
        model = create(name)
    layers = spec.layers(model)
    modules = dict(model.named_modules())
    assert layers and all(isinstance(layer, Layer) for layer in layers)
    assert all(layer.name in modules and set(layer.modules) <= set(modules) for layer in layers)
    assert len({layer.label for layer in layers}) == len(layers)


def test_auxiliary_heads_come_from_the_spec():
    with_aux = [n for n in list_models() if get_spec(n).aux]
    assert with_aux == ["googlenet"]
    spec = get_spec("googlenet")
    assert spec.aux_modules(create("googlenet", num_classes=3)) == []
    model = create("googlenet", num_classes=3, **spec.training_kwargs).train()
    assert spec.aux_modules(model) == ["aux1", "aux2"]
    assert len(model(torch.zeros(2, 3, 64, 64))) == 3  # logits and one per auxiliary head
    assert spec.weights.mean == spec.weights.std == (0.5,) * 3  # the weights expect [-1, 1] inputs


def _family_names_in_code(path: pathlib.Path) -> list[str]:
    """The tokens of `path` naming a family, comments and docstrings left out."""
    text = path.read_text()
    docstrings = {
        (node.body[0].value.lineno, node.body[0].value.col_offset)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    return [
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type not in (tokenize.COMMENT,) and tok.start not in docstrings and FAMILY.search(tok.string)
    ]


def test_no_code_outside_zoo_models_names_a_family():
    found = []
    for package in ("zoo", "export", "infer", "serve"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("zoo/models/"):
                continue
            found += [f"{rel}: {tok}" for tok in _family_names_in_code(path) if (rel, tok) not in ALLOWED]
    assert found == [], "family knowledge belongs in zoo/models/ (the model spec): " + "; ".join(found)
