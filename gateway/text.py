"""The formatting helpers of the web UI; written once in service_kit.display (the CLI uses them too)."""

from service_kit.display import human_size, type_name

__all__ = ["human_size", "type_name"]
