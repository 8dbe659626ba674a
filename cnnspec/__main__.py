"""``python -m cnnspec`` is the ``cnnspec`` command."""

from cnnspec.cli.main import entry

entry()
