"""Errors rayctl reports to users, each with the exit code the CLI returns.

Every error a user can cause (a bad recipe, flag, catalog file or cron string) is a
`RayctlError`: the CLI prints its message as one paragraph and exits with its code,
never with a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the workload ran and failed
EXIT_INPUT = 2  # invalid user input
EXIT_NO_PLAN = 3  # no feasible offer, or over budget
EXIT_INTERRUPTED = 130


class RayctlError(Exception):
    """An error with a user-facing message and an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class InputError(RayctlError):
    """Invalid user input: a recipe, a flag, a catalog file, a cron string."""

    exit_code = EXIT_INPUT


class RecipeError(InputError):
    """One or more problems in one recipe file, each with its line and field."""

    def __init__(self, path: str, problems: list["Problem"]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.render(path) for p in problems))


class Problem:
    """One problem at one place in a file."""

    __slots__ = ("line", "column", "field", "message")

    def __init__(self, message: str, field: str = "", line: int | None = None, column: int | None = None):
        self.message = message
        self.field = field
        self.line = line
        self.column = column

    def render(self, path: str) -> str:
        where = path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" field '{self.field}':" if self.field else ""
        return f"{where}:{field} {self.message}"

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "field": self.field, "message": self.message}


class NoPlanError(RayctlError):
    """No feasible offer, or none within budget."""

    exit_code = EXIT_NO_PLAN


class JobFailed(RayctlError):
    exit_code = EXIT_FAILED


class Interrupted(RayctlError):
    exit_code = EXIT_INTERRUPTED


class ManyErrors(RayctlError):
    """Independent failures of one command (one per recipe file), reported together.

    The CLI renders each as its own `rayctl: error:` paragraph, then `footer`; the exit
    code is 2 if any input was bad, else the highest of the others.
    """

    def __init__(self, errors: list[RayctlError], footer: str = ""):
        self.errors = list(errors)
        self.footer = footer
        codes = [e.exit_code for e in self.errors]
        super().__init__("\n".join(e.message for e in self.errors),
                         exit_code=EXIT_INPUT if EXIT_INPUT in codes else max(codes))
