"""gateway.protojson gives exactly json_format's output for every message the API returns."""

from __future__ import annotations

import random

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.protojson import message_to_dict
from modelmanager.v1 import civitai_pb2, inference_pb2, model_pb2, registry_pb2


def reference(msg: Message) -> object:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def model(i: int) -> model_pb2.Model:
    m = model_pb2.Model(filename=f"m{i}.safetensors", type=i % 3, display_name=f"Model {i}", source=i % 5,
                        trigger_words=["a", f"w{i}"], recommended_weight=0.1 * i, base_model="Illustrious",
                        tags=["t"] * (i % 3), file_size_bytes=2**40 + i, civitai_model_id=i, sha256="ab" * 32,
                        file_present=bool(i % 2))
    if i % 2:
        m.added_at.FromSeconds(1_700_000_000 + i)
        m.inspection.format = "safetensors"
        m.inspection.tensor_count = 7
        m.inspection.header_metadata["ss_network_dim"] = str(i)
    return m


def messages() -> list[Message]:
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    info = error_details_pb2.ErrorInfo(reason="DATA_LOSS", domain="civitai.modelmanager", metadata={"k": "v"})
    status = status_pb2.Status(code=code_pb2.DATA_LOSS, message="hash mismatch")
    status.details.add().Pack(info)
    job = civitai_pb2.DownloadJob(id="j", state=civitai_pb2.DOWNLOAD_STATE_FAILED, bytes_done=5, total_bytes=10,
                                  bytes_per_second=1.5, eta_seconds=-1, model=model(1), error=status)
    job.create_time.FromSeconds(1_700_000_000)
    info_msg = civitai_pb2.CivitaiModelInfo(model_id=1, name="x", trigger_words=["t"], supported=True,
                                           file=civitai_pb2.CivitaiFile(id=3, size_bytes=9, primary=True),
                                           images=[civitai_pb2.PreviewImage(url="u", width=1)])
    info_msg.versions.add(id=2, name="v2").published_at.FromSeconds(1)
    rng = random.Random(0)
    return [
        registry_pb2.ListModelsResponse(models=[model(i) for i in range(12)], next_page_token="n", total_size=12),
        registry_pb2.ListModelsResponse(),
        registry_pb2.GetActiveCheckpointResponse(checkpoint="illustrious-xl", path="/p", file_present=True),
        registry_pb2.ComposePromptResponse(prompt="p", injected_trigger_words=["a"], loras=[
            model_pb2.ResolvedLora(filename="f", weight=0.75, trigger_words=["a"])]),
        registry_pb2.RescanModelsResponse(added=[model(2)], missing_filenames=["x"],
                                          skipped=[registry_pb2.RescanSkippedFile(path="p", reason="r")]),
        civitai_pb2.GetDownloadResponse(job=job),
        civitai_pb2.ListDownloadsResponse(jobs=[job, civitai_pb2.DownloadJob(id="k")]),
        civitai_pb2.GetModelInfoResponse(info=info_msg),
        civitai_pb2.ParseReferenceResponse(reference=civitai_pb2.CivitaiReference(
            kind=civitai_pb2.REFERENCE_KIND_VERSION, model_id=1, version_id=2)),
        inference_pb2.GenerateResponse(queued=inference_pb2.JobQueued(job_id="j", position=2)),
        inference_pb2.GenerateResponse(progress=inference_pb2.JobProgress(stage="denoising", step=3, total_steps=9)),
        inference_pb2.ImageResult(png=rng.randbytes(100), width=8, height=8, seed=2**62, final_prompt="p",
                                  timings=inference_pb2.Timings(total_seconds=1.25)),
        inference_pb2.LoadCheckpointResponse(progress=inference_pb2.LoadProgress(stage="reading", fraction=0.5)),
        inference_pb2.GetStatusResponse(device="cpu", checkpoints=[inference_pb2.LoadedCheckpoint(
            checkpoint="c", adapters=["a"], size_bytes=3)]),
        inference_pb2.GenerateRequest(prompt="x", guidance_scale=0.0, seed=0),  # optional fields set to zero
        inference_pb2.GenerateRequest(prompt="x"),
        model_pb2.Model(type=99),  # an enum value this build does not know
        inference_pb2.LoadResult(load_seconds=float("nan")),
    ]


@pytest.mark.parametrize("msg", messages(), ids=lambda m: type(m).__name__)
def test_same_as_json_format(msg: Message) -> None:
    assert message_to_dict(msg) == reference(msg)
