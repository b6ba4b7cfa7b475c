"""What every stage shares: settings, the user's error type and tables, the plan's data
types, the engine, wheel sets on disk and runtime images' root filesystems.
"""
