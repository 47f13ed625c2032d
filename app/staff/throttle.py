"""Login: the password and TOTP steps and the current password of a password
change, throttled per account (exponential delays, then a lockout) and per
client address (a capped slow-down, never a lockout: behind a proxy one
address is everybody, so a correct password for an account that is not itself
locked always gets in).

Every refusal looks the same to the user; only the audit log says why. Never
audits a password, a code or what was typed as an email (the account's id for
a known account, nothing for an unknown one). May flush, never commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from cryptography.fernet import MultiFernet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.donors import normalise_email
from app.staff.accounts import find_staff
from app.staff.audit import record_audit
from app.staff.models import LoginThrottle, Staff
from app.staff.passwords import dummy_verify, verify_password
from app.staff.totp import verify_totp

TYPED_EMAIL_MAX = 254  # longer than any address: never looked up


@dataclass(frozen=True)
class LoginPolicy:
    """After `free_failures` failed attempts on an account, each further
    attempt must wait 2^n seconds (capped at `max_delay`); after
    `max_failures` the account is locked for `lockout`. After
    `ip_free_failures` from one address, each attempt from it is slowed by
    2^n seconds, at most `ip_max_delay` (`address_delay`); an address is never
    locked (`ip_max_failures` is kept for old settings and unused). Failures
    older than `lockout` are forgotten."""

    free_failures: int = 3
    max_failures: int = 10
    ip_free_failures: int = 20
    ip_max_failures: int = 50
    max_delay: timedelta = timedelta(seconds=300)
    lockout: timedelta = timedelta(minutes=15)
    ip_max_delay: timedelta = timedelta(seconds=2)


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
    session: Session, key: str, now: datetime, *, free: int, most: int | None, policy: LoginPolicy
) -> bool:
    """One more failure under `key`; True when it has just locked the key
    (never when `most` is None: an address)."""
    row = _get_throttle(session, key)
    _forget_old(row, now, policy)
    if row.locked_until is not None:
        return False
    row.failures += 1
    row.last_failure_at = now
    if most is None:
        session.flush()
        return False
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


def _known(session: Session, email: str) -> Staff | None:
    return find_staff(session, email) if len(email) <= TYPED_EMAIL_MAX else None


def _fail(
    session: Session,
    *,
    email: str,
    ip: str,
    reason: str,
    policy: LoginPolicy,
    count_account: bool,
    actor: Staff | None = None,
    action: str = "login_failed",
) -> LoginAttempt:
    """Audit a refusal (the account's id, never what was typed) and count it
    against the account (when `count_account`) and the address (always)."""
    now = utcnow()
    known = actor or _known(session, email)
    who = {"staff_id": known.id} if known is not None else {}
    record_audit(session, actor=actor, action=action, detail={**who, "reason": reason}, ip=ip)
    locked = count_account and _count_failure(
        session,
        account_key(email),
        now,
        free=policy.free_failures,
        most=policy.max_failures,
        policy=policy,
    )
    _count_failure(session, ip_key(ip), now, free=policy.ip_free_failures, most=None, policy=policy)
    if locked:
        record_audit(
            session,
            actor=actor,
            action="lockout",
            detail={**who, "scope": "account", "until": (now + policy.lockout).isoformat()},
            ip=ip,
        )
    return LoginAttempt(None, reason)


def _account_refusal(session: Session, email: str, policy: LoginPolicy) -> tuple[str | None, bool]:
    """Whether the account's throttle refuses this attempt before any check:
    (reason, count it against the account). The address never refuses."""
    now = utcnow()
    row = _find_throttle(session, account_key(email))
    _forget_old(row, now, policy)
    refusal = _refusal(row, now, "account_locked", "throttled")
    return refusal, refusal == "throttled"


def address_delay(session: Session, ip: str, policy: LoginPolicy) -> float:
    """Seconds to hold an attempt from this address before answering it: 2^n
    after its free failures, at most `ip_max_delay`; 0 for a quiet address."""
    row = _find_throttle(session, ip_key(ip))
    _forget_old(row, utcnow(), policy)
    if row is None or row.failures < policy.ip_free_failures:
        return 0.0
    exponent = min(row.failures - policy.ip_free_failures, 32)
    return min(float(2**exponent), policy.ip_max_delay.total_seconds())


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
    """The password step of a login, throttled per account (and counted per
    address). Every refusal looks the same to the caller's user; only the
    audit log (and the returned reason) says why."""
    refusal, count_account = _account_refusal(session, email, policy)
    if refusal:
        return _fail(
            session, email=email, ip=ip, reason=refusal, policy=policy, count_account=count_account
        )
    staff = _known(session, email)
    if staff is None:
        dummy_verify(hasher, password)
        reason = "unknown_email"
    elif not verify_password(hasher, staff, password):
        reason = "bad_password"
    elif not staff.active:
        reason = "disabled"
    else:
        _clear_account_failures(session, email)
        return LoginAttempt(staff, "ok")
    return _fail(session, email=email, ip=ip, reason=reason, policy=policy, count_account=True)


def authenticate_code(
    session: Session,
    *,
    staff: Staff,
    code: str,
    ip: str,
    policy: LoginPolicy,
    cipher: MultiFernet,
) -> LoginAttempt:
    """The TOTP step of a login: throttled with the same counters as passwords."""
    reason, count_account = _account_refusal(session, staff.email, policy)
    if reason is None:
        if not staff.active:
            reason, count_account = "disabled", True
        elif verify_totp(staff, code, cipher):
            _clear_account_failures(session, staff.email)
            session.flush()
            return LoginAttempt(staff, "ok")
        else:
            reason, count_account = "bad_code", True
    return _fail(
        session,
        email=staff.email,
        ip=ip,
        reason=reason,
        policy=policy,
        count_account=count_account,
        actor=staff,
    )


def check_current_password(
    session: Session,
    *,
    staff: Staff,
    password: str,
    ip: str,
    hasher: PasswordHasher,
    policy: LoginPolicy,
) -> LoginAttempt:
    """The current password on the password-change form: a wrong one counts
    against the account exactly as a failed login does (and so locks it)."""
    reason, count_account = _account_refusal(session, staff.email, policy)
    if reason is None:
        if verify_password(hasher, staff, password):
            return LoginAttempt(staff, "ok")
        reason, count_account = "bad_password", True
    return _fail(
        session,
        email=staff.email,
        ip=ip,
        reason=reason,
        policy=policy,
        count_account=count_account,
        actor=staff,
        action="password_change_failed",
    )


def throttle_state(
    session: Session, *, email: str | None = None, ip: str | None = None
) -> LoginThrottle | None:
    """The throttle row for an account or an address (for admins and tests)."""
    key = account_key(email) if email is not None else ip_key(ip or "")
    return session.scalar(select(LoginThrottle).where(LoginThrottle.key == key))
