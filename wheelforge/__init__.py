"""wheelforge: pinned upstream sources -> wheels -> zero-compilation runtime image."""
