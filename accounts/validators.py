"""What a name and a password may be made of.

A buyer's name is shown to everyone, on the public leaderboard and in the live feed, so it may not
carry characters that change how the text around it is shown or that cannot be seen: bidirectional
controls (U+202E RIGHT-TO-LEFT OVERRIDE reverses what follows it, and an unclosed one runs on into
the next name), zero-width characters (U+200B, U+200D, U+2060, U+FEFF) that make two names look
alike, control characters and lone surrogates. They are refused rather than stripped: a stripped
name is not the name the person typed, and the refusal names the field so a client can say why.
"""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# Unicode categories refused in names: Cc controls (NUL, newlines, escapes), Cf format characters
# (every bidirectional control and zero-width character is one), Co private use, Cs surrogates
# (JSON can carry a lone one, which no database encoding stores), Cn unassigned, Zl/Zp line and
# paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
# Letters that render as blank space (Hangul fillers, the braille blank): assigned as letters or
# symbols, so no category catches them.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def unseen_characters(text: str) -> list[str]:
    """The characters of `text` a name may not hold, as U+XXXX, in order of first appearance."""
    found: dict[str, None] = {}
    for character in text:
        if unicodedata.category(character) in _REFUSED_CATEGORIES or character in _BLANK_LETTERS:
            found.setdefault(f"U+{ord(character):04X}", None)
    return list(found)


def validate_display_name(name: str) -> None:
    """Refuse a name holding bidirectional controls, invisible or control characters."""
    unseen = unseen_characters(name)
    if unseen:
        raise ValidationError(
            "Names may not contain invisible, control or text-direction characters (found %(characters)s).",
            code="invisible_characters",
            params={"characters": ", ".join(unseen)},
        )


@deconstructible
class NotOnlyWhitespacePasswordValidator:
    """A password of spaces (or other blanks) passes the length check and is guessed at once."""

    def validate(self, password: str, user=None) -> None:
        if all(character.isspace() or unicodedata.category(character) in {"Cc", "Cf"} for character in password):
            raise ValidationError(
                "This password is only spaces or other blank characters.", code="password_only_whitespace"
            )

    def get_help_text(self) -> str:
        return "Your password must contain characters other than spaces."
