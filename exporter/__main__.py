"""`python -m exporter` runs tau-export, for environments without the console script."""

from exporter.cli import main

raise SystemExit(main())
