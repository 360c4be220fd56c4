"""`user-sync emulator`'s numeric options: bad values are argparse errors, not tracebacks."""

from __future__ import annotations

import pytest

from service.emulator.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "-1"], "argument --port: must be from 0 to 65535, not -1"),
        (["--port", "99999"], "argument --port: must be from 0 to 65535, not 99999"),
        (["--port", "x"], "argument --port: must be a whole number, not 'x'"),
        (["--write-limit", "nan"], "argument --write-limit: must be a finite number"),
        (["--write-limit", "inf"], "argument --write-limit: must be a finite number"),
        (["--write-limit", "1e400"], "argument --write-limit: must be a finite number"),
        (["--write-limit", "-1"], "argument --write-limit: must be a finite number"),
        (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    ],
)
def test_bad_numbers_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert error.splitlines()[-1].startswith(f"user-sync emulator: error: {message}")
