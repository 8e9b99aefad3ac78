"""Where policy documents come from, and where accepted changes go back to.

The controller, the admin change path and ``/v1/validate`` see policies only
through these two interfaces, so a new kind of source (Kubernetes objects next
to files) plugs in without touching them. An origin names a document's home
the way errors should show it: a file path today, ``kind/namespace/name`` for
an object tomorrow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

Shadow = tuple[str, float]


class WriteConflict(OSError):
    """The document changed where it lives since it was read (a 409 from the API server): the change is stale."""


class PolicySource(Protocol):
    """Reads the whole policy set. Implementations are safe to call from a worker thread."""

    @property
    def name(self) -> str:
        """How an error about the policy set as a whole names it (``policies/``)."""
        ...

    @property
    def locations(self) -> list[str]:
        """What it reads, for people (/v1/status)."""
        ...

    def read(self) -> dict[str, str]:
        """``{origin: YAML text}`` for every document source; raises ``PolicyErrors`` if one cannot be read."""
        ...


class WriteBack(Protocol):
    """Writes an accepted routing change to where the model's document lives."""

    def edit_routing(
        self, origin: str, text: str, model: str, traffic: Mapping[str, int], shadow: Sequence[Shadow]
    ) -> str:
        """``text`` (what ``origin`` holds now) with the model's split and mirrors set; nothing is written.

        Raises ``control_plane.sources.splice.StoreError`` when the text cannot be edited.
        """
        ...

    def write(self, origin: str, text: str) -> None:
        """Replace ``origin`` with ``text`` atomically; raises ``OSError`` (``WriteConflict`` when stale)."""
        ...
