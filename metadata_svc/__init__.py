"""The model registry: owns the user-models volume, its `.metadata.json` index and the active checkpoint."""
