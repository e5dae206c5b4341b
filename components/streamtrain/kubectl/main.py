"""`kubectl-streamtrain`: the entry point kubectl finds on PATH (`kubectl streamtrain ...`)."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from streamtrain.kubectl import commands
from streamtrain.kubectl.errors import EXIT_USAGE, PluginError
from streamtrain.kubectl.local import LocalTransport, default_urls, load_config
from streamtrain.kubectl.transport import COMPONENTS, Transport
from streamtrain.kubectl.views import FORMATS, View, render

PROG = "kubectl streamtrain"

EPILOG = """\
exit codes:
  0  done
  1  the action failed (the command in the pod, or the API server, said why)
  2  usage or configuration (bad arguments, kube config or context, local config, not allowed by RBAC)
  3  not found (no such release or no pods of a component, an unknown version, no version before a --to-time)

Without --local the plugin talks to the API server of the kube context (pods by the chart's labels, /status through
the pod proxy, commands with exec); with --local to components running as processes on this machine.
See docs/operations.md."""


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, as `streamtrain` does."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    """The same options before and after the command, as kubectl takes its flags; after the command they win
    (SUPPRESS: a subcommand's unset option leaves the top-level value alone)."""
    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    kube = parser.add_argument_group("cluster")
    kube.add_argument("--context", default=default(None), help="kube context (default: the current one)")
    kube.add_argument("-n", "--namespace", default=default(None),
                      help="namespace of the release (default: the context's, else default)")
    kube.add_argument("--kubeconfig", default=default(None), help="kube config file (default: $KUBECONFIG or "
                      "~/.kube/config)")
    kube.add_argument("--release", default=default("streamtrain"), help="Helm release name (default: streamtrain)")
    local = parser.add_argument_group("local components")
    local.add_argument("--local", action="store_true", default=default(False),
                       help="talk to components running as processes on this machine instead of a cluster")
    local.add_argument("--local-config", type=Path, default=default(None), metavar="FILE",
                       help="YAML/JSON with `urls: {component: URL}` and `env: {STREAMTRAIN_*: value}` for --local")
    for component in COMPONENTS:
        local.add_argument(f"--{component}-url", default=default(None), metavar="URL",
                           help=f"{component}'s HTTP endpoint for --local (default: {default_urls()[component]})")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", choices=FORMATS, default=default("table"),
                     help="table (rich on a terminal, plain text otherwise), json or yaml")
    out.add_argument("--timeout", type=float, default=default(commands.COMMAND_TIMEOUT), metavar="SECONDS",
                     help=f"longest a command in a pod may take (default: {commands.COMMAND_TIMEOUT:g})")


def _version(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a version is a whole number, not {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"versions start at 1, not {number}")
    return number


def _time(text: str) -> str:
    """The text itself (the pod's command reads it), once it is a time `streamtrain control` takes."""
    from streamtrain.service.config import time_ms  # pydantic loads only when a time is given

    try:
        time_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _offsets(text: str) -> str:
    from streamtrain.service.config import partition_offsets

    try:
        partition_offsets(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def parser() -> argparse.ArgumentParser:
    top = _OneLineParser(prog=PROG, description="Operate a streamtrain release: status, versions, serving "
                         "decisions, pausing the trainer.", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(top, top=True)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser)

    def add(name: str, summary: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=summary, description=summary, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(command, top=False)
        return command

    status = add("status", "every component's pods, readiness, throughput, lag, accuracy, versions, drift, pause")
    status.add_argument("--sample-seconds", type=float, default=1.0, metavar="SECONDS",
                        help="read /status twice this far apart for records/s (0: once, no rates; default 1)")
    serve_help = "the predictors' --serve policy (default: what a predictor's /status says, else promoted)"
    versions = add("versions", "the model versions: records trained, evaluation, the gate's verdicts, serving")
    versions.add_argument("--serve", choices=("promoted", "newest"), default=None, help=serve_help)
    pin = add("pin", "serve VERSION on every predictor until unpin (streamtrain serving pin in an evaluator pod)")
    pin.add_argument("version", type=_version, metavar="VERSION")
    pin.add_argument("--serve", choices=("promoted", "newest"), default=None, help=serve_help)
    unpin = add("unpin", "release the pin: predictors follow their --serve policy again")
    unpin.add_argument("--serve", choices=("promoted", "newest"), default=None, help=serve_help)
    rollback = add("rollback", "pin the promoted version before the one served now")
    rollback.add_argument("--serve", choices=("promoted", "newest"), default=None, help=serve_help)
    for name, summary in (("pause", "pause the trainer: it consumes nothing until resumed, across restarts"),
                          ("resume", "resume the trainer exactly where it stopped"),
                          ("rewind", "send the trainer back to a version's checkpoint: it trains again from there"),
                          ("skip", "make the trainer leave out the records before a point of the train topic")):
        command = add(name, summary + " (streamtrain control in an evaluator pod)")
        command.add_argument("--reason", default="", help="why (kept with the event)")
        if name in ("rewind", "skip"):
            to = command.add_mutually_exclusive_group(required=True)
            if name == "rewind":
                to.add_argument("--to-version", type=_version, metavar="N", help="the version to go back to")
            else:
                to.add_argument("--to-offsets", type=_offsets, metavar="P:O[,...]",
                                help="the first offset to train, per partition")
            to.add_argument("--to-time", type=_time, metavar="T", help="ISO 8601 or epoch milliseconds (streamtrain "
                            "control --help says what it means for each)")
    return top


def transport(args: argparse.Namespace) -> Transport:
    if args.local or args.local_config is not None:
        urls, env = default_urls(), dict[str, str]()
        if args.local_config is not None:
            configured, env = load_config(args.local_config)
            urls.update(configured)
        urls.update({c: u.rstrip("/") for c in COMPONENTS if (u := getattr(args, f"{c}_url"))})
        return LocalTransport(urls, env)
    from streamtrain.kubectl.kube import connect  # the kubernetes client loads only when a cluster is asked for

    return connect(args.kubeconfig, args.context, args.namespace, args.release)


def execute(args: argparse.Namespace) -> View:
    where = transport(args)
    if args.command == "status":
        return commands.status(where, args.sample_seconds)
    if args.command == "versions":
        return commands.versions(where, args.serve, args.timeout)
    if args.command in ("pin", "unpin", "rollback"):
        return commands.serving(where, args.command, getattr(args, "version", None), args.serve, args.timeout)
    target = [f"--{name.replace('_', '-')}={value}" for name in ("to_version", "to_offsets", "to_time")
              if (value := getattr(args, name, None)) is not None]
    return commands.control(where, args.command, args.reason, args.timeout, target)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        render(execute(args), args.output)
    except PluginError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
