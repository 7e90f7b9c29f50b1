"""TLS in transit: the service started with a certificate answers over HTTPS and refuses
plain HTTP on that port (a real ``bentoml serve`` process, self-signed certificate)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from serving.config import ServingConfig
from serving.keys import ApiKeyStore
from tests.serving.live import REPO, free_port

pytestmark = pytest.mark.slow


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made now (nothing is downloaded)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls_settings_need_both_files(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert ServingConfig(tls_cert=str(cert), tls_key=str(key)).tls_key == str(key)
    with pytest.raises(ValueError, match="go together"):
        ServingConfig(tls_cert=str(cert))
    with pytest.raises(ValueError, match="readable PEM"):
        ServingConfig(tls_cert=str(cert), tls_key=str(tmp_path / "missing.pem"))


def test_serve_cli_wants_cert_and_key_together(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tagsmith.cli import main

    cert, _ = self_signed(tmp_path)
    root = tmp_path / "p"
    assert CliRunner().invoke(main, ["--project", str(root), "init"]).exit_code == 0
    result = CliRunner().invoke(main, ["--project", str(root), "serve", "--tls-cert", str(cert)])
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key together" in result.output


def test_serves_https_and_refuses_plain_http(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    keys = ApiKeyStore(tmp_path / "keys.json")
    secret = keys.add("crm", "marketing")
    versions = tmp_path / "versions.json"
    versions.write_text('{"churn-predictor": "1", "value-predictor": "1"}')
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TAGSMITH_FAKE_KEYS": str(tmp_path / "keys.json"),
        "TAGSMITH_FAKE_VERSIONS": str(versions),
        "TAGSMITH_FAKE_CUSTOMERS": "50",
        "TAGSMITH_TLS_CERT": str(cert),
        "TAGSMITH_TLS_KEY": str(key),
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "tests.serving.fake_app:TagService",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/readyz", verify=trust, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
        r = httpx.post(
            f"{url}/tags",
            json={"customer_ids": ["c0001"]},
            headers={"Authorization": f"Bearer {secret}"},
            verify=trust,
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["customer_id"] == "c0001"
        # An unverified client (no trust in the self-signed certificate) is refused.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/readyz", timeout=5)
        # Plain HTTP on the same port gets no HTTP answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
