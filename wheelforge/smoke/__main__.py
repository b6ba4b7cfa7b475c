"""Entry point: ``python -m wheelforge.smoke`` or ``python -m smoke``."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
