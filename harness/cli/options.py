"""Option parsers shared by several commands."""

from __future__ import annotations

import click


def csv_ints(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers like 200,400, got {value!r}"
        ) from None


def csv_words(ctx, param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


# the one adb server a single-device command talks to (`grid` and `devices` take several)
adb_server_option = click.option(
    "--adb-server",
    default=None,
    metavar="HOST:PORT",
    help="adb server to use [default: 127.0.0.1:5037].",
)
