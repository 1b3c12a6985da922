"""vtune's version, read once from the installed package's metadata."""

from importlib import metadata

try:
    __version__ = metadata.version("vtune")
except metadata.PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"
