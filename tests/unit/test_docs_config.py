"""docs/configuration.md is generated from the settings classes and must stay in step with them."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from streamtrain import cli, docs_config

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_page_is_up_to_date() -> None:
    expected = docs_config.render()
    committed = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
    if committed != expected:
        diff = "".join(difflib.unified_diff(committed.splitlines(keepends=True), expected.splitlines(keepends=True),
                                            "docs/configuration.md", "render()", n=1))
        pytest.fail(f"docs/configuration.md is out of date with the settings classes: run `make docs`\n{diff[:4000]}")


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_setting_of_every_command_is_documented(command: str) -> None:
    settings_cls: type[BaseSettings] = cli.COMMANDS[command][0]
    page = PAGE.read_text(encoding="utf-8")
    section = page.split(f"\n## `streamtrain {command}`\n", 1)
    assert len(section) == 2, f"no section for streamtrain {command}"
    own = section[1].split("\n## ", 1)[0]
    common = page.split("\n## Options every Kafka client shares\n", 1)[1].split("\n## ", 1)[0]
    for field in settings_cls.model_fields:
        flag, env = docs_config.option_names(settings_cls, field)
        row = f"| `{flag}`"
        where = own if field in docs_config.own_fields(settings_cls) else common
        assert row in where, f"{flag} of streamtrain {command} is not in its section"
        assert f"`{env}`" in where, f"{env} of streamtrain {command} is not in its section"
        if field not in docs_config.own_fields(settings_cls):
            assert "Takes the [options every Kafka client shares]" in own


def test_flags_and_env_names_match_the_cli() -> None:
    """The page names exactly what `streamtrain COMMAND --help` accepts."""
    parser = cli.parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for command, (settings_cls, _run, _summary) in cli.COMMANDS.items():
        actions = subparsers.choices[command]._actions
        accepted = {option for action in actions for option in action.option_strings}
        accepted |= {action.dest.upper() for action in actions if not action.option_strings}  # positionals
        for field in settings_cls.model_fields:
            flag, _env = docs_config.option_names(settings_cls, field)
            assert flag in accepted, f"streamtrain {command} has no {flag}"
