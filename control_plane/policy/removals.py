"""A reload must not delete models by accident.

An editor that truncates a file before writing it, or a policy directory that
is briefly empty (a ConfigMap being swapped, an unmounted volume), looks like a
request to remove every model in it; serving that would answer 404 to every
request until the file is back. Such a reload is held as a rejection instead.
Deleting the file removes its models; emptying the whole policy set needs
``switchyard serve --allow-empty`` (as Argo CD's ``allowEmpty``).
"""

from __future__ import annotations

from control_plane.policy.errors import PolicyError
from control_plane.policy.loader import PolicySet


def removal_errors(before: PolicySet | None, after: PolicySet, *, where: str, allow_empty: bool) -> list[PolicyError]:
    """Why ``after`` may not replace ``before``; ``where`` names the policy set in messages."""
    if before is None or not before.models:
        return []
    kept = {m.value.metadata.name for m in after.models}
    with_documents = {m.source.file for m in after.models} | {f.source.file for f in after.fleets}
    if after.gateway is not None:
        with_documents.add(after.gateway.source.file)
    errors: list[PolicyError] = []
    for file in after.files:
        if file in with_documents:
            continue
        lost = [
            m.value.metadata.name for m in before.models if m.source.file == file and m.value.metadata.name not in kept
        ]
        if lost:
            errors.append(
                PolicyError(
                    file,
                    1,
                    (),
                    f"the file has no documents now, which would remove {_names(lost)}; still serving "
                    "them. To remove them, delete the file (a truncated write, e.g. by an editor, looks like this)",
                )
            )
    if not after.models and not errors and not allow_empty:
        lost = [m.value.metadata.name for m in before.models]
        errors.append(
            PolicyError(
                where,
                0,
                (),
                f"no ModelRoute is left in the policy set, which would remove every model ({_names(lost)}); "
                "still serving them. To allow an empty policy set, run `switchyard serve --allow-empty`",
            )
        )
    return errors


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:5])
    return (
        f"model {shown}"
        if len(names) == 1
        else f"models {shown}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    )
