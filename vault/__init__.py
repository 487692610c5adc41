"""Patient health-document vault."""

__version__ = "0.1.0"
