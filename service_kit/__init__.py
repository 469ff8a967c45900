"""Server plumbing shared by every service: errors, logging, server, client channels and peers, config.

Written once so that each service only supplies its servicers and domain code.
"""

from service_kit import errors, peer
from service_kit.client import insecure_channel
from service_kit.logs import configure_logging, get_logger, register_secret, request_id_var
from service_kit.server import GrpcServer, ServiceBinding, run_until_signal, serve

__all__ = [
    "GrpcServer",
    "ServiceBinding",
    "configure_logging",
    "errors",
    "get_logger",
    "insecure_channel",
    "peer",
    "register_secret",
    "request_id_var",
    "run_until_signal",
    "serve",
]
