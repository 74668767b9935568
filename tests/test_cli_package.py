"""The `goldloop` command as a package: every way of starting it runs every command; its
settings come from goldloop.toml's typed sections; and the pieces it used to hold itself
(record-id lookup, lineage, the training-time policy check) work as library calls."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import goldloop
from goldloop._config_fields import settings_of
from goldloop.cli import main
from goldloop.config import Config, TrlConfig
from goldloop.errors import GoldloopError
from goldloop.governance import PolicyError, check_training_policy
from goldloop.lineage import lineage, resolve_record
from goldloop.records import Provenance, Record, now
from goldloop.store import open_store

from .test_docs import command_paths

SRC = Path(goldloop.__file__).parent


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_python_dash_m_goldloop_cli_runs_the_governance_commands():
    done = _run("-m", "goldloop.cli", "trace", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage: goldloop trace [OPTIONS] RECORD_ID" in done.stdout


def test_every_command_path_answers_help_under_python_dash_m():
    """One interpreter runs `python -m goldloop PATH --help` and `python -m goldloop.cli PATH --help`
    for every command path, the way `-m` runs them (runpy, as __main__)."""
    script = (
        "import runpy, sys\n"
        "bad = []\n"
        "for line in sys.stdin.read().splitlines():\n"
        "    for module in ('goldloop', 'goldloop.cli'):\n"
        "        sys.argv = [module, *line.split(), '--help']\n"
        "        try:\n"
        "            runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
        "            code = 0\n"
        "        except SystemExit as exc:\n"
        "            code = exc.code\n"
        "        if code != 0:\n"
        "            bad.append(f'python -m {module} {line} --help: exit {code}')\n"
        "print('\\n'.join(bad), file=sys.stderr)\n"
        "sys.exit(1 if bad else 0)\n")
    paths = [" ".join(path) for path, _ in command_paths()]
    assert len(paths) > 25
    done = _run("-c", script, stdin="\n".join(paths))
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_console_script_is_the_whole_group():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "goldloop"]
    assert script.value == "goldloop.cli:main"
    assert script.load() is main and {"trace", "snapshot", "audit", "cite", "train"} <= set(main.commands)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of goldloop.cli that ``path`` imports; ``__init__`` stands for the package itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1 and node.module:
            found.add(node.module)
        elif node.level == 1:                           # from . import x
            found |= {a.name if a.name in modules else "__init__" for a in node.names}
        elif node.module and node.module.split(".")[:2] == ["goldloop", "cli"]:
            found.add(".".join(node.module.split(".")[2:]) or "__init__")
    return found & modules


def test_command_modules_import_only_shared_pieces_and_never_the_group():
    modules = {p.stem: p for p in (SRC / "cli").glob("*.py")}
    graph = {name: _imports(path, set(modules)) for name, path in modules.items()}
    for name, deps in graph.items():
        if name not in ("__init__", "__main__"):
            assert not deps - {"_shared", "_options"}, f"goldloop.cli.{name} imports {sorted(deps)}"
    assert not graph["_shared"] and not graph["_options"]
    assert graph["__main__"] == {"__init__"}


def test_no_module_of_the_command_or_its_config_passes_450_lines():
    for path in [*(SRC / "cli").glob("*.py"), SRC / "config.py", SRC / "_config_fields.py",
                 SRC / "config_reference.py", SRC / "lineage.py", SRC / "governance.py"]:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 450, f"{path.name} has {lines} lines"


# ---- [trl]: options derived from the config section -------------------------------------------

def test_every_trl_setting_is_an_option_of_train_with_its_help_and_bounds():
    options = {p.name: p for p in main.commands["train"].params if isinstance(p, click.Option)}
    for spec in settings_of(TrlConfig):
        option = options.get(spec.name)
        assert option is not None, f"[trl] {spec.name} has no option on `goldloop train`"
        assert option.opts == ["--" + spec.name.replace("_", "-")]
        assert option.help.startswith(spec.help) and option.default is None
        if spec.choices:
            assert tuple(option.type.choices) == spec.choices
        elif spec.minimum is not None:
            assert option.type.min == spec.minimum
    with pytest.raises(click.BadParameter):
        options["lora_r"].type.convert("0", None, None)


@pytest.fixture
def recorded_training(monkeypatch, tmp_path):
    """goldloop.train.train_generator replaced by a recorder of what the command asked for."""
    import goldloop.train as train_module
    from goldloop.train import GeneratorTraining

    calls: list[dict] = []

    def record(dataset_dir, method, **kwargs):
        calls.append({"method": method, **kwargs})
        return GeneratorTraining(method=method, base_model=kwargs["base_model"], dataset_dir=str(dataset_dir),
                                 out_dir=str(kwargs["out_dir"]), rows=4, steps=kwargs["max_steps"], losses=[1.0],
                                 train_loss=1.0, device="cpu", precision="fp32", seconds=0.1)

    monkeypatch.setattr(train_module, "train_generator", record)
    (tmp_path / "export").mkdir()
    return calls


def test_train_takes_the_command_line_then_goldloop_toml_then_the_default(recorded_training, tmp_path):
    cfg = Config.from_dict({"trl": {"method": "dpo", "base_model": "from-toml", "max_steps": 7, "lora_r": 4,
                                    "learning_rate": 1e-3}})
    cfg.save(tmp_path)
    args = ["-p", str(tmp_path), "train", str(tmp_path / "export"), "--out", str(tmp_path / "a"), "--unmanaged"]
    result = CliRunner().invoke(main, [*args, "--max-steps", "3", "--method", "kto"])
    assert result.exit_code == 0, result.output
    call = recorded_training[-1]
    assert call["max_steps"] == 3 and call["method"] == "kto"                 # command line
    assert call["base_model"] == "from-toml" and call["lora"].r == 4 and call["learning_rate"] == 1e-3  # toml
    assert call["batch_size"] == 4 and call["lora"].alpha == 32 and call["beta"] == 0.1    # defaults

    cfg.trl.learning_rate = 0.0
    cfg.save(tmp_path)
    assert CliRunner().invoke(main, args).exit_code == 0
    assert recorded_training[-1]["learning_rate"] is None and recorded_training[-1]["max_steps"] == 7


def test_train_needs_a_base_model_from_somewhere(recorded_training, tmp_path):
    result = CliRunner().invoke(main, ["-p", str(tmp_path / "nowhere"), "train", str(tmp_path / "export"),
                                       "--out", str(tmp_path / "a"), "--unmanaged"])
    assert result.exit_code == 1 and "--base-model MODEL" in result.output and "[trl] base_model" in result.output
    assert not recorded_training


def test_a_bad_trl_value_in_goldloop_toml_names_the_key():
    with pytest.raises(GoldloopError, match=r"\[trl\] lora_dropout must be at most 0.9"):
        Config.from_dict({"trl": {"lora_dropout": 1.0}})


# ---- resolve_record: one rule for every command that takes a record id -------------------------

def _record(rid: str) -> Record:
    return dataclasses.replace(Record.gold(f"text of {rid}", "billing", source="t.csv"), id=rid)


@pytest.fixture
def store(tmp_path):
    store = open_store(tmp_path)
    store.add_records([_record("ab12"), _record("ab12" + "0" * 28), _record("ab13" + "0" * 28),
                       _record("ab14" + "0" * 28), _record("ab15" + "0" * 28), _record("cd" * 16)])
    yield store
    store.close()


def test_an_exact_id_wins_over_longer_ids_it_starts(store):
    assert resolve_record(store, "ab12").id == "ab12"


def test_a_unique_prefix_finds_its_record_whatever_the_case(store):
    assert resolve_record(store, " CDCD ").id == "cd" * 16
    assert resolve_record(store, "ab120").id == "ab12" + "0" * 28


def test_an_ambiguous_prefix_lists_a_few_matches_and_asks_for_more(store):
    with pytest.raises(GoldloopError) as caught:
        resolve_record(store, "ab1")
    message = str(caught.value)
    assert "give more characters" in message and "ab12, ab12000" in message and message.count(", ") == 3
    assert message.endswith("...); give more characters")


@pytest.mark.parametrize("ref", ["", "   ", "round-1", "3f0c-9a1e"])
def test_an_empty_or_non_hex_ref_says_what_an_id_looks_like(store, ref):
    with pytest.raises(GoldloopError, match="an id is 32 hexadecimal characters"):
        resolve_record(store, ref)


def test_an_unknown_prefix_says_so(store):
    with pytest.raises(GoldloopError, match="no record id starts with 'ef'"):
        resolve_record(store, "ef")


def test_filter_explain_and_trace_resolve_ids_alike(project):
    path, _, store = project
    records = store.records(origin="gold")
    first = records[0].id
    sharing = [r.id for r in records if r.id[0] == first[0]]
    assert len(sharing) > 1
    outputs = []
    for command in (["filter", "--explain"], ["trace"]):
        ambiguous = CliRunner().invoke(main, ["-p", str(path), *command, first[0]])
        assert ambiguous.exit_code == 1 and "give more characters" in ambiguous.output, ambiguous.output
        found = CliRunner().invoke(main, ["-p", str(path), *command, first[:12].upper()])
        assert found.exit_code == 0 and first in found.output, found.output
        outputs.append(ambiguous.output)
    assert outputs[0] == outputs[1]


def test_lineage_walks_from_a_draft_to_its_gold_seeds(project):
    _, _, store = project
    seeds = store.records(origin="gold", split="train")[:2]
    prov = Provenance(parents=(seeds[0].id, "f" * 32), strategy="paraphrase.v1", backend="fake", model="m",
                      params={"temperature": 0.9}, template_hash="h", request_key="k", round=1, created_at=now())
    draft = Record.synthetic("a draft about my invoice", seeds[0].label, prov)
    store.add_records([draft])
    tree = lineage(store, resolve_record(store, draft.id[:8]))
    assert tree["origin"] == "synthetic" and tree["provenance"]["model"] == "m"
    assert tree["parents"][0]["id"] == seeds[0].id and tree["parents"][0]["origin"] == "gold"
    assert tree["parents"][1] == {"id": "f" * 32, "missing": True}
    json.dumps(tree)


# ---- check_training_policy: [policy] at training time, as a library call ------------------------

@pytest.fixture
def exported(project, tmp_path):
    from goldloop.export import export_snapshot
    from goldloop.snapshot import build_snapshot

    path, cfg, store = project
    snap = build_snapshot(store, cfg, store.open_round())
    export_snapshot(store, snap, "sft", tmp_path / "export")
    return snap, tmp_path / "export"


def test_an_export_of_the_project_is_checked_against_its_policy_now(project, exported):
    _, cfg, store = project
    snap, folder = exported
    assert check_training_policy(folder, store, cfg).snapshot_id == snap.id
    cfg.policy.signoff_required = True
    with pytest.raises(PolicyError, match="at the train stage"):
        check_training_policy(folder, store, cfg)


def test_an_export_from_elsewhere_relies_on_its_recorded_results(exported):
    snap, folder = exported
    found = check_training_policy(folder)
    assert found.snapshot_id is None and "relying on the policy results recorded at export time" in found.note
    manifest = json.loads((folder / "goldloop-export.json").read_text())
    manifest["policy_results"] = [{"rule": "human_review", "passed": False, "overridden_by": ""}]
    (folder / "goldloop-export.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldloopError, match="failed policy rule\\(s\\) human_review when it was written"):
        check_training_policy(folder)


def test_a_folder_goldloop_did_not_export_is_refused(tmp_path):
    with pytest.raises(GoldloopError, match="has no goldloop-export.json.*--unmanaged"):
        check_training_policy(tmp_path)
    (tmp_path / "goldloop-export.json").write_text("{not json")
    with pytest.raises(GoldloopError, match="is not valid JSON"):
        check_training_policy(tmp_path)
    (tmp_path / "goldloop-export.json").write_text("[]")
    with pytest.raises(GoldloopError, match="holds no export manifest"):
        check_training_policy(tmp_path)
