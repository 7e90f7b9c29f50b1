"""``python -m tagsmith`` runs the CLI."""

from tagsmith.cli import main

main()
