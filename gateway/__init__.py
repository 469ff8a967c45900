"""The gateway: an HTTP API (`/api/v1`, SSE for streams) and the web UI over the three gRPC services.

It owns nothing persistent; every request becomes one call to the registry,
the CivitAI service or the inference service (`gateway.clients`).
"""
