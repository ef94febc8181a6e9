"""cartreg: harmonize, validate and analyse multi-center B-ALL CD19 CAR T registries."""

__version__ = "0.1.0"
