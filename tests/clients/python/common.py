"""What the Python client scripts share: their environment and their checks."""

import os
import sys


def env(name, default=None):
    """The environment variable `name`; exits naming it when it is not set (and no default)."""
    value = os.environ.get(name, default)
    if value is None:
        script = os.path.basename(sys.argv[0])
        sys.exit(f"{script}: environment variable {name} is not set")
    return value


def check(step, got, want):
    """Fails `step` unless `got` is `want`."""
    if got != want:
        raise AssertionError(f"{step}: got {got!r}, want {want!r}")
