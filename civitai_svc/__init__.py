"""CivitAI fetcher and downloader: references, metadata, download jobs, search, identify, updates.

Modules, one concept each: `references` (parsing what users paste),
`api_client` (HTTP, retries, cache), `metadata` (JSON -> CivitaiModelInfo),
`catalog` (lookups, search, identify, updates), `downloader` (one transfer),
`jobs` (job registry), `installer` (naming, move, register), `registry_client`,
`servicer` (gRPC), `app` (composition root), `config`, `errors`.
"""
