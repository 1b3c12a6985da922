"""The `vtune` command."""

import vtune.cli


def test_cli_runs_a_small_search_and_prints_the_best(capsys):
    assert vtune.cli.main(["--population", "4", "--generations", "2", "--steps", "5",
                           "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best trial" in out and "learning_rate=" in out
    assert "validation accuracy of the best trial" in out


def test_cli_reports_bad_arguments_in_one_line(capsys):
    assert vtune.cli.main(["--population", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vtune: error: population_size must be a positive int, got 0")
