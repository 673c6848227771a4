"""What a failed command printed: progress lines, then one error line and nothing else."""

from __future__ import annotations


def the_error(output: str) -> str:
    """The one `Error: ...` line of a failed command's output, which must end it: progress lines
    (loading, reading, bars) may come before it, a traceback or a second error may not."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert "Traceback" not in output, output
    assert len(errors) == 1 and lines[-1] == errors[0], output
    return errors[0]
