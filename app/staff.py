"""Staff accounts and everything that decides who they are: argon2id passwords,
TOTP second factor, login throttling and lockout, server-side sessions, roles,
and the append-only audit log.

No Flask, no commits (the view or CLI command commits once). Never stores,
logs or audits a password or a TOTP code; app logs name staff by id only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from app.clock import utcnow
from app.db import Base, one_of
from app.donors import normalise_email

ROLES = ("viewer", "finance", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
SESSION_STAGES = ("totp", "full")

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

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024  # hashing megabytes on request is a denial of service
TYPED_EMAIL_MAX = 100  # how much of a typed email a failed login keeps
# Keys that can never appear in an audit entry's detail.
SECRET_WORDS = ("password", "passwd", "secret", "code", "otp", "token")


class StaffError(ValueError):
    """Bad input for a staff change (email, role, password); the message says which."""


class Staff(Base):
    """A person who may log in to /ledger. Never deleted: disabled instead, so
    the audit log keeps pointing at them."""

    __tablename__ = "staff_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enrolled_at: Mapped[datetime | None] = mapped_column()
    totp_last_step: Mapped[int | None] = mapped_column(Integer)  # no code twice
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_normalised"),
        CheckConstraint(one_of("role", ROLES), name="role_known"),
    )

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None


class StaffSession(Base):
    """One login: the Flask session carries a random token, this row its hash.
    Checked on every request, so logout, a password change or disabling the
    account ends it whatever the cookie says."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_members.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))  # "totp": password done, code due
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    staff: Mapped[Staff] = relationship()

    __table_args__ = (CheckConstraint(one_of("stage", SESSION_STAGES), name="stage_known"),)


class AuditEntry(Base):
    """What staff did and what was tried against their accounts. Append-only:
    the migration adds triggers that refuse UPDATE and DELETE."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_members.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object

    actor: Mapped[Staff | None] = relationship()

    __table_args__ = (Index("ix_audit_entries_action_id", "action", "id"),)

    @property
    def details(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.detail or "{}")
        return value


class LoginThrottle(Base):
    """Failed attempts under one key: an account ("email:<digest>", known or
    not, so unknown emails are throttled alike) or a client address ("ip:...")."""

    __tablename__ = "login_throttles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column()
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()

    __table_args__ = (CheckConstraint("failures >= 0", name="failures_not_negative"),)


# -- roles ---------------------------------------------------------------------


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


# -- audit ---------------------------------------------------------------------


def record_audit(
    session: Session,
    *,
    actor: Staff | None,
    action: str,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """Append one audit entry. `detail` must be JSON-able and hold no secrets:
    a key naming a password, code, secret or token is refused outright."""
    detail = dict(detail or {})
    for key in detail:
        if any(word in key.lower() for word in SECRET_WORDS):
            raise ValueError(f"audit detail key {key!r} looks like a secret")
    entry = AuditEntry(
        occurred_at=utcnow(),
        actor_id=actor.id if actor is not None else None,
        action=action[:40],
        ip=ip[:64] if ip else None,
        detail=json.dumps(detail, sort_keys=True, default=str),
    )
    session.add(entry)
    session.flush()
    return entry


# -- passwords -----------------------------------------------------------------


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


def _dummy_verify(hasher: PasswordHasher, password: str) -> None:
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


# -- accounts ------------------------------------------------------------------


def check_email(email: str) -> str:
    """A valid address, normalised (trimmed, lower case)."""
    address = normalise_email(email)
    try:
        # Staff addresses may be internal (corp.internal, newsroom.test): only the form counts.
        validate_email(
            address, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise StaffError("that is not a valid email address") from exc
    return address


def find_staff(session: Session, email: str) -> Staff | None:
    return session.scalar(select(Staff).where(Staff.email == normalise_email(email)))


def list_staff(session: Session) -> list[Staff]:
    return list(session.scalars(select(Staff).order_by(Staff.email)))


def create_staff(
    session: Session,
    *,
    email: str,
    role: str,
    password: str,
    hasher: PasswordHasher,
    actor: Staff | None = None,
    ip: str | None = None,
) -> Staff:
    address = check_email(email)
    check_role(role)
    check_password_strength(password)
    if find_staff(session, address) is not None:
        raise StaffError("a staff account with that email exists already")
    staff = Staff(
        email=address,
        role=role,
        password_hash=hasher.hash(password),
        password_changed_at=utcnow(),
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(staff)
    except IntegrityError as exc:
        raise StaffError("a staff account with that email exists already") from exc
    record_audit(
        session,
        actor=actor,
        action="staff_created",
        detail={"staff_id": staff.id, "email": address, "role": role},
        ip=ip,
    )
    return staff


def revoke_sessions(session: Session, staff: Staff, *, keep: StaffSession | None = None) -> int:
    """End every live session of this staff member (but `keep`)."""
    statement = update(StaffSession).where(
        StaffSession.staff_id == staff.id, StaffSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(StaffSession.id != keep.id)
    session.flush()
    result = session.execute(
        statement.values(revoked_at=utcnow()), execution_options={"synchronize_session": False}
    )
    for instance in list(session.identity_map.values()):
        if isinstance(instance, StaffSession):
            session.expire(instance)
    return int(getattr(result, "rowcount", 0) or 0)


def set_password(
    session: Session,
    staff: Staff,
    password: str,
    *,
    hasher: PasswordHasher,
    actor: Staff | None,
    action: str = "password_reset",
    ip: str | None = None,
    keep: StaffSession | None = None,
) -> None:
    """A new password ends every session of the account (but `keep`)."""
    check_password_strength(password)
    staff.password_hash = hasher.hash(password)
    staff.password_changed_at = utcnow()
    session.flush()
    revoke_sessions(session, staff, keep=keep)
    record_audit(session, actor=actor, action=action, detail={"staff_id": staff.id}, ip=ip)


def disable_staff(
    session: Session, staff: Staff, *, actor: Staff | None, ip: str | None = None
) -> None:
    if staff.disabled_at is None:
        staff.disabled_at = utcnow()
        session.flush()
    revoke_sessions(session, staff)
    record_audit(
        session, actor=actor, action="staff_disabled", detail={"staff_id": staff.id}, ip=ip
    )


def change_role(
    session: Session, staff: Staff, role: str, *, actor: Staff | None, ip: str | None = None
) -> None:
    check_role(role)
    before, staff.role = staff.role, role
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="staff_role_changed",
        detail={"staff_id": staff.id, "from": before, "to": role},
        ip=ip,
    )


def require_totp(
    session: Session, staff: Staff, required: bool, *, actor: Staff | None, ip: str | None = None
) -> None:
    staff.totp_required = required
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="staff_2fa_required" if required else "staff_2fa_optional",
        detail={"staff_id": staff.id},
        ip=ip,
    )


def needs_totp_enrolment(staff: Staff, *, required_for_everyone: bool) -> bool:
    return not staff.has_totp and (required_for_everyone or staff.totp_required)


# -- TOTP ----------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def _matching_step(secret: str, code: str, after: int | None) -> int | None:
    """The time step (now, or one either side) whose code this is, if it is
    later than `after`: a code accepted once is never accepted again."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now_step = totp.timecode(utcnow())
    for step in (now_step - 1, now_step, now_step + 1):  # valid_window=1
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def verify_totp(staff: Staff, code: str) -> bool:
    if staff.totp_secret is None:
        return False
    step = _matching_step(staff.totp_secret, code, staff.totp_last_step)
    if step is None:
        return False
    staff.totp_last_step = step
    return True


def start_totp_enrolment(staff: Staff) -> str:
    """A fresh secret, kept aside until a code proves the app has it."""
    if staff.totp_pending_secret is None:
        staff.totp_pending_secret = new_totp_secret()
    return staff.totp_pending_secret


def confirm_totp_enrolment(
    session: Session, staff: Staff, code: str, *, ip: str | None = None
) -> bool:
    secret = staff.totp_pending_secret
    if secret is None:
        return False
    step = _matching_step(secret, code, None)
    if step is None:
        return False
    staff.totp_secret = secret
    staff.totp_pending_secret = None
    staff.totp_enrolled_at = utcnow()
    staff.totp_last_step = step
    session.flush()
    record_audit(session, actor=staff, action="totp_enrolled", detail={"staff_id": staff.id}, ip=ip)
    return True


def reset_totp(
    session: Session, staff: Staff, *, actor: Staff | None, ip: str | None = None
) -> None:
    """A lost phone: the account enrols again at its next login (its sessions end)."""
    staff.totp_secret = None
    staff.totp_pending_secret = None
    staff.totp_enrolled_at = None
    staff.totp_last_step = None
    session.flush()
    revoke_sessions(session, staff)
    record_audit(session, actor=actor, action="totp_reset", detail={"staff_id": staff.id}, ip=ip)


# -- sessions ------------------------------------------------------------------

TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    session: Session, staff: Staff, *, stage: str = "full"
) -> tuple[StaffSession, str]:
    """A new session row and its token (the token goes into the cookie only)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = StaffSession(
        token_hash=_token_hash(token),
        staff_id=staff.id,
        stage=stage,
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    if stage == "full":
        staff.last_login_at = now
    session.flush()
    return row, token


def find_session(
    session: Session,
    token: str | None,
    *,
    idle: timedelta,
    absolute: timedelta,
    stage: str = "full",
) -> StaffSession | None:
    """The live session for this token, touched; None when there is none, it was
    revoked, it timed out (then it is revoked now) or the account is disabled."""
    if not token or len(token) > 100:
        return None
    row = session.scalar(select(StaffSession).where(StaffSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.stage != stage:
        return None
    now = utcnow()
    if now - row.last_seen_at > idle or now - row.created_at > absolute or not row.staff.active:
        row.revoked_at = now
        session.flush()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        session.flush()
    return row


def end_session(session: Session, row: StaffSession) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()


# -- login throttling ----------------------------------------------------------


@dataclass(frozen=True)
class LoginPolicy:
    """After `free_failures` failed attempts under a key, each further attempt
    must wait 2^n seconds (capped); after `max_failures` the key is locked for
    `lockout`. Failures older than `lockout` are forgotten."""

    free_failures: int = 3
    max_failures: int = 10
    ip_free_failures: int = 20
    ip_max_failures: int = 50
    max_delay: timedelta = timedelta(seconds=300)
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class LoginAttempt:
    staff: Staff | None
    reason: str  # "ok", or why it was refused (kept in the audit log only)

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def account_key(email: str) -> str:
    return "email:" + hashlib.sha256(normalise_email(email).encode()).hexdigest()[:40]


def ip_key(ip: str) -> str:
    return "ip:" + ip[:64]


def _find_throttle(session: Session, key: str) -> LoginThrottle | None:
    return session.scalar(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update())


def _get_throttle(session: Session, key: str) -> LoginThrottle:
    row = _find_throttle(session, key)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = LoginThrottle(key=key, failures=0)
            session.add(row)
    except IntegrityError:
        row = _find_throttle(session, key)
        assert row is not None
    return row


def _forget_old(row: LoginThrottle | None, now: datetime, policy: LoginPolicy) -> None:
    if row is None:
        return
    lock_over = row.locked_until is not None and now >= row.locked_until
    stale = (
        row.locked_until is None
        and row.last_failure_at is not None
        and now - row.last_failure_at >= policy.lockout
    )
    if lock_over or stale:
        row.failures = 0
        row.locked_until = None
        row.next_attempt_at = None


def _count_failure(
    session: Session, key: str, now: datetime, *, free: int, most: int, policy: LoginPolicy
) -> bool:
    """One more failure under `key`; True when it has just locked the key."""
    row = _get_throttle(session, key)
    _forget_old(row, now, policy)
    if row.locked_until is not None:
        return False
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= most:
        row.locked_until = now + policy.lockout
        row.next_attempt_at = row.locked_until
        session.flush()
        return True
    if row.failures >= free:
        delay = min(timedelta(seconds=2 ** (row.failures - free)), policy.max_delay)
        row.next_attempt_at = now + delay
    session.flush()
    return False


def _refusal(row: LoginThrottle | None, now: datetime, locked: str, waiting: str) -> str | None:
    if row is None:
        return None
    if row.locked_until is not None and now < row.locked_until:
        return locked
    if row.next_attempt_at is not None and now < row.next_attempt_at:
        return waiting
    return None


def _fail(
    session: Session,
    *,
    email: str,
    ip: str,
    reason: str,
    policy: LoginPolicy,
    count_account: bool,
    count_ip: bool,
    actor: Staff | None = None,
) -> LoginAttempt:
    now = utcnow()
    typed = email.strip()[:TYPED_EMAIL_MAX]
    record_audit(
        session,
        actor=actor,
        action="login_failed",
        detail={"email": typed, "reason": reason},
        ip=ip,
    )
    locks: list[str] = []
    if count_account and _count_failure(
        session,
        account_key(email),
        now,
        free=policy.free_failures,
        most=policy.max_failures,
        policy=policy,
    ):
        locks.append("account")
    if count_ip and _count_failure(
        session,
        ip_key(ip),
        now,
        free=policy.ip_free_failures,
        most=policy.ip_max_failures,
        policy=policy,
    ):
        locks.append("ip")
    for scope in locks:
        record_audit(
            session,
            actor=actor,
            action="lockout",
            detail={
                "scope": scope,
                "email": typed,
                "until": (now + policy.lockout).isoformat(),
            },
            ip=ip,
        )
    return LoginAttempt(None, reason)


def _gate(
    session: Session, email: str, ip: str, policy: LoginPolicy
) -> tuple[str | None, bool, bool]:
    """Whether throttling refuses this attempt before any check: (reason,
    count it against the account, count it against the address)."""
    now = utcnow()
    ip_row = _find_throttle(session, ip_key(ip))
    account_row = _find_throttle(session, account_key(email))
    _forget_old(ip_row, now, policy)
    _forget_old(account_row, now, policy)
    ip_refusal = _refusal(ip_row, now, "ip_locked", "ip_throttled")
    if ip_refusal == "ip_locked":
        return ip_refusal, False, False
    if ip_refusal:
        return ip_refusal, False, True
    account_refusal = _refusal(account_row, now, "account_locked", "throttled")
    if account_refusal == "account_locked":
        return account_refusal, False, True
    if account_refusal:
        return account_refusal, True, True
    return None, False, False


def _clear_account_failures(session: Session, email: str) -> None:
    row = _find_throttle(session, account_key(email))
    if row is not None:
        row.failures = 0
        row.last_failure_at = None
        row.next_attempt_at = None
        row.locked_until = None
        session.flush()


def authenticate(
    session: Session,
    *,
    email: str,
    password: str,
    ip: str,
    hasher: PasswordHasher,
    policy: LoginPolicy,
) -> LoginAttempt:
    """The password step of a login, throttled per account and per address.
    Every refusal looks the same to the caller's user; only the audit log
    (and the returned reason) says why."""
    refusal, count_account, count_ip = _gate(session, email, ip, policy)
    if refusal:
        return _fail(
            session,
            email=email,
            ip=ip,
            reason=refusal,
            policy=policy,
            count_account=count_account,
            count_ip=count_ip,
        )
    staff = find_staff(session, email) if len(email) <= 254 else None
    if staff is None:
        _dummy_verify(hasher, password)
        reason = "unknown_email"
    elif not verify_password(hasher, staff, password):
        reason = "bad_password"
    elif not staff.active:
        reason = "disabled"
    else:
        _clear_account_failures(session, email)
        return LoginAttempt(staff, "ok")
    return _fail(
        session,
        email=email,
        ip=ip,
        reason=reason,
        policy=policy,
        count_account=True,
        count_ip=True,
    )


def authenticate_code(
    session: Session, *, staff: Staff, code: str, ip: str, policy: LoginPolicy
) -> LoginAttempt:
    """The TOTP step of a login: throttled with the same counters as passwords."""
    refusal, count_account, count_ip = _gate(session, staff.email, ip, policy)
    reason = refusal
    if reason is None:
        if not staff.active:
            reason, count_account, count_ip = "disabled", True, True
        elif verify_totp(staff, code):
            _clear_account_failures(session, staff.email)
            session.flush()
            return LoginAttempt(staff, "ok")
        else:
            reason, count_account, count_ip = "bad_code", True, True
    return _fail(
        session,
        email=staff.email,
        ip=ip,
        reason=reason,
        policy=policy,
        count_account=count_account,
        count_ip=count_ip,
        actor=staff,
    )


def throttle_state(
    session: Session, *, email: str | None = None, ip: str | None = None
) -> LoginThrottle | None:
    """The throttle row for an account or an address (for admins and tests)."""
    key = account_key(email) if email is not None else ip_key(ip or "")
    return session.scalar(select(LoginThrottle).where(LoginThrottle.key == key))
