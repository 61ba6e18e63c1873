"""Imports go one way (DESIGN.md, "Layers"): a module imports its own layer or those below, never above,
function-level imports included. The layers, bottom to top: the core (every `zoo` module but the CLI),
`infer`, `export` (it verifies with `infer`), `serve`, the CLI (`zoo.cli`, `zoo.commands`).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "export", "infer", "serve")
# (prefixes, height): 0 the core, 1 infer, 2 export, 3 serve, 4 the CLI; the CLI lives inside `zoo`, so its
# prefixes are tried first
LAYERS = (
    (("zoo.cli", "zoo.commands", "zoo.__main__"), 4),
    (("zoo",), 0),
    (("infer",), 1),
    (("export",), 2),
    (("serve",), 3),
)
NAMES = ("the core", "infer", "export", "serve", "the CLI")


def layer_of(module: str) -> int:
    """The height of `module`'s layer."""
    for prefixes, height in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return height
    raise ValueError(f"{module} is in no layer")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: pathlib.Path, source: str):
    """(line, module) for every import of our packages in `source`, at any depth, relative ones resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from zoo import cli` imports zoo.cli: name each imported member that may be a module
            names = [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield node.lineno, name


def upward_imports(path: pathlib.Path, source: str) -> list[str]:
    mine = layer_of(module_name(path))
    return [
        f"{path.relative_to(ROOT)}:{line}: {module_name(path)} ({NAMES[mine]}) imports {name} ({NAMES[theirs]})"
        for line, name in imported(path, source)
        if (theirs := layer_of(name)) > mine
    ]


def sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_module_imports_a_layer_above_its_own():
    found = [line for path in sources() for line in upward_imports(path, path.read_text())]
    assert not found, "imports that go up a layer (DESIGN.md, Layers):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "where, source",
    [
        ("zoo/train/precision.py", "from infer import hardware\n"),  # module level
        ("zoo/viz/report.py", "def f():\n    from infer.answer import top_k\n"),  # inside a function
        ("infer/predictor.py", "def f():\n    import export.onnx\n"),
        ("export/onnx.py", "from serve import app\n"),
        ("serve/app.py", "def f():\n    from zoo.errors import UserError\n    from zoo import cli\n"),
        ("infer/classify.py", "from ..export import quantize\n"),  # relative, one level up
    ],
)
def test_an_upward_import_is_caught(where, source):
    """The check itself: each of these goes up a layer and must be reported, with its line."""
    found = upward_imports(ROOT / where, source)
    assert found and all(where in f for f in found), found


def test_imports_down_or_across_pass():
    assert not upward_imports(ROOT / "serve/app.py", "from infer import load\nfrom export import onnx\n")
    assert not upward_imports(ROOT / "zoo/commands/train.py", "from serve import worker\nfrom zoo import cli\n")
    assert not upward_imports(ROOT / "export/quantize.py", "from . import onnx\nfrom infer.predictor import load\n")


def test_every_package_module_has_a_layer():
    for path in sources():
        layer_of(module_name(path))  # raises for a module outside every layer
