"""A fake CivitAI on 127.0.0.1 for tests, demos and benchmarks: an API server and a storage server.

    from devtools.fake_civitai import FakeCivitai

    with FakeCivitai(token="s3cret") as fake:
        lora = fake.add_lora(name="Soft Watercolor", data=b"...")
        fake.base_url  # set CIVITAI_BASE_URL to this

README.md (next to this file) is the manual: what it serves, how to start it, every knob and fault.
Modules: catalog (models, versions, files, JSON shapes), images (previews), faults (fault injection),
api_routes and storage (the two servers' handlers), http_base (what they share), server (FakeCivitai),
cli (`python -m devtools.fake_civitai`).
"""

from devtools.fake_civitai.catalog import FakeModel
from devtools.fake_civitai.http_base import Recorded
from devtools.fake_civitai.server import FakeCivitai
from devtools.fake_civitai.storage import CLOUDFLARE_HTML, content_disposition
from devtools.model_files import make_safetensors, write_safetensors

__all__ = ["CLOUDFLARE_HTML", "FakeCivitai", "FakeModel", "Recorded", "content_disposition", "make_safetensors",
           "write_safetensors"]
