"""The MODEL argument means one thing in every command (`zoo.rundir.resolve_model`, MODEL_HELP)."""

import shutil

import pytest
from click.testing import CliRunner

from zoo import rundir
from zoo.cli import main

# each command with MODEL, the arguments after it, and the rule's extensions it takes
COMMANDS = {
    "evaluate": ([], {"weights": True}),
    "export": ([], {"weights": True}),
    "classify": (["."], {}),
    "serve": ([], {}),
    "bench": ([], {}),
    "visualize": (["image.png"], {"weights": True, "names": True}),
    "features": (["mnist-small"], {"weights": True}),
}


@pytest.fixture
def places(make_run, tmp_path):
    run = make_run("lenet")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    newest = runs / "lenet-1"
    shutil.copytree(run, newest)
    return {
        "run": run,
        "weights": run / rundir.WEIGHTS,
        "onnx": onnx,
        "runs": runs,
        "newest": newest,
        "missing": tmp_path / "nope",
    }


def test_one_rule(places, monkeypatch):
    monkeypatch.chdir(places["runs"].parent)
    assert rundir.resolve_model(str(places["run"])) == places["run"]
    assert rundir.resolve_model(str(places["weights"])) == places["weights"]
    assert rundir.resolve_model(str(places["onnx"])) == places["onnx"]
    assert rundir.resolve_model(None).resolve() == places["newest"].resolve()
    with pytest.raises(rundir.RunError, match="no such run directory or model file"):
        rundir.resolve_model(str(places["missing"]))
    with pytest.raises(rundir.RunError, match="reads PyTorch weights"):
        rundir.resolve_model(str(places["onnx"]), weights=True)
    assert rundir.resolve_model("resnet18", names=True) == "resnet18"
    with pytest.raises(rundir.RunError, match="no such run directory"):
        rundir.resolve_model("resnet18")  # a name only where the command takes names


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_resolves_model_by_the_one_rule(command, places, monkeypatch):
    """Each command hands MODEL to resolve_model with its extensions and stops at its one-line error."""
    rest, extensions = COMMANDS[command]
    seen = []

    def spy(arg, **kwargs):
        seen.append((arg, {k: v for k, v in kwargs.items() if k != "runs"}))
        raise rundir.RunError("stop here")

    monkeypatch.chdir(places["runs"].parent)
    (places["runs"].parent / "image.png").write_bytes(b"")
    monkeypatch.setattr(rundir, "resolve_model", spy)
    result = CliRunner().invoke(main, [command, str(places["run"]), *rest])
    assert seen == [(str(places["run"]), extensions)], result.output
    assert result.output.startswith("Error: stop here") and result.output.count("\n") == 1, result.output
    help_text = " ".join(CliRunner().invoke(main, [command, "--help"]).output.split())
    assert rundir.MODEL_HELP in help_text


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_model_is_the_same_one_line_error(command, places, monkeypatch):
    monkeypatch.chdir(places["runs"].parent)
    (places["runs"].parent / "image.png").write_bytes(b"")
    rest = COMMANDS[command][0]
    result = CliRunner().invoke(main, [command, str(places["missing"]), *rest])
    assert result.exit_code != 0
    assert result.output == f"Error: {places['missing']}: no such run directory or model file\n"


@pytest.mark.parametrize("command", [c for c, (_, ext) in COMMANDS.items() if ext.get("weights")])
def test_an_exported_file_is_refused_where_weights_are_needed(command, places, monkeypatch):
    monkeypatch.chdir(places["runs"].parent)
    (places["runs"].parent / "image.png").write_bytes(b"")
    result = CliRunner().invoke(main, [command, str(places["onnx"]), *COMMANDS[command][0]])
    assert result.exit_code != 0
    assert result.output.startswith(f"Error: {places['onnx']}: this command reads PyTorch weights")
    assert result.output.count("\n") == 1
