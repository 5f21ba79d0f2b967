"""What this build is: the package's version and the Distribution Spec version it implements."""

from __future__ import annotations

import platform
from importlib import metadata

# The OCI Distribution Spec version served; a config's `distSpecVersion` is overwritten by it,
# as zot overwrites it with its own.
DIST_SPEC_VERSION = "1.1.0"


def package_version() -> str:
    """The installed `ocistore` distribution's version ("unknown" when run from a bare tree)."""
    try:
        return metadata.version("ocistore")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_text(prog: str) -> str:
    """`PROG VERSION (Python X.Y.Z, OCI Distribution Spec 1.1.0)`: what `--version` prints."""
    return f"{prog} {package_version()} (Python {platform.python_version()}, OCI Distribution Spec {DIST_SPEC_VERSION})"
