"""What every stage shares: settings, the user's error type and tables, the data types passed
from stage to stage, the engine, wheel sets on disk, and root filesystems (base images
made here, runtime images' roots for the link audit).
"""
