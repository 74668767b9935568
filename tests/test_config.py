from pathlib import Path

import pytest

from goldloop.config import Config
from goldloop.config_reference import reference_markdown
from goldloop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_round_trip(tmp_path):
    cfg = Config()
    cfg.project.labels = ["a", "b"]
    cfg.save(tmp_path)
    again = Config.load(tmp_path)
    assert again == cfg


@pytest.mark.parametrize("data, message", [
    ({"generat": {}}, "unknown section [generat]; did you mean 'generate'?"),
    ({"generate": {"per_lable": 3}}, "unknown key [generate] per_lable; did you mean 'per_label'?"),
    ({"generate": {"per_label": "12"}}, "[generate] per_label must be a whole number, got '12'"),
    ({"generate": {"per_label": 0}}, "[generate] per_label must be at least 1, got 0"),
    ({"generate": {"temperature": 3}}, "[generate] temperature must be at most 2.0"),
    ({"llm": {"backend": "gpt"}}, "[llm] backend must be one of embedded, openai, fake; got 'gpt'"),
    ({"review": {"unreviewed_may_train": "yes"}}, "[review] unreviewed_may_train must be true or false"),
    ({"project": {"labels": "a,b"}}, "[project] labels must be a list of strs"),
    ({"project": 3}, "[project] must be a table of settings"),
    ({"filter": {"forbidden_patterns": ["(unclosed"]}},
     "[filter] forbidden_patterns holds an invalid regular expression '(unclosed'"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    assert message in str(info.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="run `goldloop init`"):
        Config.load(tmp_path)


def test_malformed_toml_names_the_file(tmp_path):
    (tmp_path / "goldloop.toml").write_text("[project\nname = 1\n")
    with pytest.raises(ConfigError, match="goldloop.toml: not valid TOML"):
        Config.load(tmp_path)


def test_reference_doc_is_generated_from_the_typed_config():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference_markdown() + "\n", (
        "docs/configuration.md is stale: run `goldloop config-reference > docs/configuration.md`")


def test_every_setting_has_help():
    import dataclasses

    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):
            assert f.metadata.get("help"), f"[{section.name}] {f.name} has no help text"
