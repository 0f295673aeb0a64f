"""S3 and GCS back ends from ``s3://`` and ``gs://`` URLs, and where their credentials come from.

obstore (the Rust ``object_store`` underneath) looks for credentials in a chain whose last link
is the cloud's instance metadata service at 169.254.169.254: with no keys in the environment,
every request first asks that address for a token, and the failure reads "error performing
PUT http://169.254.169.254/latest/api/token". That is right on an EC2 or GCE machine talking
to its own cloud, and wrong for a store at a custom ``endpoint`` (MinIO, SeaweedFS, a GCS
emulator): there the metadata service is never asked unless the URL opts in with
``metadata_credentials=true``, and a store with no credentials is refused when it is opened,
with one line naming it. Without an endpoint the chain is left as it is
(``metadata_credentials=false`` turns its metadata link off there too).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import SplitResult, urlsplit

from obstore.store import GCSStore, S3Store

from pythonhosted.errortext import first_line

if TYPE_CHECKING:  # these exist only in obstore's type stubs
    from obstore.store import ClientConfig, GCSConfig, RetryConfig, S3Config

    from pythonhosted.storage.stores import Timeouts

_BOOL_PARAMS = frozenset(
    {"allow_http", "skip_signature", "virtual_hosted_style_request", "metadata_credentials"}
)
# Where obstore finds GCS credentials without the metadata service (besides service_account=).
_GCS_CREDENTIAL_ENV = (
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
_GCLOUD_DEFAULT = ".config/gcloud/application_default_credentials.json"


def describe(scheme: str, parts: SplitResult, params: Mapping[str, str]) -> str:
    """How errors name the store: its URL without the query, plus the endpoint (without any
    user info) when there is one. Secrets never appear: URLs refuse them."""
    label = f"{scheme}://{parts.netloc}{parts.path}".rstrip("/")
    endpoint = params.get("endpoint")
    if endpoint:
        host = urlsplit(endpoint)
        label += f" (endpoint {host.scheme}://{host.hostname or ''}"
        label += f":{host.port})" if host.port else ")"
    return label


def cloud_backend(
    scheme: str, parts: SplitResult, params: dict[str, str], timeouts: Timeouts, label: str
) -> S3Store | GCSStore:
    """The obstore back end for an ``s3://`` or ``gs://`` URL; ValueError (one line, naming
    the store) for a store without usable credentials or a configuration obstore refuses."""
    client_options: dict[str, Any] = {
        "connect_timeout": f"{int(timeouts.connect * 1000)}ms",
        "read_timeout": f"{int(timeouts.read * 1000)}ms",
    }
    config: dict[str, Any] = {}
    for key, value in params.items():
        config[key] = value.lower() == "true" if key in _BOOL_PARAMS else value
    if config.pop("allow_http", False):
        client_options["allow_http"] = True
    endpoint = config.get("endpoint")
    metadata = config.pop("metadata_credentials", not endpoint)
    within = timeouts.retry_within if timeouts.retry_within is not None else timeouts.read * 2
    retry = {"max_retries": timeouts.retries, "retry_timeout": timedelta(seconds=within)}
    prefix = parts.path.strip("/") or None
    try:
        if scheme == "s3":
            if not metadata:
                _require_s3_credentials(config, label)
            if endpoint:
                config.setdefault("region", "us-east-1")
            return S3Store(
                parts.netloc,
                prefix=prefix,
                config=cast("S3Config", config),
                client_options=cast("ClientConfig", client_options),
                retry_config=cast("RetryConfig", retry),
            )
        gcs_config: dict[str, Any] = {}
        if "service_account" in config:
            gcs_config["service_account_path"] = config.pop("service_account")
        config.pop("endpoint", None)
        if config:
            raise ValueError(f"unknown gs:// parameters: {', '.join(sorted(config))}")
        if endpoint:
            gcs_config["base_url"] = endpoint
        if not metadata:
            _require_gcs_credentials(gcs_config, label)
        return GCSStore(
            parts.netloc,
            prefix=prefix,
            config=cast("GCSConfig", gcs_config),
            client_options=cast("ClientConfig", client_options),
            retry_config=cast("RetryConfig", retry),
        )
    except ValueError:
        raise
    except Exception as exc:  # obstore's refusal, e.g. "Missing SecretAccessKey"
        raise ValueError(f"{label}: {first_line(exc)}") from None


def _require_s3_credentials(config: Mapping[str, Any], label: str) -> None:
    anonymous = config.get("skip_signature") or os.environ.get("AWS_SKIP_SIGNATURE", "") in (
        "true",
        "True",
        "1",
    )
    keys = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (anonymous or keys):
        raise ValueError(
            f"no credentials for {label}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or add skip_signature=true (anonymous) or metadata_credentials=true to the URL"
        )


def _require_gcs_credentials(config: Mapping[str, Any], label: str) -> None:
    if config.get("service_account_path") or any(os.environ.get(n) for n in _GCS_CREDENTIAL_ENV):
        return
    if (Path.home() / _GCLOUD_DEFAULT).is_file():
        return
    raise ValueError(
        f"no credentials for {label}: add service_account=/path/key.json to the URL or set "
        "GOOGLE_APPLICATION_CREDENTIALS, or add metadata_credentials=true"
    )
