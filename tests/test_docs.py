"""docs/workflow.md: the flag tables of train.py and evaluate.py match what the parsers generate
(docs/gen_flag_tables.py, run in-process in check mode), and the generator rewrites only the
text between its markers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_flag_tables", REPO / "docs" / "gen_flag_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_flag_tables_match_the_dataclasses(gen):
    assert gen.drifted() == [], "the flag tables drifted from the parsers: run python docs/gen_flag_tables.py"


def test_every_flag_of_both_scripts_is_in_its_table(gen):
    import utils

    for script, (build, _) in gen.SCRIPTS.items():
        block = gen.render_script(script)
        for _, flags, _, _ in utils.flag_rows(build()):
            for flag in flags.split(", "):
                assert f"`{flag}`" in block, (script, flag)
    train_block = gen.render_script("train.py")
    assert "### PPO (PPOConfig): net (NetworkConfig)" in train_block  # grouped by config class
    assert "| `--n_steps` | `128; PPOConfig default: 2048` |" in train_block  # TRAIN_PPO_DEFAULTS


def test_update_rewrites_only_between_the_markers(gen, tmp_path):
    doc = tmp_path / "w.md"
    text = ("intro\n<!-- BEGIN GENERATED: train.py flags -->\nold\n<!-- END GENERATED: train.py flags -->\n"
            "middle\n<!-- BEGIN GENERATED: evaluate.py flags -->\n<!-- END GENERATED: evaluate.py flags -->\nend\n")
    doc.write_text(text)
    new = gen.update(text, {"train.py": "T", "evaluate.py": "E"})
    assert new == ("intro\n<!-- BEGIN GENERATED: train.py flags -->\nT\n<!-- END GENERATED: train.py flags -->\n"
                   "middle\n<!-- BEGIN GENERATED: evaluate.py flags -->\nE\n"
                   "<!-- END GENERATED: evaluate.py flags -->\nend\n")
    assert gen.update(new, {"train.py": "T"}) == new  # idempotent
    with pytest.raises(ValueError, match="markers"):
        gen.update("no markers here", {"train.py": "T"})
