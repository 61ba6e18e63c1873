"""One owner for the run directory's vocabulary: every file `zoo train`, `zoo evaluate` and `zoo export`
write is one of `zoo.rundir`'s names, and no other module spells an artifact or tensor name itself."""

import ast
import pathlib

from click.testing import CliRunner
from test_train import tiny_mnist  # noqa: F401  (a fixture)

from zoo import rundir
from zoo.cli import main
from zoo.train import board

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "export", "infer", "serve")


def file_names() -> set[str]:
    """Every file name zoo.rundir defines (not the suffixes and patterns)."""
    names = {
        v
        for k, v in vars(rundir).items()
        if k.isupper() and isinstance(v, str) and " " not in v and "." in v.strip(".") and "{" not in v
    }
    return names | {name for _, name in rundir.TRITON_FILES.values()}


def vocabulary(epochs: int) -> set[str]:
    engines = {rundir.engine_card(e).name for e in (rundir.ENGINE, rundir.ENGINE_INT8)}
    return file_names() | engines | {rundir.SNAPSHOT.format(epoch=e) for e in range(1, epochs + 1)}


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_every_file_written_into_a_run_is_a_rundir_name(tiny_mnist, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    cli(
        "train",
        "lenet",
        "--data",
        tiny_mnist,
        "--epochs",
        2,
        "--batch-size",
        32,
        "--workers",
        0,
        "--augment",
        "none",
        "--snapshot-every",
        1,
        "--output",
        run,
    )
    cli("evaluate", run, "--workers", 0)
    cli("export", run, "--onnx", "--fp16", "--int8", "--calibration-images", 100, "--max-accuracy-drop", 100)
    written = {p.name for p in run.iterdir() if not p.name.startswith(rundir.EVENTS_PREFIX)}
    assert len(list(run.glob(rundir.EVENTS_PREFIX + "*"))) == (1 if board.available() else 0)
    assert {
        rundir.CONFUSION,
        rundir.ONNX,
        rundir.ONNX_FP16,
        rundir.ONNX_INT8,
        rundir.SNAPSHOT.format(epoch=2),
    } <= written
    assert written <= vocabulary(epochs=2), written - vocabulary(epochs=2)


def _constants(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module, less its docstrings."""
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_but_rundir_spells_an_artifact_or_tensor_name():
    names = file_names()
    tensors = {rundir.INPUT_TENSOR, rundir.OUTPUT_TENSOR}
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "zoo" / "rundir.py":
                continue
            for node in _constants(ast.parse(path.read_text(encoding="utf-8"))):
                # tensor names are checked where models are written and served (elsewhere "input" is a word)
                if node.value in names or (package in ("export", "infer", "serve") and node.value in tensors):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)
