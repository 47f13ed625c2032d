"""The staff forms (Flask-WTF, CSRF on): login, the two-factor code, one's own
password change, and the admin pages' account forms. Messages never echo what
was typed.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from app.staff import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, ROLES

ROLE_CHOICES = [SelectChoice(role, role.capitalize()) for role in ROLES]


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter your email address.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])
    # A path of ours, printable ASCII only: CR/LF here would split the redirect.
    next = HiddenField(
        validators=[Length(max=500), Regexp(r"^[\x21-\x7e]*\Z", message="Reload the page.")]
    )


class CodeForm(FlaskForm):
    code = StringField(
        "Code from your authenticator app",
        validators=[DataRequired("Enter the six-digit code."), Length(max=10)],
    )


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired("Enter your current password.")]
    )
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired("Choose a new password."),
            Length(
                min=PASSWORD_MIN_LENGTH,
                max=PASSWORD_MAX_LENGTH,
                message=f"Use at least {PASSWORD_MIN_LENGTH} characters.",
            ),
        ],
    )
    confirm = PasswordField(
        "New password again",
        validators=[EqualTo("new_password", message="The two new passwords differ.")],
    )


def _password_field(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired("Enter a password."),
            Length(
                min=PASSWORD_MIN_LENGTH,
                max=PASSWORD_MAX_LENGTH,
                message=f"Use at least {PASSWORD_MIN_LENGTH} characters.",
            ),
        ],
    )


class CreateStaffForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter an email address.")])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")
    password = _password_field("First password (tell them to change it)")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class ResetPasswordForm(FlaskForm):
    password = _password_field("New password")
    confirm = PasswordField(
        "New password again", validators=[EqualTo("password", message="The two passwords differ.")]
    )


class ConfirmForm(FlaskForm):
    confirm = BooleanField("Yes, I mean it", validators=[DataRequired("Tick the box to confirm.")])


class TwoFactorRequiredForm(FlaskForm):
    required = BooleanField("Require two-factor authentication for this account")
