"""``python -m clients.cli``."""

from clients.cli import main

main()
