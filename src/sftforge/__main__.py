"""``python -m sftforge ...`` (what ``accelerate launch -m sftforge train ...`` runs)."""

from sftforge.cli import main

raise SystemExit(main())
