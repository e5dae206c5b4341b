"""The Kubernetes transport: a release's pods found by the chart's labels, each pod's /status read through the API
server's pod proxy, commands run in pods with exec. Everything goes through the API server with the user's own
kubeconfig and context: no port is opened or forwarded, and the API calls are exactly those the chart's operator
Role grants (charts/streamtrain/templates/operator-role.yaml; tests/chart/test_chart_operator_role.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

from streamtrain.kubectl.errors import ActionFailed, NotFound, UsageError
from streamtrain.kubectl.transport import COMPONENTS, DEFAULT_PORTS, Completed, Pod

# The chart's labels (charts/streamtrain/templates/_helpers.tpl): every pod of a release carries its instance and
# component; part-of keeps Strimzi's pods (which carry an instance label of their own) out.
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
PORT_NAME = "http"  # the chart's name of each component's port
STATUS_PATH = "status"
STATUS_TIMEOUT = 10.0


def label_selector(release: str) -> str:
    """One selector for every component pod of the release (one list call)."""
    return (f"{LABEL_PART_OF}=streamtrain,{LABEL_INSTANCE}={release},"
            f"{LABEL_COMPONENT} in ({','.join(COMPONENTS)})")


def proxy_name(pod: Pod) -> str:
    """The pod proxy's `name` argument: `<pod>:<port>`. The API server resolves no port names for pods (only for
    services), so the number comes from the pod's spec (pod_port)."""
    return f"{pod.name}:{pod.port}"


def pod_port(pod: client.V1Pod, component: str) -> int:
    """The component container's port named `http`, else the first port it declares, else the default."""
    for container in (pod.spec.containers if pod.spec else None) or []:
        if container.name != component:
            continue
        ports = container.ports or []
        for port in ports:
            if port.name == PORT_NAME:
                return int(port.container_port)
        if ports:
            return int(ports[0].container_port)
    return DEFAULT_PORTS[component]


def to_pod(pod: client.V1Pod) -> Pod:
    meta = pod.metadata or client.V1ObjectMeta()
    component = (meta.labels or {}).get(LABEL_COMPONENT, "")
    status = pod.status or client.V1PodStatus()
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
    restarts = sum(c.restart_count or 0 for c in status.container_statuses or [])
    phase = "Terminating" if meta.deletion_timestamp else (status.phase or "Unknown")
    return Pod(str(meta.name), component, ready, phase, restarts, pod_port(pod, component))


def exit_code_of(error_channel: str) -> int:
    """The exit code in the exec error channel's Status (Success, or NonZeroExitCode with an ExitCode cause);
    a failure without a code (the command not found, the container gone) counts as 1."""
    try:
        status = json.loads(error_channel) if error_channel.strip() else {}
    except ValueError:
        return 1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return 1
    return 1


@dataclass
class KubeTransport:
    api: client.ApiClient
    namespace: str
    release: str
    context: str | None = None

    @property
    def description(self) -> str:
        where = f" (context {self.context})" if self.context else ""
        return f"release {self.release} in namespace {self.namespace}{where}"

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def pods(self) -> list[Pod]:
        try:
            listed = self.core.list_namespaced_pod(self.namespace, label_selector=label_selector(self.release),
                                                   _request_timeout=STATUS_TIMEOUT)
        except ApiException as exc:
            raise _api_error(exc, f"list pods in namespace {self.namespace}") from None
        return sorted((to_pod(p) for p in listed.items), key=lambda p: (COMPONENTS.index(p.component), p.name))

    def status(self, pod: Pod) -> dict[str, Any] | None:
        if pod.phase != "Running":
            return None
        try:
            # _preload_content=False: the client would otherwise turn the JSON body into a Python repr (its
            # return type is str).
            response: Any = self.core.connect_get_namespaced_pod_proxy_with_path(
                proxy_name(pod), self.namespace, STATUS_PATH, _preload_content=False,
                _request_timeout=STATUS_TIMEOUT)
            data = json.loads(response.data)
        except ApiException as exc:
            if exc.status in (401, 403):
                raise _api_error(exc, f"get pods/proxy of {pod.name}") from None
            return None  # the pod is starting or stopping: its figures are missing, not an error
        except (ValueError, OSError):
            return None
        return data if isinstance(data, dict) else None

    def run(self, pod: Pod, argv: list[str], timeout: float) -> Completed:
        try:
            ws = stream(self.core.connect_get_namespaced_pod_exec, pod.name, self.namespace, command=argv,
                        container=pod.component, stderr=True, stdin=False, stdout=True, tty=False,
                        _preload_content=False)
        except ApiException as exc:
            raise _api_error(exc, f"create pods/exec in {pod.name}") from None
        try:
            ws.run_forever(timeout=timeout)
            if ws.is_open():
                raise ActionFailed(f"`{' '.join(argv)}` in {pod.name} did not finish within {timeout:g} s")
            out, err = ws.read_channel(STDOUT_CHANNEL), ws.read_channel(STDERR_CHANNEL)
            code = exit_code_of(ws.read_channel(ERROR_CHANNEL))
        finally:
            ws.close()
        return Completed(code, out, err, pod.name)


def _api_error(exc: ApiException, what: str) -> Exception:
    """One line for an API error; forbidden and unauthorized are configuration (which Role is bound)."""
    status = exc.status or _handshake_status(str(exc.reason))
    if status in (401, 403):
        return UsageError(f"not allowed to {what} ({status}): bind the chart's operator Role to your user "
                          "(docs/operations.md#permissions)")
    if status == 404:
        return NotFound(f"cannot {what}: not found")
    reason = str(exc.reason or "").splitlines()[0] if exc.reason else "no answer"
    return ActionFailed(f"cannot {what}: {status or ''} {reason}".replace("  ", " "))


def _handshake_status(reason: str) -> int | None:
    """exec runs over a websocket; its refusals arrive as `Handshake status 403 Forbidden` with status 0."""
    match = re.search(r"Handshake status (\d{3})", reason)
    return int(match.group(1)) if match else None


def connect(kubeconfig: str | None, context: str | None, namespace: str | None, release: str) -> KubeTransport:
    """The transport for the user's kubeconfig and context; the namespace defaults to the context's, as kubectl's."""
    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot load the kube config{f' context {context}' if context else ''}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    if namespace is None:
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    return KubeTransport(api, namespace, release, (chosen or {}).get("name"))
