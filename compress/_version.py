"""The package version, in a module of its own: setuptools reads it without importing paddle."""
__version__ = "0.1.0"
