"""``python -m runtime.train``: see ``runtime.train.loop`` for flags' meaning and exit codes."""

from runtime.train.loop import main

raise SystemExit(main())
