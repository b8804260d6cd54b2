"""The one family of exceptions a user can cause.

Every message names the bad value and says how to fix it. Pages and the CLI catch only ``SynthloopError``
(shown as ``st.error`` / one line on stderr with a non-zero exit); anything else is a bug and must surface.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class SynthloopError(ValueError):
    """A problem with the user's input or request, with a message that says how to fix it.

    Core messages speak of settings by their field name, never by a CLI flag or a page label: a message that
    names fields marks them as ``{field}`` placeholders and lists them in ``fields``. ``str()`` writes the field
    names in quotes; the CLI writes its flags (``--per-label``) and a page its field labels (``"Per label"``)
    through :meth:`render`.
    """

    def __init__(self, message: str, *, fields: Sequence[str] = ()) -> None:
        self.template = message
        self.fields = tuple(fields)
        super().__init__(self.render(lambda name: repr(name)))

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each field written as ``name_of(field)``."""
        text = self.template
        for name in self.fields:  # plain replacement: other braces in the message (user data) stay as they are
            text = text.replace("{" + name + "}", name_of(name))
        return text


class NotFoundError(SynthloopError):
    """A named project, item, user, job or run does not exist."""


class ImportDataError(SynthloopError):
    """A file to import is malformed; nothing was written."""


class PermissionDenied(SynthloopError):
    """The current user's role may not do this."""


class BackendError(SynthloopError):
    """An LLM or model backend could not be reached or used (unreachable, bad key, unknown model)."""
