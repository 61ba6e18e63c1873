"""cnnzoo: export (see DESIGN.md). `export.plan.run_plan` writes what `zoo export` writes; `onnx`,
`quantize`, `tensorrt` and `triton` are its steps."""
