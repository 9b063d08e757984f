"""wm: an always-on recorder that learns."""

__version__ = "0.1.0"
