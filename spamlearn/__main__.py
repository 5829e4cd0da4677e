"""``python -m spamlearn``: the same as the ``spamlearn`` command."""

from .cli import main

main()
