"""Password hashing (argon2id), strength rules and verification, with a dummy
check so unknown emails take as long as real ones.

Never stores, logs or audits a password; never touches the session.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.staff.models import Staff, StaffError

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024  # hashing megabytes on request is a denial of service


@dataclass(frozen=True)
class HashCost:
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


_dummy_hashes: dict[tuple[int, int, int], str] = {}


def make_hasher(cost: HashCost) -> PasswordHasher:
    """argon2id with the configured cost (argon2-cffi's default type is ID)."""
    return PasswordHasher(
        time_cost=cost.time_cost, memory_cost=cost.memory_kib, parallelism=cost.parallelism
    )


def check_password_strength(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise StaffError(f"the password needs at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise StaffError(f"the password may have at most {PASSWORD_MAX_LENGTH} characters")
    if not password.strip():
        raise StaffError("the password cannot be only spaces")


def dummy_verify(hasher: PasswordHasher, password: str) -> None:
    """The same work as checking a real password, for emails nobody has, so the
    answer takes about as long as for a real account."""
    key = (hasher.time_cost, hasher.memory_cost, hasher.parallelism)
    if key not in _dummy_hashes:
        _dummy_hashes[key] = hasher.hash(secrets.token_urlsafe(24))
    with contextlib.suppress(VerificationError):
        hasher.verify(_dummy_hashes[key], password[:PASSWORD_MAX_LENGTH])


def verify_password(hasher: PasswordHasher, staff: Staff, password: str) -> bool:
    """Check the password; re-hash it when the cost settings changed."""
    try:
        hasher.verify(staff.password_hash, password[:PASSWORD_MAX_LENGTH])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = hasher.hash(password)
    return True
