"""Update the extraEnv name lists in values.schema.json from the components' settings classes.

Run it when tests/chart/test_chart_policy.py::test_extra_env_names_in_the_schema_follow_the_code fails
after a setting was added to (or removed from) components/streamtrain/service/config.py:

    .venv/bin/python tests/chart/sync_extra_env.py
"""

from __future__ import annotations

import json

from chartkit import CHART, COMPONENTS, RUNTIME_ENV, SETTINGS, component_workload, effective_env, render, st_config

# Connection settings the chart owns in every listener mode (credentials never go through extraEnv).
CONNECTION = {
    "STREAMTRAIN_SASL_PASSWORD",
    "STREAMTRAIN_SASL_USERNAME",
    "STREAMTRAIN_SASL_MECHANISM",
    "STREAMTRAIN_SASL_PASSWORD_FILE",
    "STREAMTRAIN_SSL_CA_LOCATION",
    "STREAMTRAIN_SSL_CERTIFICATE_LOCATION",
    "STREAMTRAIN_SSL_KEY_LOCATION",
}

# Settings a component reads that extraEnv may not carry either. The predictor's transactional.id must differ
# between replicas (a shared one fences them), so each keeps its default, streamtrain-predictor-<pod name>, which
# the KafkaUser's prefix ACL admits; its ingest has one value only (its transactions need confluent's consumer).
NOT_EXTRA = {"predictor": {"STREAMTRAIN_TRANSACTIONAL_ID", "STREAMTRAIN_INGEST"}}


def allowed_extra_env() -> dict[str, list[str]]:
    """{component: sorted env names extraEnv may set}: what the code reads minus what the chart sets."""
    docs = render({})
    out = {}
    for component in COMPONENTS:
        managed = set(effective_env(docs, component_workload(docs, component))[component]) - RUNTIME_ENV
        excluded = managed | CONNECTION | NOT_EXTRA.get(component, set())
        out[component] = sorted(st_config.env_names(SETTINGS[component]) - excluded)
    return out


def main() -> None:
    path = CHART / "values.schema.json"
    schema = json.loads(path.read_text())
    for component, names in allowed_extra_env().items():
        schema["properties"][component]["properties"]["extraEnv"]["propertyNames"]["enum"] = names
    path.write_text(json.dumps(schema, indent=2) + "\n")
    print(f"updated {path}")


if __name__ == "__main__":
    main()
