"""Which clouds have usable credentials, found in seconds without SkyPilot's API server.

`sky check` goes through SkyPilot's local API server (15-35 s to start) and calls each
cloud; rayctl's launch path only needs to know, fast, whether a cloud *can* work. This
module resolves credentials the way the clouds' own SDKs do, each in a thread with a
hard timeout (never a hang on an instance-metadata endpoint):

- aws: botocore's credential chain (env, profiles, SSO, web identity, container and
  instance metadata with a 1 s metadata timeout);
- gcp: `google.auth.default()` plus a project id (env or gcloud config);
- lambda, runpod, vast, cudo, hyperbolic, shadeform, nebius: the API-key file SkyPilot
  reads for that cloud.

Other clouds are reported as "not checked" and not used by `--target cloud`. A cloud
found here may still fail SkyPilot's fuller check at launch (e.g. missing IAM
permissions); SkyPilot's error is then reported (redacted) and nothing is left running.
Messages never include credential values.
"""

from __future__ import annotations

import concurrent.futures as cf
import configparser
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 5.0

FIX = {
    "aws": "run `aws configure` (or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE), "
           "then `sky check aws`",
    "gcp": "run `gcloud auth application-default login` and `gcloud config set project PROJECT_ID` "
           "(or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key and GOOGLE_CLOUD_PROJECT), "
           "then `sky check gcp`",
}

KEY_FILES = {
    "lambda": ["~/.lambda_cloud/lambda_keys"],
    "runpod": ["~/.runpod/config.toml"],
    "vast": ["~/.config/vastai/vast_api_key"],
    "cudo": ["~/.config/cudo/cudo.yml"],
    "hyperbolic": ["~/.hyperbolic/api_key"],
    "shadeform": ["~/.shadeform/api_key"],
    "nebius": ["~/.nebius/credentials.json"],
}


@dataclass
class CloudCheck:
    cloud: str
    enabled: bool
    detail: str  # where the credentials came from, or why not (never a secret)
    fix: str = ""

    def as_dict(self) -> dict:
        return {"cloud": self.cloud, "enabled": self.enabled, "detail": self.detail, "fix": self.fix}


def _aws() -> CloudCheck:
    try:
        import botocore.session
    except ImportError:
        return CloudCheck("aws", False, "boto3/botocore is not installed", "pip install 'rayctl[cloud]'")
    s = botocore.session.Session()
    s.set_config_variable("metadata_service_timeout", 1)
    s.set_config_variable("metadata_service_num_attempts", 1)
    try:
        creds = s.get_credentials()
    except Exception as e:  # a broken profile, SSO token expired, ...
        from ..redact import redact

        return CloudCheck("aws", False, f"credentials could not be loaded: {redact(type(e).__name__)}: "
                          f"{redact(str(e))[:200]}", FIX["aws"])
    if creds is None:
        return CloudCheck("aws", False, "no credentials found (environment, ~/.aws/credentials, ~/.aws/config, "
                          "SSO, instance metadata)", FIX["aws"])
    method = getattr(creds, "method", None) or "credential chain"
    return CloudCheck("aws", True, f"credentials from {method}")


def _gcp_project_from_gcloud() -> str | None:
    cfg_dir = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    active = "default"
    try:
        active = (cfg_dir / "active_config").read_text().strip() or "default"
    except OSError:
        pass
    p = configparser.ConfigParser()
    try:
        p.read(cfg_dir / "configurations" / f"config_{active}")
        return p.get("core", "project", fallback=None)
    except (configparser.Error, OSError):
        return None


def gcp_project() -> str | None:
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"):
        if os.environ.get(var):
            return os.environ[var]
    return _gcp_project_from_gcloud()


@contextlib.contextmanager
def _metadata_timeout(seconds: str):
    """GCE_METADATA_TIMEOUT for google.auth's metadata probe, for this call only (a user's own value wins)."""
    if "GCE_METADATA_TIMEOUT" in os.environ:
        yield
        return
    os.environ["GCE_METADATA_TIMEOUT"] = seconds
    try:
        yield
    finally:
        os.environ.pop("GCE_METADATA_TIMEOUT", None)


def _gcp() -> CloudCheck:
    try:
        import google.auth
        from google.auth import exceptions as gexc
    except ImportError:
        return CloudCheck("gcp", False, "google-auth is not installed", "pip install 'rayctl[cloud]'")
    try:
        with _metadata_timeout("1"):  # off GCP the metadata server probe would wait its default 3 s
            _creds, project = google.auth.default()
    except gexc.DefaultCredentialsError:
        return CloudCheck("gcp", False, "no application-default credentials found", FIX["gcp"])
    except Exception as e:
        from ..redact import redact

        return CloudCheck("gcp", False, f"credentials could not be loaded: {type(e).__name__}: "
                          f"{redact(str(e))[:200]}", FIX["gcp"])
    project = project or gcp_project()
    if not project:
        return CloudCheck("gcp", False, "credentials found but no project is set", FIX["gcp"])
    return CloudCheck("gcp", True, f"application-default credentials, project {project}")


def _key_file(cloud: str) -> CloudCheck:
    for f in KEY_FILES[cloud]:
        if Path(f).expanduser().is_file():
            return CloudCheck(cloud, True, f"API key file {f}")
    return CloudCheck(cloud, False, f"no API key file ({', '.join(KEY_FILES[cloud])})",
                      f"see `sky check {cloud}` for how to set up {cloud} credentials")


def _one(cloud: str) -> CloudCheck:
    if cloud == "aws":
        return _aws()
    if cloud == "gcp":
        return _gcp()
    if cloud in KEY_FILES:
        return _key_file(cloud)
    return CloudCheck(cloud, False, "not checked by rayctl (the cloud target supports aws, gcp and "
                      + ", ".join(sorted(KEY_FILES)) + ")", "use resources.clouds to pick a supported cloud")


def check(clouds, timeout_s: float = TIMEOUT_S) -> dict[str, CloudCheck]:
    """CloudCheck per cloud, all within `timeout_s` seconds in total."""
    clouds = list(dict.fromkeys(clouds))
    out: dict[str, CloudCheck] = {}
    pool = cf.ThreadPoolExecutor(max_workers=max(1, len(clouds)), thread_name_prefix="rayctl-cloud-check")
    try:
        futs = {c: pool.submit(_one, c) for c in clouds}
        done, _ = cf.wait(futs.values(), timeout=timeout_s)
        for c, f in futs.items():
            if f in done:
                try:
                    out[c] = f.result()
                except Exception as e:  # never let a credential probe crash the launch
                    out[c] = CloudCheck(c, False, f"check failed: {type(e).__name__}", FIX.get(c, ""))
            else:
                out[c] = CloudCheck(c, False, f"credential check timed out after {timeout_s:g} s "
                                    "(instance metadata or a credential helper did not answer)", FIX.get(c, ""))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return out


def summary(results: dict[str, CloudCheck]) -> str:
    on = [c for c, r in results.items() if r.enabled]
    lines = [f"enabled clouds: {', '.join(on) if on else 'none'}"]
    for c, r in results.items():
        mark = "ok " if r.enabled else "no "
        lines.append(f"  {mark} {c}: {r.detail}" + (f" — fix: {r.fix}" if not r.enabled and r.fix else ""))
    return "\n".join(lines)
