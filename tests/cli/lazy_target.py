"""A command module for the LazyGroup test: it must only be imported when invoked."""

import click


@click.command()
def hello() -> None:
    """Say hello."""
    click.echo("hello")
