"""The package version, in a module of its own so that any layer (e.g. the server's OpenAPI page) can read it
without importing the root package, which re-exports every layer."""

__version__ = "0.1.0"
