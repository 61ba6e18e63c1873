import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from zoo.cli import COMMANDS, main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_models_json_lists_all_with_counts():
    r = run("models", "--format", "json")
    assert r.exit_code == 0
    rows = {m["name"]: m for m in json.loads(r.output)}
    assert len(rows) == 18
    assert rows["vgg16"]["params"] == 138_357_544
    assert rows["lenet5"]["input_size"] == [1, 28, 28] and rows["lenet5"]["num_classes"] == 10
    assert 1.75e9 <= rows["resnet18"]["macs"] <= 1.85e9
    for m in rows.values():
        assert {"name", "family", "params", "macs", "input_size", "num_classes"} <= set(m)


def test_models_table():
    r = run("models")
    assert r.exit_code == 0 and "resnet152" in r.output and "60,192,808" in r.output


def test_summary_table_and_json():
    r = run("summary", "vgg16")
    assert r.exit_code == 0
    assert "Total params: 138,357,544" in r.output and "Layer (type)" in r.output
    r = run("summary", "lenet", "--format", "json", "--num-classes", "5", "--input-size", "32")
    d = json.loads(r.output)
    assert d["name"] == "lenet5" and d["layers"][-1]["output_shape"] == [5]
    assert {"name", "type", "output_shape", "params"} <= set(d["layers"][0])


def test_unknown_model_one_line_exit_2():
    r = CliRunner().invoke(main, ["summary", "resnet81"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "resnet18" in r.output


def test_too_small_input_one_line():
    r = CliRunner().invoke(main, ["summary", "alexnet", "--input-size", "16"])
    assert r.exit_code != 0 and r.output.strip().count("\n") == 0
    assert "would be empty" in r.output


def test_help_does_not_import_torch():
    code = (
        "import sys; from zoo.cli import main; sys.argv=['zoo','--help'];\n"
        "try:\n main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _choices() -> dict[tuple[str, str], list[str]]:
    """(command, parameter) -> its choices, for every option of every command with a fixed set of values."""
    return {
        (name, p.name): list(p.type.choices)
        for name in COMMANDS
        for p in main.get_command(None, name).params
        if hasattr(p.type, "choices")
    }


def test_every_choice_is_read_from_the_constant_of_the_library_that_owns_it():
    """Options never retype a library's choices: each reads the constant of the code that acts on the
    value. The CLI's own choices (how a command prints its answer, the device, the log level) are named
    here as such, so a new option with choices has to be put in one list or the other."""
    from export.quantize import METHODS
    from infer.bench import FORMATTERS
    from infer.predictor import BACKENDS
    from infer.shards import CLASSIFY_FORMATS
    from serve.options import LOG_FORMATS, LOG_LEVELS
    from zoo import devices
    from zoo.card import PRECISIONS, RESIZE_MODES
    from zoo.data import SPLITS
    from zoo.data.augment import OPTIONS
    from zoo.train.config import AMP_MODES, OPTIMIZERS, SCHEDULES

    owned = {
        ("train", "resize_mode"): RESIZE_MODES,
        ("train", "optimizer"): OPTIMIZERS,
        ("train", "schedule"): SCHEDULES,
        ("train", "amp"): AMP_MODES,
        ("evaluate", "split"): ("auto", *SPLITS),
        ("features", "split"): ("all", *SPLITS),
        ("export", "calibration_method"): METHODS,
        ("classify", "backend"): ("auto", *BACKENDS),
        ("classify", "precision"): ("auto", *PRECISIONS),
        ("classify", "fmt"): CLASSIFY_FORMATS,
        ("serve", "backend"): ("auto", *BACKENDS),
        ("serve", "precision"): ("auto", *PRECISIONS),
        ("serve", "log_level"): LOG_LEVELS,
        ("serve", "log_format"): LOG_FORMATS,
        ("bench", "runtimes"): BACKENDS,
        ("bench", "precisions"): PRECISIONS,
        ("bench", "fmt"): tuple(FORMATTERS),
        **{(command, "device"): devices.NAMES for command in ("train", "evaluate", "features", "bench")},
    }
    the_clis_own = {
        ("models", "fmt"),
        ("summary", "fmt"),
        ("evaluate", "fmt"),
    }
    choices = _choices()
    assert set(choices) == set(owned) | the_clis_own, set(choices) ^ (set(owned) | the_clis_own)
    for key, constant in owned.items():
        assert choices[key] == list(constant), key
    augment = next(p for p in main.get_command(None, "train").params if p.name == "augment")
    assert all(name in augment.help for name in OPTIONS)


def test_every_device_option_takes_what_zoo_devices_takes():
    """--device is one option (zoo.commands.options.device), checked by zoo.devices.check: the names and
    cuda:N pass the parser in every command that has it; anything else is one line, exit 2."""
    from zoo import devices
    from zoo.commands.options import Device

    with_device = [n for n in COMMANDS for p in main.get_command(None, n).params if p.name == "device"]
    assert sorted(with_device) == ["bench", "evaluate", "features", "train"]
    for name in with_device:
        device = next(p for p in main.get_command(None, name).params if p.name == "device")
        assert isinstance(device.type, Device) and device.default == "auto", name
        for value in (*devices.NAMES, "cuda:0", "cuda:12"):
            assert device.type.convert(value, device, None) == value
        r = CliRunner().invoke(main, [name, "--device", "gpu"])
        assert r.exit_code == 2 and r.output == "Error: --device gpu: use auto, cpu, cuda or cuda:N\n", r.output
    for wrong in ("cuda:", "cuda:x", "cuda:-1", "cpu:0", "", "CUDA"):
        with pytest.raises(devices.DeviceError, match="use auto, cpu, cuda or cuda:N"):
            devices.check(wrong)


def test_version_and_python_m():
    out = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "cnnzoo" in out.stdout
