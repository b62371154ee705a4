"""Text a client may send: no control characters, and names that say something.

Every text field of a request uses one of these types, with its own length limits added
(``Annotated[Name, Field(max_length=120)]``). The rule is a `pattern`, so it is enforced
in the same pass as the lengths and shows in the contract, where a client can read it.
PostgreSQL cannot store NUL in text at all; the other C0 controls are refused with it
because no field of Dorsi means them, and they hide text from those who read it later.
"""

import re
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

# C0 controls (U+0000 to U+001F): none at all on a single line ...
LINE_PATTERN = r"^[^\x00-\x1f]*$"
# ... and in longer texts only tab, line feed and carriage return.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"
CONTROL_PATTERNS = frozenset({LINE_PATTERN, TEXT_PATTERN})

Line = Annotated[str, StringConstraints(pattern=LINE_PATTERN)]
"""One line of text, kept exactly as sent: a code, a token, a password, a search."""

_CONTROL = re.compile(r"[\x00-\x1f]")


def _no_control_on_the_line(value: Any) -> Any:
    # Before trimming: a tab or a carriage return at either end is as refused as one
    # inside, as the contract's pattern says (trimming would hide it otherwise).
    if isinstance(value, str) and _CONTROL.search(value):
        raise PydanticCustomError(
            "string_pattern_mismatch",
            "String should match pattern '{pattern}'",
            {"pattern": LINE_PATTERN},
        )
    return value


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=LINE_PATTERN),
    # After the constraints in this list, so it wraps them and runs first; the
    # constraints still show in the contract.
    BeforeValidator(_no_control_on_the_line),
]
"""A name or title: no control character anywhere, trimmed of surrounding spaces; give it
``min_length=1`` so that one made only of spaces is refused."""

Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
"""A longer text (notes, a description, a step): lines and tabs allowed."""


def email_address(value: str) -> str:
    """Dorsi's one email rule, for the API's schemas, the CLI and the demo alike: an
    address as email-validator reads it, without looking its domain up, and with the
    special-use `.test` domain allowed (the demo's, and a test clinic's); trimmed and
    lower-cased, as accounts are keyed. Raises ValueError naming what is wrong."""
    try:
        validate_email(value.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as error:
        raise ValueError(f"Not an email address: {error}") from None
    return value.strip().lower()


Email = Annotated[
    str,
    AfterValidator(email_address),
    Field(max_length=254, json_schema_extra={"format": "email"}),
]
"""An email address (see `email_address`)."""


def control_detail(pattern: str) -> str | None:
    """What to tell a client whose text failed one of these patterns (None: another one)."""
    if pattern == LINE_PATTERN:
        return "Control characters (U+0000 to U+001F) are not allowed."
    if pattern == TEXT_PATTERN:
        return "Control characters (U+0000 to U+001F) other than tab and new line are not allowed."
    return None


__all__ = [
    "LINE_PATTERN",
    "TEXT_PATTERN",
    "Email",
    "Line",
    "Name",
    "Text",
    "control_detail",
    "email_address",
]
