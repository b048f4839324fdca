"""Processors: compile blocks through TVM, run them, profile them, model them where absent."""
