"""Embeddings, VAEs and upscalers (issue 14) through a real registry: each type told from the file (never its
name or folder), SD 1.x refused with what it is, pickles read weights-only, and Create / Upload / List /
rescan / import / Update (default_vae, negative_embedding) covering the new types."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from import_helpers import models_of, run_import
from registry_helpers import create_request, reason

from devtools.model_files import write_malicious_pickle, write_safetensors, write_torch_pickle
from modelmanager.v1 import model_pb2, registry_pb2

EMBEDDING = model_pb2.MODEL_TYPE_EMBEDDING
VAE = model_pb2.MODEL_TYPE_VAE
UPSCALER = model_pb2.MODEL_TYPE_UPSCALER
CHECKPOINT = model_pb2.MODEL_TYPE_CHECKPOINT


async def fails(call, code: grpc.StatusCode, expected: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert reason(caught.value) == expected, caught.value.details()
    return caught.value


async def test_the_volume_has_a_folder_per_type(reg):
    for folder in ("loras", "checkpoints", "embeddings", "vaes", "upscalers"):
        assert (reg.user_models / folder).is_dir(), folder


@pytest.mark.parametrize(("kind", "folder", "proto_type", "detected", "arch"), [
    ("sdxl-embedding", "embeddings", EMBEDDING, "embedding", "sdxl"),
    ("vae", "vaes", VAE, "vae", "unknown"),  # SDXL and SD 1.x VAEs are alike: no metadata, not told
    ("vae-ldm", "vaes", VAE, "vae", "unknown"),
    ("esrgan", "upscalers", UPSCALER, "upscaler", "esrgan"),
])
async def test_create_tells_each_type_from_the_file(reg, kind, folder, proto_type, detected, arch):
    write_safetensors(reg.user_models / folder / "thing.safetensors", kind, payload_bytes=0)
    m = (await reg.stub.CreateModel(create_request("thing.safetensors", proto_type))).model
    assert m.type == proto_type and m.file_present
    assert (m.inspection.detected_type, m.inspection.architecture) == (detected, arch)
    listed = await models_of(reg.stub, type=proto_type)
    assert list(listed) == ["thing.safetensors"]
    assert not await models_of(reg.stub, type=model_pb2.MODEL_TYPE_LORA)


async def test_a_vae_says_its_format_and_sdxl_metadata_counts(reg):
    write_safetensors(reg.user_models / "vaes" / "xl.safetensors", "vae", payload_bytes=0,
                      metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"})
    m = (await reg.stub.CreateModel(create_request("xl.safetensors", VAE))).model
    assert m.inspection.architecture == "sdxl" and m.inspection.header_metadata["registry.vae_format"] == "diffusers"


async def test_an_embeddings_token_is_its_trigger_word(reg):
    write_safetensors(reg.user_models / "embeddings" / "negXL.safetensors", "sdxl-embedding", payload_bytes=0)
    m = (await reg.stub.CreateModel(create_request("negXL.safetensors", EMBEDDING))).model
    assert list(m.trigger_words) == ["negXL"] and m.embedding_token == "negXL" and not m.negative_embedding
    mask = field_mask_pb2.FieldMask(paths=["trigger_words", "negative_embedding"])
    changed = (await reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
        model=model_pb2.Model(filename="negXL.safetensors", trigger_words=["bad-hands"], negative_embedding=True),
        update_mask=mask))).model
    assert changed.embedding_token == "bad-hands" and changed.negative_embedding


@pytest.mark.parametrize(("kind", "folder", "proto_type", "what"), [
    ("sd15-embedding", "embeddings", EMBEDDING, "SD 1.x embedding"),
    ("sd15-vae", "vaes", VAE, "SD 1.x VAE"),
])
async def test_sd1_embeddings_and_vaes_are_refused_naming_what_they_are(reg, kind, folder, proto_type, what):
    write_safetensors(reg.user_models / folder / "old.safetensors", kind, payload_bytes=0)
    err = await fails(reg.stub.CreateModel(create_request("old.safetensors", proto_type)),
                      grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")
    assert what in err.details()


async def test_an_sd1_embedding_named_like_an_sdxl_one_is_still_refused(reg):
    """The type comes from the tensors: an SDXL-sounding name in embeddings/ does not make it one."""
    write_safetensors(reg.user_models / "embeddings" / "sdxl_negative_XL.safetensors", "sd15-embedding",
                      payload_bytes=0)
    err = await fails(reg.stub.CreateModel(create_request("sdxl_negative_XL.safetensors", EMBEDDING)),
                      grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")
    assert "SD 1.x embedding" in err.details()


async def test_a_file_of_another_type_is_a_type_mismatch(reg):
    write_safetensors(reg.user_models / "vaes" / "lora_in_disguise.safetensors", "lora", payload_bytes=512)
    err = await fails(reg.stub.CreateModel(create_request("lora_in_disguise.safetensors", VAE)),
                      grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")
    assert "claimed to be a VAE" in err.details() and "an SDXL LoRA" in err.details()
    write_safetensors(reg.user_models / "upscalers" / "vae.safetensors", "vae", payload_bytes=0)
    err = await fails(reg.stub.CreateModel(create_request("vae.safetensors", UPSCALER)),
                      grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")
    assert "VAE" in err.details()


async def test_pickles_are_read_weights_only(reg, tmp_path: Path):
    write_torch_pickle(reg.user_models / "upscalers" / "4x.pth", "esrgan", wrap="params_ema")
    m = (await reg.stub.CreateModel(create_request("4x.pth", UPSCALER))).model
    assert (m.inspection.format, m.inspection.detected_type, m.inspection.architecture) == ("pickle", "upscaler",
                                                                                          "esrgan")
    write_torch_pickle(reg.user_models / "embeddings" / "old.pt", "sd15-embedding", wrap="string_to_param",
                       extra={"name": "old", "step": 1000})
    err = await fails(reg.stub.CreateModel(create_request("old.pt", EMBEDDING)),
                      grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")
    assert "SD 1.x embedding" in err.details()
    marker = tmp_path / "unpickled"
    for name, torch_zip in (("evil.pth", True), ("evil-raw.pt", False)):
        write_malicious_pickle(reg.user_models / "upscalers" / name, marker, torch_zip=torch_zip)
        err = await fails(reg.stub.CreateModel(create_request(name, UPSCALER)),
                          grpc.StatusCode.INVALID_ARGUMENT, "UNSAFE_PICKLE")
        assert "weights-only" in err.details()
    assert not marker.exists(), "a pickle was unpickled in full"
    # LoRA and checkpoint pickles are as before: refused unless --allow-pickle, never opened.
    write_torch_pickle(reg.loras / "x.pt", "lora")
    await fails(reg.stub.CreateModel(create_request("x.pt", model_pb2.MODEL_TYPE_LORA)),
                grpc.StatusCode.INVALID_ARGUMENT, "PICKLE_NOT_ALLOWED")


def _upload(filename: str, kind: int, data: bytes):
    yield registry_pb2.UploadModelRequest(header=registry_pb2.UploadModelHeader(filename=filename, type=kind))
    for i in range(0, len(data), 64 * 1024):
        yield registry_pb2.UploadModelRequest(chunk=data[i:i + 64 * 1024])


async def test_upload_of_each_type(reg, tmp_path: Path):
    for kind, proto_type, folder in (("sdxl-embedding", EMBEDDING, "embeddings"), ("vae", VAE, "vaes"),
                                     ("esrgan", UPSCALER, "upscalers")):
        data = write_safetensors(tmp_path / f"{kind}.safetensors", kind, payload_bytes=0).read_bytes()
        m = (await reg.stub.UploadModel(_upload(f"up-{kind}.safetensors", proto_type, data))).model
        assert m.type == proto_type and (reg.user_models / folder / f"up-{kind}.safetensors").is_file()
    marker = tmp_path / "unpickled"
    evil = write_malicious_pickle(tmp_path / "evil.pth", marker).read_bytes()
    await fails(reg.stub.UploadModel(_upload("evil.pth", UPSCALER, evil)), grpc.StatusCode.INVALID_ARGUMENT,
                "UNSAFE_PICKLE")
    assert not marker.exists() and not (reg.user_models / "upscalers" / "evil.pth").exists()
    old = write_safetensors(tmp_path / "old.safetensors", "sd15-embedding", payload_bytes=0).read_bytes()
    await fails(reg.stub.UploadModel(_upload("sdxl-looking.safetensors", EMBEDDING, old)),
                grpc.StatusCode.INVALID_ARGUMENT, "TYPE_MISMATCH")


async def test_default_vae_is_a_vae_entry(reg):
    write_safetensors(reg.checkpoints / "base.safetensors", "checkpoint", payload_bytes=1024)
    write_safetensors(reg.user_models / "vaes" / "fp16fix.safetensors", "vae", payload_bytes=0)
    write_safetensors(reg.user_models / "embeddings" / "e.safetensors", "sdxl-embedding", payload_bytes=0)
    for name, kind in (("base.safetensors", CHECKPOINT), ("fp16fix.safetensors", VAE), ("e.safetensors", EMBEDDING)):
        await reg.stub.CreateModel(create_request(name, kind))

    def update(filename: str, **fields):
        return reg.stub.UpdateModel(registry_pb2.UpdateModelRequest(
            model=model_pb2.Model(filename=filename, **fields),
            update_mask=field_mask_pb2.FieldMask(paths=list(fields))))

    m = (await update("base.safetensors", default_vae="fp16fix.safetensors")).model
    assert m.default_vae == "fp16fix.safetensors"
    await fails(update("base.safetensors", default_vae="e.safetensors"), grpc.StatusCode.INVALID_ARGUMENT,
                "NOT_A_VAE")
    await fails(update("base.safetensors", default_vae="nope.safetensors"), grpc.StatusCode.NOT_FOUND,
                "VAE_NOT_FOUND")
    await fails(update("fp16fix.safetensors", default_vae="fp16fix.safetensors"), grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_UPDATE_MASK")
    cleared = (await update("base.safetensors", default_vae="")).model
    assert cleared.default_vae == ""


async def test_rescan_registers_the_new_types_from_their_files(start_registry, volumes):
    user_models, _ = volumes
    write_safetensors(user_models / "embeddings" / "e.safetensors", "sdxl-embedding", payload_bytes=0)
    write_safetensors(user_models / "vaes" / "v.safetensors", "vae-ldm", payload_bytes=0)
    write_torch_pickle(user_models / "upscalers" / "u.pth", "esrgan")
    write_safetensors(user_models / "embeddings" / "old.safetensors", "sd15-embedding", payload_bytes=0)
    write_safetensors(user_models / "vaes" / "actually_lora.safetensors", "lora", payload_bytes=512)
    reg = await start_registry()
    models = await models_of(reg.stub)
    assert {k: m.type for k, m in models.items()} == {"e.safetensors": EMBEDDING, "v.safetensors": VAE,
                                                      "u.pth": UPSCALER}
    write_safetensors(user_models / "upscalers" / "late.safetensors", "esrgan", payload_bytes=0, seed=2)
    report = await reg.stub.RescanModels(registry_pb2.RescanModelsRequest())
    assert [m.filename for m in report.added] == ["late.safetensors"] and report.added[0].type == UPSCALER
    skipped = {s.path: s.reason for s in report.skipped}
    assert skipped["embeddings/old.safetensors"].startswith("TYPE_MISMATCH")
    assert skipped["vaes/actually_lora.safetensors"].startswith("TYPE_MISMATCH")


async def test_import_finds_the_new_types_by_content_in_a1111_and_comfyui_folders(start_registry, tmp_path):
    libs = tmp_path / "libraries"
    a1111, comfy = libs / "a1111", libs / "comfy"
    write_safetensors(a1111 / "embeddings" / "negXL.safetensors", "sdxl-embedding", payload_bytes=0)
    write_safetensors(a1111 / "models" / "VAE" / "sdxl_vae.safetensors", "vae", payload_bytes=0)
    write_torch_pickle(a1111 / "models" / "ESRGAN" / "4x_tiny.pth", "esrgan")
    write_torch_pickle(a1111 / "embeddings" / "old15.pt", "sd15-embedding", wrap="string_to_param")
    marker = tmp_path / "unpickled"
    write_malicious_pickle(a1111 / "models" / "ESRGAN" / "evil.pth", marker)
    # ComfyUI folder names, and a VAE lying in the embeddings folder: the file decides, not the folder.
    write_safetensors(comfy / "models" / "embeddings" / "pos.safetensors", "sdxl-embedding", payload_bytes=0, seed=3)
    write_safetensors(comfy / "models" / "embeddings" / "misplaced_vae.safetensors", "vae-ldm", payload_bytes=0)
    write_safetensors(comfy / "models" / "upscale_models" / "x2.safetensors", "esrgan", payload_bytes=0, seed=4)
    write_safetensors(comfy / "models" / "vae" / "sd15.safetensors", "sd15-vae", payload_bytes=0)
    reg = await start_registry(library_allow=[str(libs)], civitai="127.0.0.1:9")

    job = await run_import(reg.stub, path=str(a1111))
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED, job.error
    models = await models_of(reg.stub, root_id=job.root_id)
    assert {k: m.type for k, m in models.items()} == {"negXL.safetensors": EMBEDDING,
                                                      "sdxl_vae.safetensors": VAE, "4x_tiny.pth": UPSCALER}
    assert models["negXL.safetensors"].embedding_token == "negXL"
    skipped = {s.path: s.reason for s in job.skipped}
    assert skipped["embeddings/old15.pt"].startswith("SD1") and "SD 1.x embedding" in skipped["embeddings/old15.pt"]
    assert skipped["models/ESRGAN/evil.pth"].startswith("PICKLE_FORMAT")
    assert not marker.exists(), "a pickle was unpickled in full"

    job = await run_import(reg.stub, path=str(comfy))
    assert job.state == registry_pb2.IMPORT_STATE_SUCCEEDED, job.error
    models = await models_of(reg.stub, root_id=job.root_id)
    assert {k: m.type for k, m in models.items()} == {"pos.safetensors": EMBEDDING,
                                                      "misplaced_vae.safetensors": VAE, "x2.safetensors": UPSCALER}
    skipped = {s.path: s.reason for s in job.skipped}
    assert skipped["models/vae/sd15.safetensors"].startswith("SD1")
    assert set(await models_of(reg.stub, type=UPSCALER)) == {"4x_tiny.pth", "x2.safetensors"}
