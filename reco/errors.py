"""Errors the pipeline raises for bad input; stage scripts turn them into a clean non-zero exit.

See docs/bad-input.md and docs/design/core.md.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for errors caused by input data, params or the environment (not by a bug)."""


class InputDataError(PipelineError):
    """A data file is missing, unreadable or violates the expected schema or value ranges.

    Parameters
    ----------
    path
        The offending file (or folder).
    message
        What was wrong and what was expected; name the column and show example rows.
    """

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class ParamsError(PipelineError):
    """A value in ``params.yaml`` is unknown, of the wrong type or out of range."""


class DownloadError(PipelineError):
    """The KuaiRec archive could not be downloaded, verified or extracted."""


class UsageError(PipelineError):
    """A stage script was called with the wrong command-line arguments."""
