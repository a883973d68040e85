"""One command-line layer: every tool takes underscore flags (hyphen spellings as aliases),
exits 2 with one line naming the input on bad input and writes nothing; every tool has a
console script; the challenge's script paths keep working; ruff passes."""
from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autopet_common import cli

REPO = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/autopet-input"

# module -> arguments with a bad input (a missing path, a file where a folder is needed, or a
# bad value); {out} is an empty output folder. {missing} is a path that does not exist.
TOOLS = {
    "inference": ["--input", "{missing}", "--output", "{out}"],
    "Task2.inference": ["--input", "{missing}", "--output", "{out}"],
    "local_challenge.__main__": ["--cohort", "{missing}", "--output", "{out}"],
    "local_challenge.task2": ["--cohort", "{missing}", "--output", "{out}"],
    "clicks.simulate_clicks": ["-i", "{missing}", "-d", "FDG-PETCT", "--json_output", "{out}"],
    "clicks.lesion_points": ["{missing}.nii.gz", "{out}/points.json"],
    "clicks.make_sample_clicks": ["--output", "{file}/clicks.json"],
    "evaluation_metrics.evaluation_metrics": ["-g", "{missing}", "-p", "{missing}", "-o", "{out}"],
    "evaluation_metrics.simulate_predictions": ["-g", "{missing}", "-o", "{out}"],
    "evaluation_metrics.gc_method": ["--input", "{missing}", "--output", "{out}", "--ground_truth", "{missing}"],
    "evaluation_metrics.ranking": ["{missing}/metrics.json", "--out", "{out}/leaderboard"],
    "evaluation_metrics.ground_truth": ["--labels", "{missing}", "--out", "{out}/gt"],
    "autopet_common.phantoms.cli": ["task1", "--out", "{file}/cohort", "--n_cases", "1"],
    "autopet_common.socket_values": ["{missing}"],
    "Task1.convert_dataset": ["{missing}", "--nnunet_raw", "{out}", "--dataset_id", "5"],
    "Task1.predict": ["--model", "{missing}", "--ct", "{missing}.mha", "--pet", "{missing}.mha", "--out",
                      "{out}/mask.nii.gz"],
    "Task1.batch_predict": ["-i", "{missing}", "-o", "{out}", "-m", "model-free"],
    "Task1.train_phantom_model": ["--cases", "0", "--work_dir", "{out}"],
    "Task1.check_model": ["{missing}", "--tar", "{out}/model.tar.gz"],
    "Task1.recipe": ["{missing}", "--pet", "{missing}.mha"],
    "Task1.tune_recipe": ["--model", "{missing}", "--cohort", "{missing}", "--work", "{out}"],
    "Task1.monai_backend.train": ["--family", "dynunet", "--out", "{out}/model", "--source", "{missing}"],
    "Task2.convert_dataset": ["--cohort", "{missing}", "--output", "{out}"],
    "Task2.train_patch_model": ["--pairs", "0", "--work_dir", "{out}"],
    "Task2.tune_patch_model": ["--model", "{missing}", "--pairs", "1", "--real", "0"],
    "publication_template.fill_paper": ["--task1", "{missing}", "-o", "{out}"],
    "viewer.__main__": ["--cohort", "{missing}", "--model", "model-free"],
}


class _Captured(BaseException):
    """Raised from parse_args to hand the parser back (a BaseException: the entrypoint
    decorator does not turn it into an exit code)."""

    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def _parser_of(module_name: str, monkeypatch) -> cli.ArgumentParser:
    module = importlib.import_module(module_name)

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    monkeypatch.setattr(cli.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_Captured) as caught:
        module.main([])
    return caught.value.parser


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_tool_is_in_the_table_and_has_a_console_script():
    setup = (REPO / "setup.py").read_text()
    scripts = dict(re.findall(r'"([\w-]+)=([\w.]+):main"', setup))
    assert set(scripts.values()) == set(TOOLS)
    for name, module_name in scripts.items():
        main = importlib.import_module(module_name).main
        assert hasattr(main, "__wrapped__"), f"{name}: main is not wrapped by autopet_common.cli.entrypoint"
    # every argparse parser in the project is a toolkit parser (benchmarks and tests aside)
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if parts[0] in (".venv", "test", "benchmarks", "work_dirs", "build") or "site-packages" in parts:
            continue
        assert "argparse.ArgumentParser(" not in path.read_text(), f"{path}: use autopet_common.cli.ArgumentParser"


@pytest.mark.parametrize("module_name", sorted(TOOLS))
def test_flags_are_underscored_with_hyphen_aliases(module_name, monkeypatch):
    parser = _parser_of(module_name, monkeypatch)
    assert isinstance(parser, cli.ArgumentParser)
    for each in _all_parsers(parser):
        for action in each._actions:
            for option in action.option_strings:
                if not option.startswith("--"):
                    continue
                assert "-" not in option[2:], f"{module_name}: {option} should be spelled with underscores"
                if "_" in option:
                    alias = option.replace("_", "-")
                    assert each._option_string_actions.get(alias) is action, f"{module_name}: no alias {alias}"


@pytest.mark.parametrize("module_name", sorted(TOOLS))
def test_bad_input_exits_2_naming_it_and_writes_nothing(module_name, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    argv = [a.format(missing=MISSING, out=out, file=a_file) for a in TOOLS[module_name]]
    module = importlib.import_module(module_name)
    try:
        code = module.main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == cli.EXIT_INPUT_ERROR, (module_name, err)
    assert "Traceback" not in err, err
    assert "error:" in err and (MISSING in err or str(a_file) in err or "--cases" in err
                            or "--pairs" in err), err
    assert not [p for p in out.rglob("*") if p.is_file()], f"{module_name} wrote {list(out.rglob('*'))}"


def test_value_checks_reject_nan_zero_and_negative():
    for parse, bad in ((cli.positive_int, ["0", "-1", "a", "1.5"]), (cli.non_negative_int, ["-1", "x"]),
                       (cli.positive_float, ["0", "nan", "-2", "inf"]), (cli.finite_float, ["nan", "-inf"]),
                       (cli.non_negative_float, ["-0.1", "nan"]), (cli.int_list, ["a,b", "", "1,-2"]),
                       (cli.nnunet_dataset_id, ["0", "1000"]), (cli.nnunet_fold, ["5", "-1", "01", "All"])):
        for text in bad:
            with pytest.raises(Exception) as caught:
                parse(text)
            assert "expected" in str(caught.value), (parse.__name__, text)
    assert cli.int_list("0, 1,2") == [0, 1, 2] and cli.positive_float("2.5") == 2.5
    assert [cli.nnunet_fold(f) for f in ("0", "4", "all")] == ["0", "4", "all"]


def test_hyphen_alias_and_abbreviation_parse(monkeypatch):
    parser = cli.ArgumentParser(prog="x")
    parser.add_argument("--time_budget", type=cli.positive_float)
    parser.add_argument("--timeout", type=cli.positive_float)
    group = parser.add_argument_group("g")
    group.add_argument("--dataset_name")
    args = parser.parse_args(["--time-budget", "3", "--dataset-name", "a"])
    assert args.time_budget == 3.0 and args.dataset_name == "a"
    assert parser.parse_args(["--time_b", "4"]).time_budget == 4.0  # one action behind both spellings
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--time", "4"])  # --time_budget or --timeout: ambiguous
    assert caught.value.code == 2


def test_internal_errors_exit_1_with_a_traceback(capsys):
    @cli.entrypoint("tool")
    def main(argv=None):
        raise ZeroDivisionError("a bug")

    assert main([]) == cli.EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err


def test_os_errors_on_paths_are_input_errors(tmp_path, capsys):
    @cli.entrypoint("tool")
    def main(argv=None):
        (tmp_path / "file").write_text("x")
        (tmp_path / "file" / "sub").mkdir()

    assert main([]) == cli.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path / "file" / "sub") in err


@pytest.mark.parametrize("script", ["clicks/simulate_clicks.py", "evaluation_metrics/evaluation_metrics.py",
                                    "inference.py", "Task2/inference.py"])
def test_the_challenges_script_paths_still_work(script, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    assert "hyphens" in done.stdout  # the alias note of the toolkit's parser


def test_ruff_passes():
    assert (REPO / "ruff.toml").is_file()
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_debug_adds_the_traceback_and_keeps_the_exit_code(tmp_path, capsys):
    from clicks.lesion_points import main

    argv = [str(tmp_path / "absent.nii.gz"), str(tmp_path / "points.json")]
    assert main(argv) == cli.EXIT_INPUT_ERROR
    assert "Traceback" not in capsys.readouterr().err
    assert main([*argv, "--debug"]) == cli.EXIT_INPUT_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and "absent.nii.gz" in err.splitlines()[-1]
