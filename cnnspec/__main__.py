"""``python -m cnnspec`` is the ``cnnspec`` command."""

from .cli import main

raise SystemExit(main())
