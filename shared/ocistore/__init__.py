"""ocistore: an OCI Distribution registry over plain OCI image layouts.

This package holds everything the services share: configuration, the storage
drivers, and the registry semantics as plain async functions over a driver.  It
never imports FastAPI nor any service, so the CLI, the API and the workers run
the same code.
"""

__version__ = "0.1.0"
