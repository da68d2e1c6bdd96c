"""The package version (one place; ``squeezedet.__version__`` and the package metadata read it).

A module of its own at the bottom of the layers, so that any layer can record the version (in
export metadata, in the choice cache) without importing the package root, which reaches up to
``inference``."""

__version__ = "0.1.0"
