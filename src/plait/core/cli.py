"""Commands for the database, API tokens and dashboard users."""

from __future__ import annotations

import sys
from typing import Annotated
from uuid import UUID

import typer

from plait.core.auth import ROLES, check_role, create_token, list_tokens, revoke_token
from plait.core.console import console, open_database, print_json, print_table
from plait.core.db import get_engine, write
from plait.core.errors import InvalidInput
from plait.core.settings import get_settings
from plait.core.users import check_password, create_user, list_users, normalise_email, set_password

db_app = typer.Typer(help="The operational database.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for the management API.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from plait.migrations import upgrade

    settings = get_settings()
    reached = upgrade(get_engine(settings), revision)
    console.print(f"database at revision [bold]{reached}[/] ({_safe_url(settings.database_url)})")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and the newest one this code knows."""
    from plait.migrations import current_revision, head_revision

    current = current_revision(get_engine(get_settings()))
    console.print(f"current: {current or '(empty database)'}; head: {head_revision()}")


def _safe_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


@tokens_app.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    name: Annotated[str | None, typer.Option(help="a name to tell tokens apart")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create an API token; it is printed once and stored only as a digest."""
    with write(open_database()) as conn:
        token = create_token(conn, role, name)
    if as_json:
        print_json(token)
        return
    console.print(f"Created {token['role']} token [bold]{token['name']}[/] ({token['id']}):")
    console.print(token["token"], soft_wrap=True, highlight=False)
    console.print("[dim]Send it as 'Authorization: Bearer <token>'. It will not be shown again.[/]")


@tokens_app.command("list")
def tokens_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tokens (never their secrets)."""
    with write(open_database()) as conn:
        tokens = list_tokens(conn)
    if as_json:
        print_json(tokens)
    else:
        print_table(tokens, ["id", "name", "role", "hint", "created_at", "revoked_at"])


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="the token's id")]) -> None:
    """Revoke a token."""
    try:
        parsed = UUID(token_id)
    except ValueError:
        raise InvalidInput(f"{token_id!r} is not a token id", field="token_id") from None
    with write(open_database()) as conn:
        revoke_token(conn, parsed)
    console.print(f"revoked {parsed}")


users_app = typer.Typer(help="People who sign in to the dashboard.", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from standard input")
]


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="the user's email; they sign in with it")],
    role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
    password_stdin: PasswordStdin = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a dashboard user (the password is prompted for, or read with --password-stdin)."""
    check_role(role)
    normalise_email(email)
    password = check_password(_read_password(password_stdin))
    with write(open_database()) as conn:
        user = create_user(conn, email, role, password)
    if as_json:
        print_json(user)
    else:
        console.print(f"Created {user['role']} [bold]{user['email']}[/] ({user['id']})")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List dashboard users."""
    with write(open_database()) as conn:
        found = list_users(conn)
    if as_json:
        print_json(found)
    else:
        print_table(found, ["id", "email", "role", "created_at", "last_login_at", "disabled_at"])


@users_app.command("password")
def users_password(
    email: Annotated[str, typer.Argument(help="the user's email")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password."""
    password = check_password(_read_password(password_stdin))
    with write(open_database()) as conn:
        set_password(conn, email, password)
    console.print(f"password changed for {normalise_email(email)}")
