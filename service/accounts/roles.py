"""Who may do what: the one table of roles and actions (docs/api.md shows the same table).

=============  ==============  ==========  =========
action         photographer    rater       admin
=============  ==============  ==========  =========
upload         yes             no          yes
describe       own photos      no          any photo
vote           others' photos  yes         yes
edit           own photos      no          any photo
delete         own photos      no          any photo
=============  ==============  ==========  =========

Dataset photos have no owner, so only admins describe, edit or delete them. A photographer may not
vote on their own photos: their votes would train the ranker in their own favour.
"""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("photographer", "rater", "admin")

ANY, OWN, OTHERS = "any photo", "own photos", "others' photos"

# action -> role -> which photos (absent: not allowed)
PERMISSIONS: dict[str, dict[str, str]] = {
    "upload": {"photographer": ANY, "admin": ANY},
    "describe": {"photographer": OWN, "admin": ANY},
    "vote": {"photographer": OTHERS, "rater": ANY, "admin": ANY},
    "edit": {"photographer": OWN, "admin": ANY},
    "delete": {"photographer": OWN, "admin": ANY},
}
ACTIONS = tuple(PERMISSIONS)

_VERBS = {"upload": "upload photos", "describe": "describe photos", "vote": "vote",
          "edit": "edit photos", "delete": "delete photos"}


@dataclass(frozen=True)
class Principal:
    """The person a request's key belongs to."""

    user_id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Forbidden(PermissionError):
    """A write this person may not make; the message says why (a 403 at the HTTP edge)."""


def check_role(principal: Principal, action: str) -> None:
    """Refuses an action the role never allows, whatever the photo."""
    if principal.role not in PERMISSIONS[action]:
        allowed = " and ".join(f"{role}s" for role in PERMISSIONS[action])
        raise Forbidden(f"{principal.name} is a {principal.role}; only {allowed} may {_VERBS[action]}")


def check_photo(principal: Principal, action: str, *, photo_id: int, owner_id: int | None) -> None:
    """Refuses an action on this photo: the role's rule, then whose photo it is."""
    check_role(principal, action)
    scope = PERMISSIONS[action][principal.role]
    mine = owner_id is not None and owner_id == principal.user_id
    if scope == OWN and not mine:
        whose = "a dataset photo (no owner)" if owner_id is None else "another person's photo"
        raise Forbidden(f"photo {photo_id} is {whose}: a {principal.role} may only {_VERBS[action]} "
                        "they uploaded; an admin may do it")
    if scope == OTHERS and mine:
        raise Forbidden(f"photo {photo_id} is your own: a photographer may not vote on their own photos")
