"""Composition root: builds the CivitAI service's objects from its settings."""

from __future__ import annotations

from civitai_svc.api_client import CivitaiApi, RetryPolicy
from civitai_svc.catalog import Catalog
from civitai_svc.config import CivitaiSettings
from civitai_svc.downloader import Downloader
from civitai_svc.errors import DOMAIN
from civitai_svc.identify import Identifier
from civitai_svc.installer import Installer
from civitai_svc.job_journal import JobJournal
from civitai_svc.jobs import JobManager
from civitai_svc.previews import PreviewFetcher
from civitai_svc.registry_client import RegistryClient
from civitai_svc.servicer import CivitaiServicer
from civitai_svc.updates import IgnoredUpdates, Replacer, UpdateChecker
from modelmanager.v1 import civitai_pb2, civitai_pb2_grpc
from service_kit import GrpcServer, ServiceBinding, register_secret
from service_kit.files import ExclusiveLock


async def create_server(settings: CivitaiSettings) -> GrpcServer:
    """The service's gRPC server, not started (port 0 works; `.port` after `start()`)."""
    register_secret(settings.token)
    # One CivitAI service per volume: start-up resumes journalled jobs and deletes part files no
    # job owns, which would destroy the downloads of a second service on the same volume.
    lock = ExclusiveLock(settings.user_models_dir / ".downloads" / ".lock", "CivitAI service")
    lock.acquire()
    try:
        return _build(settings, lock)
    except BaseException:
        lock.release()
        raise


def _build(settings: CivitaiSettings, lock: ExclusiveLock) -> GrpcServer:
    api = CivitaiApi(
        settings.base_url,
        token=settings.token,
        retry=RetryPolicy(
            attempts=settings.retry_attempts,
            backoff_base=settings.retry_backoff_base,
            backoff_max=settings.retry_backoff_max,
            retry_after_max=settings.retry_after_max,
        ),
        cache_ttl=settings.cache_ttl_seconds,
        cache_max_entries=settings.cache_max_entries,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        user_agent=settings.user_agent,
    )
    registry = RegistryClient(settings.registry)
    downloader = Downloader(api, max_resumes=settings.max_resumes)
    previews = PreviewFetcher(api)  # one for the service: its bound covers downloads and identifications
    catalog = Catalog(api, registry)
    installer = Installer(settings.user_models_dir, registry, downloader, disk_reserve_bytes=settings.disk_reserve_bytes,
                          previews=previews, replacer=Replacer(catalog, registry))
    journal = JobJournal(settings.user_models_dir)
    jobs = JobManager(installer.run, max_concurrent=settings.max_concurrent_downloads,
                      max_finished=settings.max_finished_jobs, journal=journal)
    resume_downloads(journal, installer, jobs, settings.token)
    updates = UpdateChecker(api, registry, IgnoredUpdates(settings.user_models_dir))
    servicer = CivitaiServicer(catalog, installer, jobs, Identifier(api, previews), updates)
    server = GrpcServer(
        name="civitai",
        listen=settings.listen,
        bindings=[
            ServiceBinding.of(
                civitai_pb2.DESCRIPTOR.services_by_name["CivitaiService"],
                servicer,
                civitai_pb2_grpc.add_CivitaiServiceServicer_to_server,
            )
        ],
        error_domain=DOMAIN,
    )
    # Jobs first (stopped as interrupted: partial files and journal entries stay), then the clients they used.
    server.on_shutdown.extend([jobs.shutdown, api.aclose, registry.aclose, _release(lock)])
    return server


def resume_downloads(journal: JobJournal, installer: Installer, jobs: JobManager, token: str | None) -> None:
    """The jobs a previous run left unfinished run again under their ids, oldest first, with the
    service's token (the journal has none); `.part` files that no entry continues are removed."""
    kept = set()
    for proto, plan in journal.load():
        plan.token = token
        part = installer.adopt(proto, plan)
        if part is not None:
            kept.add(part)
        jobs.restore(proto, plan, plan.keys)
    installer.remove_stray_parts(kept)


def _release(lock: ExclusiveLock):  # type: ignore[no-untyped-def]
    async def release() -> None:
        lock.release()

    return release
