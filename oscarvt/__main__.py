"""Allow ``python -m oscarvt``."""

from oscarvt.cli import main

raise SystemExit(main())
