"""TLS to Kafka end to end, for real: mutual TLS with a throwaway CA against the embedded broker.

tansu 0.6.0 cannot serve TLS itself (--cert and --key are mutually exclusive in its CLI; with one
of them it still speaks plaintext), so `streamtrain broker --cert --key` puts a TLS front before it
(local/tls_front.py). The components take CA, certificate and key from files named by env variables,
as the Helm chart mounts them. Clients that are not trusted, or do not trust, are refused.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException

from streamtrain.kafka import clients
from streamtrain.service.config import CommonSettings
from tests.faults.helpers import client_conf, partition_ends
from tests.security.conftest import TlsRun
from tests.support.ledger import check_exactly_once

pytestmark = pytest.mark.integration


def test_pipeline_over_mutual_tls(tls_run: TlsRun) -> None:
    assert tls_run.broker["tls"] is True
    assert tls_run.broker["bootstrap_servers"].startswith("localhost:")  # the name the certificate is for
    conf = client_conf(tls_run.env)
    assert conf["security.protocol"] == "SSL" and "ssl.key.location" in conf
    train, test = tls_run.env["STREAMTRAIN_TRAIN_TOPIC"], tls_run.env["STREAMTRAIN_TEST_TOPIC"]
    ends = partition_ends(conf, train)
    assert sum(ends.values()) == tls_run.produced["train"] > 0
    assert sum(partition_ends(conf, test).values()) == tls_run.produced["test"] > 0
    check_exactly_once(tls_run.trainer, {train: ends})
    assert tls_run.evaluator["records_evaluated"] == tls_run.produced["test"]
    assert tls_run.trainer["last_version"] >= 1 and tls_run.evaluator["model_version"] is not None


def _connects(settings: dict[str, Any]) -> str:
    """'ok', or why the client could not get metadata (our own client configuration code is used)."""
    try:
        clients.admin(CommonSettings(**settings), "tls-probe").list_topics(timeout=8)
    except KafkaException as exc:
        return clients.error_text(exc)
    return "ok"


def test_untrusted_and_untrusting_clients_are_refused(tls_run: TlsRun, pki: Path) -> None:
    bootstrap = tls_run.broker["bootstrap_servers"]
    good = {"bootstrap_servers": bootstrap, "security_protocol": "SSL", "ssl_ca_location": pki / "ca.pem",
            "ssl_certificate_location": pki / "client.pem", "ssl_key_location": pki / "client.key"}
    by_ip = bootstrap.replace("localhost", "127.0.0.1")
    cases = {
        "mutual TLS, trusted both ways": (good, True),
        "plaintext to the TLS listener": ({"bootstrap_servers": bootstrap}, False),
        "no client certificate": ({**good, "ssl_certificate_location": None, "ssl_key_location": None}, False),
        "client certificate of another CA": ({**good, "ssl_certificate_location": pki / "rogue-client.pem",
                                              "ssl_key_location": pki / "rogue-client.key"}, False),
        "server not trusted (another CA)": ({**good, "ssl_ca_location": pki / "rogue-ca.pem"}, False),
        "host name not in the certificate": ({**good, "bootstrap_servers": by_ip}, False),
        "same, host name check off": ({**good, "bootstrap_servers": by_ip, "ssl_endpoint_identification": False},
                                      True),
    }
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        outcomes = dict(zip(cases, pool.map(lambda case: _connects(case[0]), cases.values()), strict=True))
    wrong = {name: outcome for name, outcome in outcomes.items() if (outcome == "ok") != cases[name][1]}
    assert not wrong, wrong
