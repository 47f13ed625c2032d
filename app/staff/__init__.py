"""Staff accounts and everything that decides who they are: argon2id passwords,
TOTP second factor, login throttling and lockout, server-side sessions, roles,
and the append-only audit log. Importing the package registers its tables.

This package's core (models, roles, audit, passwords, sessions, totp, accounts,
throttle, all re-exported here) imports no Flask and never commits (the view or
CLI command commits once). Its web edge: gate (the /ledger gate), views (login,
logout, one's own account), admin (staff accounts and the audit log), forms,
cli. Never stores, logs or audits a password or a TOTP code; app logs name
staff by id only.
"""

from __future__ import annotations

from app.staff.accounts import (
    change_role,
    check_email,
    create_staff,
    disable_staff,
    find_staff,
    list_staff,
    needs_totp_enrolment,
    require_totp,
    set_password,
)
from app.staff.audit import SECRET_WORDS, record_audit
from app.staff.models import (
    ROLE_RANK,
    ROLES,
    SESSION_STAGES,
    AuditEntry,
    LoginThrottle,
    Staff,
    StaffError,
    StaffSession,
)
from app.staff.passwords import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    HashCost,
    check_password_strength,
    make_hasher,
    verify_password,
)
from app.staff.roles import PERMISSIONS, can, check_role, role_at_least
from app.staff.sessions import (
    TOUCH_EVERY,
    end_session,
    find_session,
    revoke_sessions,
    start_session,
)
from app.staff.throttle import (
    TYPED_EMAIL_MAX,
    LoginAttempt,
    LoginPolicy,
    account_key,
    authenticate,
    authenticate_code,
    ip_key,
    throttle_state,
)
from app.staff.totp import (
    confirm_totp_enrolment,
    new_totp_secret,
    reset_totp,
    start_totp_enrolment,
    totp_uri,
    verify_totp,
)

__all__ = [
    "PASSWORD_MAX_LENGTH",
    "PASSWORD_MIN_LENGTH",
    "PERMISSIONS",
    "ROLES",
    "ROLE_RANK",
    "SECRET_WORDS",
    "SESSION_STAGES",
    "TOUCH_EVERY",
    "TYPED_EMAIL_MAX",
    "AuditEntry",
    "HashCost",
    "LoginAttempt",
    "LoginPolicy",
    "LoginThrottle",
    "Staff",
    "StaffError",
    "StaffSession",
    "account_key",
    "authenticate",
    "authenticate_code",
    "can",
    "change_role",
    "check_email",
    "check_password_strength",
    "check_role",
    "confirm_totp_enrolment",
    "create_staff",
    "disable_staff",
    "end_session",
    "find_session",
    "find_staff",
    "ip_key",
    "list_staff",
    "make_hasher",
    "needs_totp_enrolment",
    "new_totp_secret",
    "record_audit",
    "require_totp",
    "reset_totp",
    "revoke_sessions",
    "role_at_least",
    "set_password",
    "start_session",
    "start_totp_enrolment",
    "throttle_state",
    "totp_uri",
    "verify_password",
    "verify_totp",
]
