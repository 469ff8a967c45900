"""python -m inference_svc.fleet: the fleet front, with its workers deployed on Ray Serve."""

from __future__ import annotations

from inference_svc.fleet.app import main

if __name__ == "__main__":
    main()
