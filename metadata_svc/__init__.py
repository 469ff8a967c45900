"""The model registry: owns the user-models volume, its `.metadata.json` index and the active checkpoint.

    python -m metadata_svc --listen 127.0.0.1:50051 --user-models-dir DIR --models-dir DIR

Modules, one concept each:

- `config`      RegistrySettings (flags, MODELMGR_* variables)
- `app`         composition root: lock the volume, load, migrate, rescan, build the server
- `servicer`    ModelRegistryService: protobuf <-> Registry, nothing else
- `proto_mapping` protobuf <-> the domain's types, for the servicer and the upload stream
- `registry`    the domain's façade: Create, Update, Delete, the active checkpoint; wires the parts below
- `catalog`     the in-memory index: entries, active checkpoint, reserved names, commit-or-undo
- `volume`      the files: folders, confinement to the volume, examining a file (size, header, sha256)
- `entries`     what goes into a new entry and what an Update may change
- `listing`     ListModels: stable order, filters, signed page tokens, the page byte budget
- `prompt`      ComposePrompt: LoRA lookup by name, weights, trigger-word injection
- `rescan`      files dropped in by hand, files gone; the background hasher
- `index_store` `.metadata.json`: load (refusing a corrupt file), durable rewrites, group commit, volume lock
- `uploads`     UploadModel's stream into a `.part` file, checked, then linked into place
- `inspection`  safetensors header: LoRA (kohya/PEFT) or checkpoint (SDXL?) by tensor names
- `library`     the library side of the façade: roots, import jobs, refresh from CivitAI, previews
- `library_roots` the persistent list of library roots and the rules for adding one (allow-list, overlaps)
- `library_import` one import job's work: scan, register, sidecars, hash, moves by hash, identify, write-back
- `import_jobs` import jobs that outlive their client: state, watch, list, cancel
- `identify`    CivitAI lookups through the CivitAI service's IdentifyFiles; user > sidecars > CivitAI
- `addressing`  unique stable keys (`<stem>~<8 hex>.<ext>`) and lookups by `folder/file_name`
- `library_scan` walking a root (links out never followed); `sidecars` other tools' files; `file_hashes`
                SHA256/AutoV2/AutoV3 with a (dev, inode, size, mtime) cache; `previews` thumbnails
- `migration`   the old app's volume layout and built-in LoRAs
- `filenames`   filename and extension rules
- `limits`      bounds on every client-set field and weight (checked on the way in, cut on load)
- `models`      the domain's types: ModelEntry (the old app's UserModelEntry fields, its JSON form) and
                what the operations take and return
- `errors`      domain errors with stable reasons (domain "registry.modelmanager")
"""
