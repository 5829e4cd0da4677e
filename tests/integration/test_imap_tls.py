"""The IMAP trainer over implicit TLS and STARTTLS, against a Dovecot with a self-signed cert."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from dovecot import DovecotServer, _free_port
from test_imap_trainer import account_of, make_message, model_counts, train_cli, upload, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_server():
    """A Dovecot with STARTTLS on its port and implicit TLS on ``server.tls_port``."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make the test certificate: apt-get install openssl")
    folder = Path(tempfile.mkdtemp(prefix="spamlearn-tls-", dir="/tmp"))
    os.chmod(folder, 0o755)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                   check=True, capture_output=True)
    tls_port = _free_port("127.0.0.1")
    extra = (f"ssl = yes\nssl_cert = <{folder / 'cert.pem'}\nssl_key = <{folder / 'key.pem'}\n"
             f"service imap-login {{\n  inet_listener imaps {{\n    address = 127.0.0.1\n"
             f"    port = {tls_port}\n    ssl = yes\n  }}\n}}\n")
    server = DovecotServer(users={"alice": "alice-Tls-1"}, extra_config=extra)
    server.tls_port = tls_port
    server.ca_file = folder / "cert.pem"
    server.start()
    try:
        upload(server, "alice", "Junk", [make_message("spam", 1)])
        yield server
        assert server.errors() == []
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_trains_over_tls_with_a_private_ca(tls_server, tmp_path, security):
    port = tls_server.tls_port if security == "tls" else tls_server.port
    config = write_config(tmp_path, tls_server, [{"username": "alice", "security": security, "port": port,
                                                  "ca_file": str(tls_server.ca_file)}])
    code, data, stderr = train_cli(config)
    assert code == 0, stderr
    assert account_of(data, "alice")["learned_spam"] == 1
    assert model_counts(config) == (1, 0)


def test_untrusted_certificate_is_a_clear_tls_failure(tls_server, tmp_path):
    config = write_config(tmp_path, tls_server, [{"username": "alice", "port": tls_server.tls_port,
                                                  "security": "tls", "retries": 0}])
    code, data, stderr = train_cli(config)
    assert code == 69
    assert "account alice" in stderr and "TLS certificate not trusted" in stderr and "ca_file" in stderr


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_a_ca_file_that_cannot_serve_is_a_config_error_naming_it(tls_server, tmp_path, content):
    """Missing or not PEM: the config is wrong (78, at once), not the network
    (69, retried for minutes with "No such file or directory while connecting")."""
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    config = write_config(tmp_path, tls_server, [{"username": "alice", "port": tls_server.tls_port,
                                                  "security": "tls", "ca_file": str(ca_file), "retries": 3,
                                                  "retry_delay": 5}])
    code, data, stderr = train_cli(config)
    assert code == 78, stderr
    assert f"ca_file {ca_file}" in stderr and "retry" not in stderr


def test_a_certificate_a_given_ca_file_does_not_trust_gives_no_ca_file_hint(tls_server, tmp_path):
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=other", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(other)], check=True, capture_output=True)
    config = write_config(tmp_path, tls_server, [{"username": "alice", "port": tls_server.tls_port,
                                                  "security": "tls", "ca_file": str(other), "retries": 0}])
    code, _, stderr = train_cli(config)
    assert code == 69 and "TLS certificate not trusted" in stderr and "set ca_file" not in stderr
