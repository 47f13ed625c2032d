"""Roles and permissions: which role may do what, and `can(staff, action)`.

Pure checks: never touches the database, never changes a role (accounts does).
"""

from __future__ import annotations

from app.staff.models import ROLE_RANK, ROLES, Staff, StaffError

# What each role may do; the finance views ask `can(staff, "export")`.
PERMISSIONS = {
    "read_totals": "viewer",
    "read_lists": "viewer",
    "read_contacts": "finance",
    "export": "finance",
    "replay": "admin",
    "manage_staff": "admin",
    "read_audit": "admin",
}


def check_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    return role


def role_at_least(role: str, min_role: str) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[check_role(min_role)]


def can(staff: Staff | None, action: str) -> bool:
    """Whether this (active) staff member may do `action` (a key of PERMISSIONS)."""
    if action not in PERMISSIONS:
        raise ValueError(f"unknown permission {action!r}")
    if staff is None or not staff.active:
        return False
    return role_at_least(staff.role, PERMISSIONS[action])
