"""CivitAI's TextualInversion, VAE and Upscaler (issue 14) through the wire: fake CivitAI -> civitai_svc ->
their folders -> a real registry that tells each type from the file; other types refused naming them;
search and update checks cover the new types."""

from __future__ import annotations

import grpc
import pytest
from civitai_helpers import status_of

from devtools.fake_civitai import make_safetensors
from modelmanager.v1 import civitai_pb2, model_pb2, registry_pb2

S = civitai_pb2


def _job_reason(job: S.DownloadJob) -> str:
    from google.rpc import error_details_pb2

    for detail in job.error.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


@pytest.mark.parametrize(("civitai_type", "folder", "proto_type", "filename"), [
    ("TextualInversion", "embeddings", model_pb2.MODEL_TYPE_EMBEDDING, "negativeXL.safetensors"),
    ("VAE", "vaes", model_pb2.MODEL_TYPE_VAE, "sdxl_vae_fp16_fix.safetensors"),
    ("Upscaler", "upscalers", model_pb2.MODEL_TYPE_UPSCALER, "4x_tiny_esrgan.safetensors"),
])
async def test_each_new_type_downloads_into_its_folder(stack, civitai_type, folder, proto_type, filename):
    made = stack.fake.add_typed(civitai_type, name=f"Fake {civitai_type}", filename=filename,
                                trained_words=["negXL"] if civitai_type == "TextualInversion" else (),
                                tags=["negative embedding"] if civitai_type == "TextualInversion" else ())
    info = (await stack.civitai.GetModelInfo(S.GetModelInfoRequest(reference=made.url), timeout=10)).info
    assert info.supported and info.model_type == proto_type
    job = await stack.download(made.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert job.model_type == proto_type and job.filename == filename
    assert (stack.user_models / folder / filename).is_file()
    model = (await stack.registry.GetModel(registry_pb2.GetModelRequest(filename=filename), timeout=5)).model
    assert model.type == proto_type and model.source == model_pb2.MODEL_SOURCE_CIVITAI
    assert model.sha256 == made.sha256
    if civitai_type == "TextualInversion":
        assert model.embedding_token == "negXL" and model.negative_embedding
        assert model.inspection.detected_type == "embedding" and model.inspection.architecture == "sdxl"
    if civitai_type == "Upscaler":
        assert model.inspection.architecture == "esrgan"


async def test_a_pickled_upscaler_downloads_and_is_read_weights_only(stack, tmp_path):
    from devtools.model_files import write_torch_pickle

    data = write_torch_pickle(tmp_path / "x.pth", "esrgan", wrap="params_ema").read_bytes()
    made = stack.fake.add_typed("Upscaler", name="4x Pickled", data=data, filename="4x_pickled.pth")
    job = await stack.download(made.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    model = (await stack.registry.GetModel(registry_pb2.GetModelRequest(filename="4x_pickled.pth"), timeout=5)).model
    assert model.type == model_pb2.MODEL_TYPE_UPSCALER and model.inspection.format == "pickle"


async def test_an_sd1_embedding_sold_as_sdxl_is_refused_by_its_tensors(stack):
    """CivitAI's type and an SDXL-looking name do not decide: the registry reads the file."""
    made = stack.fake.add_typed("TextualInversion", name="SDXL Negative", base_model="SDXL 1.0",
                                data=make_safetensors("sd15-embedding", 0), filename="negative_sdxl.safetensors")
    job = await stack.download(made.url)
    assert job.state == S.DOWNLOAD_STATE_FAILED and _job_reason(job) == "TYPE_MISMATCH", job.error
    assert "SD 1.x embedding" in job.error.message
    assert not (stack.user_models / "embeddings" / "negative_sdxl.safetensors").exists()


@pytest.mark.parametrize("civitai_type", ["Hypernetwork", "Controlnet", "MotionModule", "Poses", "Wildcards",
                                          "Workflows", "Other"])
async def test_other_types_are_unsupported_naming_the_type(stack, civitai_type):
    made = stack.fake.add_typed(civitai_type)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.civitai.StartDownload(S.StartDownloadRequest(reference=made.url), timeout=10)
    code, info = status_of(exc.value)
    assert (code, info.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UNSUPPORTED_MODEL_TYPE")
    assert civitai_type in exc.value.details() and "TextualInversion" in exc.value.details()


async def test_search_covers_the_new_types(stack):
    for civitai_type in ("TextualInversion", "VAE", "Upscaler", "Hypernetwork"):
        stack.fake.add_typed(civitai_type, name=f"Sharp {civitai_type}")
    found = (await stack.civitai.SearchModels(S.SearchModelsRequest(query="sharp"), timeout=10)).models
    assert {m.name for m in found} == {"Sharp TextualInversion", "Sharp VAE", "Sharp Upscaler"}
    request = [r for r in stack.fake.requests if r.path.startswith("/api/v1/models?")][-1]
    for t in ("TextualInversion", "VAE", "Upscaler"):
        assert f"types={t}" in request.path
    only = (await stack.civitai.SearchModels(S.SearchModelsRequest(query="sharp", types=["Upscaler"]),
                                             timeout=10)).models
    assert [m.name for m in only] == ["Sharp Upscaler"] and only[0].model_type == model_pb2.MODEL_TYPE_UPSCALER


async def test_update_checks_cover_the_new_types(stack):
    vae = stack.fake.add_typed("VAE", name="Fix VAE", filename="fix_vae.safetensors")
    job = await stack.download(vae.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    newer = stack.fake.add_version(vae.model_id, version_name="v2.0", filename="fix_vae_v2.safetensors")
    updates = (await stack.civitai.CheckUpdates(S.CheckUpdatesRequest(), timeout=10)).updates
    (update,) = [u for u in updates if u.filename == "fix_vae.safetensors"]
    assert update.update_available and update.latest_version_id == newer.version_id
    job = await stack.download(newer.url)
    assert job.state == S.DOWNLOAD_STATE_SUCCEEDED, job.error
    assert (stack.user_models / "vaes" / "fix_vae_v2.safetensors").is_file()
