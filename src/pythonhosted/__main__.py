"""``python -m pythonhosted`` runs the CLI."""

from pythonhosted.cli import run

run()
