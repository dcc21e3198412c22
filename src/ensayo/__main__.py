"""`python -m ensayo` is the `ensayo` command."""

from ensayo.cli import app

app()
