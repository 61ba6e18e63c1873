import click

from export.onnx import ExportError
from export.plan import ExportPlan, Int8Options, PlanError, run_plan
from export.quantize import DEFAULT_IMAGES, DEFAULT_MAX_DROP, DEFAULT_METHOD, METHODS
from export.tensorrt import parse_batch
from zoo import atomic, rundir
from zoo.errors import UserError

INT8_OPTIONS = ("calibration", "calibration_images", "calibration_method", "max_accuracy_drop", "verify_data")


@click.command(epilog=f"{rundir.MODEL_HELP} {rundir.WEIGHTS_HELP} --runs names another place for runs/.")
@click.argument("model", required=False, type=click.Path())
@click.option(
    "--onnx",
    "onnx_",
    is_flag=True,
    help="Write model.onnx, verified against PyTorch (the default when no format is asked for; "
    "--trt and --triton need it and write it too).",
)
@click.option(
    "--trt",
    is_flag=True,
    help="Also build a TensorRT engine, model.engine (+ model.engine.json); needs TensorRT and an NVIDIA GPU.",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Also write model.fp16.onnx (float16 inside, float32 input/output), verified with a looser "
    "tolerance; --trt and --triton then use it.",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Also write model.int8.onnx: post-training static quantization (QDQ: int8 weights per channel, "
    "uint8 activations) calibrated on the run's training images, then verified: top-1 of int8 "
    "(ONNX Runtime and OpenVINO, the worst counts) against fp32 on the run's held-out test (else "
    "validation) split. With --trt: model.int8.engine, from a symmetric-int8 variant, verified too.",
)
@click.option(
    "--calibration",
    metavar="DATA",
    default=None,
    help="With --int8: calibrate on DATA instead of the run's training split: a --data value "
    "(mnist-small, mnist, an IDX directory, an image folder) or a plain folder of images.",
)
@click.option(
    "--calibration-images",
    type=click.IntRange(1),
    default=DEFAULT_IMAGES,
    show_default=True,
    metavar="N",
    help="With --int8: how many images calibrate, drawn seeded and stratified by class.",
)
@click.option(
    "--calibration-method",
    type=click.Choice(METHODS),
    default=DEFAULT_METHOD,
    show_default=True,
    help="With --int8: how the observed activations become int8 ranges (measured: benchmarks/quantize.md).",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(0),
    default=DEFAULT_MAX_DROP,
    show_default=True,
    metavar="POINTS",
    help="With --int8: the most top-1 accuracy int8 may lose against fp32 (points); over it nothing is written.",
)
@click.option(
    "--verify-data",
    metavar="DATA",
    default=None,
    help="With --int8: verify on DATA's test split (else all of it) instead of the run's held-out "
    "split; for runs that have none. Never images the model trained on.",
)
@click.option(
    "--opset",
    type=click.IntRange(18, 23),
    default=None,
    help="ONNX opset, 18 or later (the torch.export-based exporter's range; default: its own).",
)
@click.option(
    "--batch",
    default="1:8:32",
    show_default=True,
    metavar="MIN:OPT:MAX",
    help="Batch sizes for the TensorRT optimization profile and Triton's max batch size.",
)
@click.option(
    "--triton",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Also write a Triton Inference Server model repository: DIR/<name>/config.pbtxt and "
    "DIR/<name>/1/model.onnx (model.plan with --trt).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Where to write model.onnx / model.engine (default: the run directory).",
)
@click.option(
    "--runs",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    help="Where to look for the newest run when MODEL is not given.",
)
def export(
    model,
    onnx_,
    trt,
    fp16,
    int8,
    calibration,
    calibration_images,
    calibration_method,
    max_accuracy_drop,
    verify_data,
    opset,
    batch,
    triton,
    output,
    runs,
):
    """Export MODEL to ONNX (and int8 / fp16 ONNX, a TensorRT engine, a Triton model repository).

    \b
    zoo export runs/lenet5-20261121-101500 --int8     # model.onnx + model.int8.onnx, accuracy verified
    """
    options = Int8Options(
        calibration=calibration,
        images=calibration_images,
        method=calibration_method,
        max_accuracy_drop=max_accuracy_drop,
        verify_data=verify_data,
    )
    plan = ExportPlan(
        output=output,
        opset=opset,
        fp16=fp16,
        int8=options if int8 else None,
        trt=trt,
        batch=_checked_options(batch, int8=int8),
        triton=triton,
    )
    try:
        plan.check()
    except PlanError as e:
        raise UserError(str(e), exit_code=2) from None
    except ExportError as e:
        raise UserError(str(e)) from None
    try:
        run = rundir.resolve_model(model, runs=runs, weights=True)
        if not model:
            click.echo(f"exporting the newest run: {run}", err=True)
        run_plan(run, plan, log=click.echo)
    except (ExportError, rundir.RunError, atomic.OutputError) as e:
        raise UserError(str(e)) from None


def _checked_options(batch: str, *, int8: bool) -> tuple[int, int, int]:
    """The TensorRT batch profile, once the options are checked: an --int8 option without --int8 and a
    --batch that is not MIN:OPT:MAX are one line (exit code 2)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [o for o in INT8_OPTIONS if ctx.get_parameter_source(o) == ParameterSource.COMMANDLINE]
    if given and not int8:
        raise UserError(f"--{given[0].replace('_', '-')} is an option of --int8: add --int8", exit_code=2)
    try:
        return parse_batch(batch)
    except ValueError as e:
        raise UserError(str(e), exit_code=2) from None
