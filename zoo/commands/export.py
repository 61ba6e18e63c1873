import click


@click.command()
@click.argument("model", required=False, type=click.Path())
@click.option("--onnx", "onnx_", is_flag=True,
              help="Write model.onnx, verified against PyTorch (the default when no format is asked for; "
                   "--trt and --triton need it and write it too).")
@click.option("--trt", is_flag=True,
              help="Also build a TensorRT engine, model.engine (+ model.engine.json); needs TensorRT and an "
                   "NVIDIA GPU.")
@click.option("--fp16", is_flag=True,
              help="Also write model.fp16.onnx (float16 inside, float32 input/output), verified with a looser "
                   "tolerance; --trt and --triton then use it.")
@click.option("--opset", type=click.IntRange(18, 23), default=None,
              help="ONNX opset, 18 or later (the torch.export-based exporter's range; default: its own).")
@click.option("--batch", default="1:8:32", show_default=True, metavar="MIN:OPT:MAX",
              help="Batch sizes for the TensorRT optimization profile and Triton's max batch size.")
@click.option("--triton", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also write a Triton Inference Server model repository: DIR/<name>/config.pbtxt and "
                   "DIR/<name>/1/model.onnx (model.plan with --trt).")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Where to write model.onnx / model.engine (default: the run directory).")
@click.option("--runs", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where to look for the newest run when MODEL is not given.")
def export(model, onnx_, trt, fp16, opset, batch, triton, output, runs):
    """Export run directory MODEL to ONNX (and a TensorRT engine, a Triton model repository).

    Without MODEL, the newest finished run under --runs is exported (and named).
    """
    import pathlib

    from zoo.cli import UserError

    from export.tensorrt import parse_batch
    from infer.predictor import tensorrt_missing

    try:
        profile = parse_batch(batch)
    except ValueError as e:
        raise UserError(str(e), exit_code=2) from None
    if trt:  # before anything is written
        why = tensorrt_missing()
        if why:
            raise UserError(why)

    from zoo import rundir
    from zoo.card import ModelCard

    try:
        if model is None:
            model = rundir.newest_run(runs)
            click.echo(f"exporting the newest run: {model}", err=True)
        run = pathlib.Path(model)
        if run.is_file() and run.suffix != ".safetensors":
            raise UserError(f"{run}: MODEL is a run directory (or its .safetensors weights), "
                            "as `zoo train` writes it")
        rundir.resolve_weights(run)
    except rundir.RunError as e:
        raise UserError(str(e)) from None

    from export.onnx import ExportError, export_run
    from infer.predictor import ENGINE_FILE

    try:
        written = export_run(run, output, opset=opset, fp16=fp16, log=click.echo)
        onnx_file = written.get("onnx_fp16", written["onnx"])
        card = ModelCard.load(rundir.resolve_weights(run)[1])
        model_file = onnx_file
        if trt:
            from export.tensorrt import build_engine

            model_file = build_engine(onnx_file, onnx_file.parent / ENGINE_FILE, card, profile, log=click.echo)
        if triton:
            from export.triton import write_repository
            from infer.predictor import model_name

            write_repository(triton, model_name(run), model_file, card, profile, log=click.echo)
    except ExportError as e:
        raise UserError(str(e)) from None
