"""``python -m upgrade``: the operator's command line (see upgrade.cli)."""

from upgrade.cli import main

raise SystemExit(main())
