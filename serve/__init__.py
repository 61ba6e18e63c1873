"""cnnzoo: serve (see DESIGN.md)."""
