"""Cluster-level end-to-end tests: a deployed release on a live Kubernetes cluster (kind or any other).

Where: STREAMTRAIN_KUBE_CONTEXT (or --kube-context, when tests/conftest.py registers it) picks the kube
context (default: the current one); STREAMTRAIN_NAMESPACE and STREAMTRAIN_RELEASE name the release
(defaults as in `make deploy`).
Everything is skipped, with the reason, when no cluster is reachable or the release is not deployed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from clusterkit import Cluster


def _kube_context(config: pytest.Config) -> str | None:
    try:
        option = config.getoption("--kube-context")
    except ValueError:  # the option is registered only by the root conftest
        option = None
    return option or os.environ.get("STREAMTRAIN_KUBE_CONTEXT") or None


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    context = _kube_context(request.config)
    namespace = os.environ.get("STREAMTRAIN_NAMESPACE", "streamtrain")
    release = os.environ.get("STREAMTRAIN_RELEASE", "streamtrain")
    reason = Cluster.unavailable(context, namespace, release)
    if reason:
        pytest.skip(reason)
    # These tests change the release (streams, trainer restart, upgrade, uninstall): a plain `pytest tests`
    # must not run them against whatever cluster the current context happens to point at.
    if context is None and "e2e" not in (request.config.option.markexpr or ""):
        pytest.skip(
            "a cluster is reachable, but the e2e suite was not asked for: run `make e2e`, "
            "`pytest -m e2e`, or set STREAMTRAIN_KUBE_CONTEXT"
        )
    yield Cluster(context, namespace, release)
