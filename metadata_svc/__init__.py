"""The model registry: owns the user-models volume, its `.metadata.json` index and the active checkpoint.

    python -m metadata_svc --listen 127.0.0.1:50051 --user-models-dir DIR --models-dir DIR

Modules, one concept each:

- `config`      RegistrySettings (flags, MODELMGR_* variables)
- `app`         composition root: lock the volume, load, migrate, rescan, build the server
- `servicer`    ModelRegistryService: protobuf <-> Registry, nothing else
- `registry`    the domain: in-memory index, every operation and its rules, List's order
- `index_store` `.metadata.json`: load (refusing a corrupt file), durable rewrites, group commit, volume lock
- `uploads`     UploadModel's stream into a `.part` file, checked, then linked into place
- `inspection`  safetensors header: LoRA (kohya/PEFT) or checkpoint (SDXL?) by tensor names
- `prompt`      trigger-word injection
- `migration`   the old app's volume layout and built-in LoRAs
- `filenames`   filename and extension rules
- `limits`      bounds on every client-set field (checked on the way in, cut on load)
- `models`      ModelEntry (the old app's UserModelEntry fields) and its JSON/protobuf forms
- `errors`      domain errors with stable reasons (domain "registry.modelmanager")
"""
