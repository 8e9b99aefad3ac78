"""Bearer tokens for the admin API: who is calling, and may they change things.

Tokens live in their own file (``serve --tokens FILE``), never in the policy
files, which are meant to be committed. Comparison is constant-time so the
time an answer takes says nothing about how much of a token was right.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

Role = Literal["reader", "operator"]
ROLES: tuple[Role, ...] = ("reader", "operator")
MIN_TOKEN_LENGTH = 16


class TokenFileError(Exception):
    """The tokens file is missing, malformed or unsafe."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return role == "reader" or self.role == "operator"


# Without --tokens the API is reachable from this host only, and whoever can reach it may change it.
LOCAL = Identity("local", "operator")


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: bytes
    role: Role


def load_tokens(path: Path) -> list[Token]:
    """``[{name, token, role: reader|operator}, ...]``; every problem is reported by entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read tokens file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise TokenFileError(f"tokens file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, list) or not data:
        raise TokenFileError(f"tokens file {path} must be a non-empty list of {{name, token, role}}")
    tokens: list[Token] = []
    problems: list[str] = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or set(entry) != {"name", "token", "role"}:
            problems.append(f"{where}: must have exactly the keys name, token and role")
            continue
        name, secret, role = entry["name"], entry["token"], entry["role"]
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: name must be a non-empty string")
        elif any(t.name == name for t in tokens):
            problems.append(f"{where}: duplicate name {name!r}")
        if not isinstance(secret, str) or len(secret) < MIN_TOKEN_LENGTH:
            problems.append(f"{where}: token must be a string of at least {MIN_TOKEN_LENGTH} characters")
        elif any(hmac.compare_digest(t.secret, secret.encode()) for t in tokens):
            problems.append(f"{where}: the same token is given twice")
        if role not in ROLES:
            problems.append(f"{where}: role must be one of {', '.join(ROLES)} (got {role!r})")
        if not problems:
            tokens.append(Token(name, secret.encode(), role))
    if problems:
        raise TokenFileError("\n".join(problems))
    return tokens


class Authenticator:
    """Maps an ``Authorization`` header to an identity; ``tokens=None`` means local, open access."""

    def __init__(self, tokens: list[Token] | None) -> None:
        self.tokens = tokens

    @property
    def enabled(self) -> bool:
        return self.tokens is not None

    def identify(self, authorization: str | None) -> Identity | None:
        if self.tokens is None:
            return LOCAL
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return None
        presented = credential.strip().encode()
        found: Token | None = None
        for token in self.tokens:  # no early exit: every token is compared, matched or not
            if hmac.compare_digest(token.secret, presented) and found is None:
                found = token
        return Identity(found.name, found.role) if found else None


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, authenticator: Authenticator) -> None:
    """Refuse to serve an unauthenticated admin API beyond this host."""
    if not authenticator.enabled and not is_loopback(address):
        raise TokenFileError(
            f"refusing to serve the admin API on {address} without authentication: "
            "anyone who can reach it could change routing. Pass --tokens FILE, or use a loopback "
            "--admin-address (127.0.0.1)."
        )
