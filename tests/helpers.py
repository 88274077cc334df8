"""Helpers shared by the test modules."""


def clipnerf_in_process(capsys, *args) -> tuple[int, str]:
    """Run `clipnerf ARGS` through its real entry point in this process (a subprocess spends
    seconds importing torch and nerfstudio); returns its exit code (0 when it returns) and stderr."""
    from clipnerf_ns.cli import entrypoint

    try:
        entrypoint([str(a) for a in args])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    """The only line of `err`; fails if there are more or a traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
