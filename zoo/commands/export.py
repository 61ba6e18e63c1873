import pathlib

import click

from export.quantize import DEFAULT_IMAGES, DEFAULT_MAX_DROP, DEFAULT_METHOD, METHODS
from zoo import rundir
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

    profile = _checked_options(batch, int8=int8, trt=trt, triton=triton)
    try:
        run = rundir.resolve_model(model, runs=runs, weights=True)
        if not model:
            click.echo(f"exporting the newest run: {run}", err=True)
        rundir.read_card(run)  # a damaged card stops here, before anything is written
    except rundir.RunError as e:
        raise UserError(str(e)) from None

    from export.onnx import ExportError, export_run

    try:
        if int8:  # the data to calibrate and verify on must be there before anything is written
            from export import quantize

            prepared = quantize.prepare(
                rundir.read_card(run), calibration=calibration, images=calibration_images, verify_data=verify_data
            )
        written = export_run(run, output, opset=opset, fp16=fp16, log=click.echo)
        onnx_file = written.get("onnx_fp16", written["onnx"])
        if int8:
            result = quantize.quantize(
                written["onnx"],
                method=calibration_method,
                max_accuracy_drop=max_accuracy_drop,
                prepared=prepared,
                log=click.echo,
            )
            written["onnx_int8"] = result.path
        model_file = written.get("onnx_int8", onnx_file)
        if trt:
            model_file = _engines(
                written,
                onnx_file,
                profile,
                int8=int8,
                fp16=fp16,
                triton=bool(triton),
                method=calibration_method,
                max_accuracy_drop=max_accuracy_drop,
                prepared=prepared if int8 else None,
            )
        if triton:
            from export.triton import write_repository

            card = rundir.read_card(run)
            write_repository(triton, rundir.model_name(run), model_file, card, profile, log=click.echo)
    except (ExportError, rundir.RunError) as e:
        raise UserError(str(e)) from None


def _checked_options(batch: str, *, int8: bool, trt: bool, triton: str | None) -> tuple[int, int, int]:
    """The TensorRT batch profile, once the options are checked: before anything is written, a missing
    TensorRT, an --int8 option without --int8 and a plan profile Triton cannot use are one line."""
    from click.core import ParameterSource

    from export.onnx import ExportError
    from export.tensorrt import parse_batch
    from export.triton import check_plan_batch
    from infer.predictor import tensorrt_missing

    ctx = click.get_current_context()
    given = [o for o in INT8_OPTIONS if ctx.get_parameter_source(o) == ParameterSource.COMMANDLINE]
    if given and not int8:
        raise UserError(f"--{given[0].replace('_', '-')} is an option of --int8: add --int8", exit_code=2)
    try:
        profile = parse_batch(batch)
    except ValueError as e:
        raise UserError(str(e), exit_code=2) from None
    if trt:
        why = tensorrt_missing()
        if why:
            raise UserError(why)
        try:
            if triton:  # Triton does not pad small batches up to the profile's MIN
                check_plan_batch(profile)
        except ExportError as e:
            raise UserError(str(e), exit_code=2) from None
    return profile


def _engines(
    written: dict,
    onnx_file,
    profile,
    *,
    int8: bool,
    fp16: bool,
    triton: bool,
    method: str,
    max_accuracy_drop: float,
    prepared,
) -> pathlib.Path:
    """Build the TensorRT engines `zoo export --trt` asks for; the path of the last one."""
    import tempfile

    from export import quantize
    from export.onnx import card_of
    from export.tensorrt import build_engine, engine_file

    model_file = None
    if not int8 or fp16:  # float32 or float16, from the file above (its card says which)
        card = card_of(onnx_file)
        model_file = build_engine(
            onnx_file,
            onnx_file.parent / engine_file(card.precision),
            card,
            profile,
            version_compatible=triton,
            log=click.echo,
        )
    if int8:  # explicitly quantized, from the symmetric-int8 variant of the QDQ file (verified too)
        with tempfile.TemporaryDirectory(prefix="zoo-int8-trt-") as tmp:
            variant = quantize.quantize(
                written["onnx"],
                pathlib.Path(tmp) / rundir.ONNX_INT8,
                method=method,
                max_accuracy_drop=max_accuracy_drop,
                prepared=prepared,
                tensorrt=True,
                log=click.echo,
            )
            card = card_of(variant.path)
            model_file = build_engine(
                variant.path,
                written["onnx"].parent / engine_file(card.precision),
                card,
                profile,
                version_compatible=triton,
                log=click.echo,
            )
    return model_file
