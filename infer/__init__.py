"""cnnzoo: infer (see DESIGN.md)."""
