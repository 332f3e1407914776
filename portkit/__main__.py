"""``python -m portkit`` is the ``portkit`` command."""

from portkit.cli import main

main()
