"""cnnzoo: export (see DESIGN.md)."""
