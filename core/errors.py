"""The one family of exceptions a user can cause.

Every message names the bad value and says how to fix it. Pages and the CLI catch only ``SynthloopError``
(shown as ``st.error`` / one line on stderr with a non-zero exit); anything else is a bug and must surface.
"""

from __future__ import annotations


class SynthloopError(ValueError):
    """A problem with the user's input or request, with a message that says how to fix it."""


class NotFoundError(SynthloopError):
    """A named project, item, user, job or run does not exist."""


class ImportDataError(SynthloopError):
    """A file to import is malformed; nothing was written."""


class PermissionDenied(SynthloopError):
    """The current user's role may not do this."""


class BackendError(SynthloopError):
    """An LLM or model backend could not be reached or used (unreachable, bad key, unknown model)."""
