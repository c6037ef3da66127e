"""How a key combination written as one string splits into key names.

Models and scripts write combinations as ``"ctrl+c"``, ``"ctrl + shift + t"`` or, as UI-TARS is taught,
``"ctrl c"``. One rule reads them all, here, with no I/O and no key table: what each name means is the
environment's business (``envs.desktop.keys``, ``envs.android.keys``).

The rule: a ``+`` after a name separates keys, with any spaces around it; a ``+`` right after a separator (or
alone) is the plus key, so ``"ctrl++"`` is ctrl and plus and ``"+"`` is plus. A string that ends in a separator
with no key after it (``"ctrl+"``) is refused, never pressed as the modifiers alone. Spaces separate keys only
where the caller says so (``spaces=True``, what models mean by ``"ctrl c"``); a script's ``"Page Down"`` is one
key.
"""

from __future__ import annotations

import re

from screenpilot.errors import ScreenpilotError

# A "+" after a name (not after a separator) separates keys; a "+" right after a separator is the plus key.
_SEPARATOR = re.compile(r"(?<=[^+\s])\s*\+\s*")


class KeyComboError(ScreenpilotError, ValueError):
    """A key string ends in a ``+`` separator with no key after it. ``text`` is the string as written, ``head``
    what comes before the separator (``"ctrl"``) and ``plus_forms`` the two ways to write what it probably
    meant (``"ctrl++"``, ``"ctrl+plus"``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.head = head = text.strip()[:-1].rstrip()
        self.plus_forms = (head + "++", head + "+plus")
        super().__init__(
            f"The key combination {text!r} ends with '+' and no key after it; "
            f"write {self.plus_forms[0]!r} or {self.plus_forms[1]!r} for the plus key."
        )


def split_combo(text: str, *, spaces: bool = False) -> tuple[str, ...]:
    """The key names in ``text``: ``"ctrl+s"`` -> ``("ctrl", "s")``, ``"ctrl + shift + t"`` -> three names,
    ``"ctrl++"`` -> ``("ctrl", "+")``, ``"+"`` -> ``("+",)``; with ``spaces``, ``"ctrl c"`` -> ``("ctrl",
    "c")`` and ``"ctrl shift+t"`` -> three names. Names come back stripped; a blank string comes back as it
    is, for the caller to refuse in its own words. Raises :class:`KeyComboError` for ``"ctrl+"``."""
    stripped = text.strip()
    if len(stripped) <= 1:
        return (stripped or text,)
    parts = _SEPARATOR.split(stripped)
    if not parts[-1]:
        raise KeyComboError(text)
    if spaces:
        return tuple(word for part in parts for word in part.split())
    return tuple(parts)


def split_keys(keys: str | list[str] | tuple[str, ...], *, spaces: bool = False) -> tuple[str, ...]:
    """Every name of ``keys`` (one string or several) split by :func:`split_combo`, in order: ``["ctrl",
    "s"]``, ``["ctrl+s"]`` and ``"ctrl+s"`` give the same names."""
    items = [keys] if isinstance(keys, str) else keys
    return tuple(name for item in items for name in split_combo(item, spaces=spaces))
