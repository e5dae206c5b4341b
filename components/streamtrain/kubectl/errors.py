"""The plugin's failures, each with the exit code scripts can test (documented in --help and docs/operations.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the action was tried and failed (the command in the pod said so, the API server refused)
EXIT_USAGE = 2  # bad arguments or configuration (kubeconfig, context, local config)
EXIT_NOT_FOUND = 3  # nothing to act on: no such release, no pods of a component, no such version


class PluginError(Exception):
    """A failure with a one-line message and the exit code it ends the plugin with."""

    exit_code = EXIT_FAILED


class ActionFailed(PluginError):
    exit_code = EXIT_FAILED


class UsageError(PluginError):
    exit_code = EXIT_USAGE


class NotFound(PluginError):
    exit_code = EXIT_NOT_FOUND
