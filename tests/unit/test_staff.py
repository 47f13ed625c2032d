"""The staff core without Flask: roles, passwords, TOTP codes, throttling and
sessions, on an in-memory SQLite holding only the staff tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app.clock import frozen_at
from app.db import Base
from app.staff import (
    AuditEntry,
    HashCost,
    LoginPolicy,
    LoginThrottle,
    Staff,
    StaffError,
    StaffSession,
    authenticate,
    can,
    check_password_strength,
    create_staff,
    find_session,
    make_cipher,
    make_hasher,
    record_audit,
    role_at_least,
    seal_secret,
    start_session,
    throttle_state,
    verify_password,
)
from app.staff import verify_totp as verify_totp_with

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
CHEAP = make_hasher(HashCost(time_cost=1, memory_kib=1024, parallelism=1))
POLICY = LoginPolicy()


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    tables = [
        Base.metadata.tables[name]
        for name in ("staff_members", "staff_sessions", "audit_entries", "login_throttles")
    ]
    Base.metadata.create_all(engine, tables=tables)
    with frozen_at(T0), Session(engine) as db:
        yield db
    engine.dispose()


def test_roles_are_ordered_viewer_finance_admin() -> None:
    assert role_at_least("admin", "finance") and role_at_least("finance", "finance")
    assert not role_at_least("viewer", "finance")
    with pytest.raises(StaffError):
        role_at_least("admin", "owner")


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"read_totals", "read_lists"}),
        ("finance", {"read_totals", "read_lists", "read_contacts", "export"}),
        (
            "admin",
            {
                "read_totals",
                "read_lists",
                "read_contacts",
                "export",
                "replay",
                "manage_staff",
                "read_audit",
            },
        ),
    ],
)
def test_each_role_can_do_exactly_its_share(role: str, allowed: set[str]) -> None:
    staff = Staff(email="a@newsroom.test", role=role, password_hash="x")
    from app.staff import PERMISSIONS

    assert {action for action in PERMISSIONS if can(staff, action)} == allowed


def test_nobody_and_disabled_staff_can_do_nothing_and_typos_are_errors() -> None:
    gone = Staff(email="a@newsroom.test", role="admin", password_hash="x", disabled_at=T0)
    assert not can(gone, "read_totals") and not can(None, "read_totals")
    with pytest.raises(ValueError, match="unknown permission"):
        can(gone, "exprot")


def test_passwords_need_twelve_characters() -> None:
    with pytest.raises(StaffError, match="at least 12"):
        check_password_strength("elevenchars")
    with pytest.raises(StaffError, match="only spaces"):
        check_password_strength(" " * 12)
    check_password_strength("twelve chars")


def test_passwords_are_argon2id_and_rehashed_when_the_cost_changes(session: Session) -> None:
    staff = create_staff(
        session, email="a@newsroom.test", role="viewer", password=PASSWORD, hasher=CHEAP
    )
    assert staff.password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert not verify_password(CHEAP, staff, "wrong password!")
    stronger = make_hasher(HashCost(time_cost=2, memory_kib=2048, parallelism=1))
    assert verify_password(stronger, staff, PASSWORD)
    assert staff.password_hash.startswith("$argon2id$v=19$m=2048,t=2,p=1$")


CIPHER = make_cipher([Fernet.generate_key().decode()])


def test_a_totp_code_is_good_one_step_either_way_and_only_once() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    staff = Staff(
        email="a@newsroom.test",
        role="admin",
        password_hash="x",
        totp_secret=seal_secret(CIPHER, secret),
    )
    verify_totp = partial(verify_totp_with, cipher=CIPHER)
    with frozen_at(T0):
        assert not verify_totp(staff, totp.at(T0 - timedelta(seconds=90)))
        assert verify_totp(staff, totp.at(T0 - timedelta(seconds=30)))
        assert not verify_totp(staff, totp.at(T0 - timedelta(seconds=30)))  # replay
        assert verify_totp(staff, totp.at(T0))
        assert not verify_totp(staff, totp.at(T0 - timedelta(seconds=30)))  # older than the last
        assert verify_totp(
            staff,
            " ".join(
                [totp.at(T0 + timedelta(seconds=30))[:3], totp.at(T0 + timedelta(seconds=30))[3:]]
            ),
        )
        assert not verify_totp(staff, "abcdef")


def test_the_audit_log_refuses_anything_that_looks_like_a_secret(session: Session) -> None:
    for key in ("password", "new_password", "totp_code", "secret", "token"):
        with pytest.raises(ValueError, match="looks like a secret"):
            record_audit(session, actor=None, action="export", detail={key: "x"})
    entry = record_audit(session, actor=None, action="export", detail={"rows": 3}, ip="192.0.2.1")
    assert entry.details == {"rows": 3}
    assert session.query(AuditEntry).count() == 1


def _attempt(session: Session, email: str, password: str, ip: str = "192.0.2.1") -> str:
    return authenticate(
        session, email=email, password=password, ip=ip, hasher=CHEAP, policy=POLICY
    ).reason


def test_failed_logins_wait_longer_and_longer_then_lock(session: Session) -> None:
    create_staff(session, email="a@newsroom.test", role="viewer", password=PASSWORD, hasher=CHEAP)
    moment = T0
    waits = []
    for _ in range(POLICY.max_failures):
        with frozen_at(moment):
            assert _attempt(session, "a@newsroom.test", "wrong password!") == "bad_password"
        state = throttle_state(session, email="a@newsroom.test")
        assert state is not None
        if state.locked_until is None:
            assert state.next_attempt_at is not None or state.failures < POLICY.free_failures
            waits.append(((state.next_attempt_at or moment) - moment).total_seconds())
            moment = state.next_attempt_at or moment
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 64]
    assert state.locked_until == moment + POLICY.lockout
    with frozen_at(moment + timedelta(minutes=14)):
        assert _attempt(session, "a@newsroom.test", PASSWORD) == "account_locked"
    with frozen_at(moment + timedelta(minutes=15)):
        assert _attempt(session, "a@newsroom.test", PASSWORD) == "ok"
    assert throttle_state(session, email="a@newsroom.test").failures == 0  # type: ignore[union-attr]


def test_unknown_emails_are_throttled_exactly_like_real_ones(session: Session) -> None:
    create_staff(session, email="a@newsroom.test", role="viewer", password=PASSWORD, hasher=CHEAP)
    real = [
        _attempt(session, "a@newsroom.test", "wrong password!", ip="192.0.2.1") for _ in range(5)
    ]
    fake = [
        _attempt(session, "b@newsroom.test", "wrong password!", ip="192.0.2.2") for _ in range(5)
    ]
    assert real == ["bad_password"] * 3 + ["throttled"] * 2
    assert fake == ["unknown_email"] * 3 + ["throttled"] * 2
    assert session.query(LoginThrottle).count() == 4  # two accounts, two addresses


def test_old_failures_are_forgotten(session: Session) -> None:
    create_staff(session, email="a@newsroom.test", role="viewer", password=PASSWORD, hasher=CHEAP)
    for _ in range(2):
        _attempt(session, "a@newsroom.test", "wrong password!")
    with frozen_at(T0 + POLICY.lockout):
        _attempt(session, "a@newsroom.test", "wrong password!")
        assert throttle_state(session, email="a@newsroom.test").failures == 1  # type: ignore[union-attr]


def test_a_session_lives_until_idle_or_absolute_timeout_or_disabling(session: Session) -> None:
    staff = create_staff(
        session, email="a@newsroom.test", role="viewer", password=PASSWORD, hasher=CHEAP
    )
    row, token = start_session(session, staff)
    assert row.token_hash != token and len(token) >= 40

    def live(at: datetime, token: str = token) -> StaffSession | None:
        with frozen_at(at):
            return find_session(
                session, token, idle=timedelta(minutes=30), absolute=timedelta(hours=1)
            )

    assert live(T0 + timedelta(minutes=29)) is row
    assert live(T0 + timedelta(minutes=58)) is row
    assert live(T0 + timedelta(minutes=61)) is None  # absolute
    assert row.revoked_at == T0 + timedelta(minutes=61)
    assert live(T0 + timedelta(minutes=62)) is None
    _row, second = start_session(session, staff)
    assert live(T0 + timedelta(minutes=31), second) is None  # idle
    _row, third = start_session(session, staff)
    assert (
        find_session(session, third + "x", idle=timedelta(hours=1), absolute=timedelta(hours=1))
        is None
    )
    staff.disabled_at = T0
    assert (
        find_session(session, third, idle=timedelta(hours=1), absolute=timedelta(hours=1)) is None
    )


# -- TOTP secrets at rest ------------------------------------------------------


def test_a_totp_secret_is_stored_encrypted_and_never_in_plain(session: Session) -> None:
    from app.staff import confirm_totp_enrolment, start_totp_enrolment

    staff = create_staff(
        session, email="a@newsroom.test", role="admin", password=PASSWORD, hasher=CHEAP
    )
    secret = start_totp_enrolment(staff, CIPHER)
    assert staff.totp_pending_secret and secret not in staff.totp_pending_secret
    assert start_totp_enrolment(staff, CIPHER) == secret  # the same secret until confirmed
    assert confirm_totp_enrolment(session, staff, pyotp.TOTP(secret).at(T0), CIPHER)
    session.commit()
    stored = session.execute(
        text("SELECT totp_secret, totp_pending_secret FROM staff_members")
    ).one()
    assert stored[0].startswith("fernet:") and secret not in stored[0]
    assert stored[1] is None
    assert len(stored[0]) <= 255


def test_a_secret_under_an_old_key_still_verifies_after_rotation_and_moves_to_the_new(
    session: Session,
) -> None:
    from app.staff import open_secret, reseal_totp_secrets, verify_totp

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secret, other = pyotp.random_base32(), pyotp.random_base32()
    staff = create_staff(
        session, email="a@newsroom.test", role="admin", password=PASSWORD, hasher=CHEAP
    )
    second = create_staff(
        session, email="b@newsroom.test", role="admin", password=PASSWORD, hasher=CHEAP
    )
    staff.totp_secret = seal_secret(make_cipher([old_key]), secret)
    second.totp_secret = other  # plain, as stored before migration 0011
    rotated = make_cipher([new_key, old_key])
    with frozen_at(T0):
        assert verify_totp(staff, pyotp.TOTP(secret).at(T0), rotated)
    assert open_secret(make_cipher([new_key]), staff.totp_secret) == secret  # re-encrypted
    assert open_secret(make_cipher([old_key]), staff.totp_secret) is None
    assert reseal_totp_secrets(session, rotated) == 2
    assert second.totp_secret.startswith("fernet:") and other not in second.totp_secret
    assert open_secret(make_cipher([new_key]), second.totp_secret) == other
    unknown = make_cipher([Fernet.generate_key().decode()])
    with frozen_at(T0 + timedelta(minutes=1)):
        assert not verify_totp(staff, pyotp.TOTP(secret).at(T0 + timedelta(minutes=1)), unknown)
