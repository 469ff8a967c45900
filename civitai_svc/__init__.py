"""CivitAI fetcher and downloader: references, metadata, download jobs, search, identify, updates.

    python -m civitai_svc --listen 127.0.0.1:50052 --registry 127.0.0.1:50051 \
        --user-models-dir data/user-models [--base-url https://civitai.com]

Configuration: flags, or MODELMGR_CIVITAI_* / MODELMGR_* variables (see `--help`);
`CIVITAI_TOKEN` (environment only, so it never shows in `ps`); `MODELMGR_CIVITAI_BASE_URL`
(or, as before, `CIVITAI_BASE_URL`).

Behaviour worth knowing:
- Anything users paste parses offline (ParseReference); a bare number is a model id.
- Metadata is cached in memory (`--cache-ttl`); update checks bypass the cache.
- A download is a job that outlives its caller: QUEUED -> RUNNING -> VERIFYING ->
  REGISTERING -> SUCCEEDED (or FAILED with a google.rpc.Status, or CANCELLED).
- Downloads survive a restart (SIGTERM, Ctrl-C, even a crash): each unfinished job
  has an entry in `{user-models}/.downloads/{job}.json` (no token), shutdown keeps
  its `.part` file, and the next start runs it again under the same id, QUEUED:
  it hashes the kept bytes, then fetches only the rest with Range, using the
  service's CIVITAI_TOKEN. `.part` files no entry owns are removed at start-up;
  unreadable entries are logged and renamed `*.corrupt`.
- The token goes only to the CivitAI origin (`Authorization: Bearer`), never to the
  storage host the download endpoint redirects to.
- Files land as `<name>.<job>.part` next to their destination in `loras/` or
  `checkpoints/`, are hashed while they stream, resume with Range after a cut, and
  are registered with the registry once verified. Nothing is left behind on failure
  or cancel.

Modules, one concept each: `references` (parsing), `api_client` (HTTP, retries,
cache), `metadata` (JSON -> CivitaiModelInfo), `catalog` (lookups, search, identify,
updates), `downloader` (one transfer), `jobs` (job registry), `job_journal` (jobs
across restarts), `installer` (naming, move, register), `registry_client`,
`servicer` (gRPC), `app` (composition root), `config`, `errors`.
"""
