"""What counts as PII: one table of entity definitions, read by every detector.

Each :class:`EntityDef` holds the pattern the Arrow fast path (RE2, through pyarrow) and
presidio's :class:`~presidio_analyzer.PatternRecognizer` both run, the checksum or score
that a match must pass (Luhn for cards, ISO 7064 mod 97 for IBANs, Shannon entropy for
secrets found next to a keyword), and - when the entity's *shape* can be matched in SQL
without a checksum - the SQL-safe pattern that the ``scrub`` mask pushes into the database.

Pushed-down patterns are broader than the fast-path ones (no ``\\b``, no checksum: engines
disagree on word boundaries and cannot run a checksum inside ``REGEXP_REPLACE``); a
broader pattern can only mask more, never less. Patterns that keep context around the
value (``DOB: <DATE_OF_BIRTH>``) mark it with the named groups ``pre``, ``val`` and
``post``; only ``val`` is replaced.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

#: Policy tag each entity is classified as by ``unclassified: auto`` and ``classify``.
ENTITY_TAGS: dict[str, str] = {
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "US_SSN": "ssn",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip_address",
    "URL_CREDENTIALS": "secret",
    "SECRET": "secret",
    "DATE_OF_BIRTH": "birth_date",
}

_TAG_ENTITIES = {tag: entity for entity, tag in ENTITY_TAGS.items()}  # secret: SECRET


def entity_label(tag: str) -> str:
    """The ``replace`` label of a policy tag: presidio's entity name (``<EMAIL_ADDRESS>``)."""
    return f"<{_TAG_ENTITIES.get(tag, tag.upper())}>"


#: IBAN length per country (ISO 13616 registry, SWIFT release 2024): a checksum-valid
#: string of the wrong length for its country is not an IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

#: Minimum Shannon entropy (bits per character) of a value next to a secret keyword.
SECRET_MIN_ENTROPY = 3.0


@dataclass(frozen=True)
class EntityDef:
    """One way of finding one entity."""

    entity: str  # presidio's entity name
    name: str  # unique name of this definition
    pattern: str  # RE2 and ``regex`` compatible; may use named groups pre/val/post
    validator: str | None = None  # luhn | iban | ssn | entropy | phone | None
    sql_pattern: str | None = None  # SQL-safe shape pushed into the database, if any
    score: float = 0.9
    #: Literals every match contains one of (case-sensitive): a cheap ``memchr``-speed
    #: pass that keeps the regex off rows that cannot match. Empty: no such literal.
    hints: tuple[str, ...] = ()
    #: Or one simple regex every match contains (for case-insensitive keywords).
    hint_regex: str | None = None

    @property
    def grouped(self) -> bool:
        return "(?P<val>" in self.pattern


_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_DATE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4}"
    r"|[A-Z][a-z]+ [0-9]{1,2},? [0-9]{4}|[0-9]{1,2}\.? [A-Za-zé]+ [0-9]{4}"
)
_DOB_WORDS = (
    r"(?i:date of birth|birth ?date|d\.?o\.?b\.?|born(?: on)?|birthday|geburtsdatum"
    r"|geboren(?: am)?|n[ée]e? le|date de naissance|fecha de nacimiento|nacido el)"
)
_SECRET_WORDS = (
    r"(?i:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|auth[_-]?token|token"
    r"|passw(?:or)?d|pwd|client[_-]?secret)"
)

#: Every definition, in the order they are applied: a later pattern never sees what an
#: earlier one replaced (credentials in URLs before e-mail addresses, IBANs and cards
#: before phone numbers, IP addresses before phone numbers).
DEFINITIONS: tuple[EntityDef, ...] = (
    EntityDef(
        "URL_CREDENTIALS",
        "url_credentials",
        r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://)(?P<val>[^\s:/@]+:[^\s/@]+)(?P<post>@)",
        sql_pattern="//[^ :/@]+:[^ /@]+@",
        hints=("://",),
        score=0.95,
    ),
    EntityDef(
        "SECRET",
        "secret_prefixed",
        r"\b(?:(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36}"
        r"|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}"
        r"|glpat-[A-Za-z0-9_-]{20}|AIza[0-9A-Za-z_-]{35})",
        sql_pattern=(
            "(sk|pk|rk)_(live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36}"
            "|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}"
            "|glpat-[A-Za-z0-9_-]{20}|AIza[0-9A-Za-z_-]{35}"
        ),
        score=0.95,
        hints=("sk_", "pk_", "rk_", "gh", "AKIA", "xox", "glpat-", "AIza"),
    ),
    EntityDef(
        "SECRET",
        "secret_keyword",
        rf"(?P<pre>{_SECRET_WORDS}[\"']?\s*[:=]\s*[\"']?)(?P<val>[A-Za-z0-9+/_.=-]{{16,}})",
        validator="entropy",
        hints=("=", ":"),
        score=0.7,
    ),
    EntityDef(
        "EMAIL_ADDRESS",
        "email",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
        sql_pattern="[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+[.][A-Za-z]{2,}",
        hints=("@",),
        score=1.0,
    ),
    EntityDef(
        "IBAN_CODE",
        "iban",
        r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b",
        validator="iban",
        hint_regex="[A-Z][A-Z][0-9][0-9]",
        score=1.0,
    ),
    EntityDef(
        "CREDIT_CARD",
        "credit_card",
        r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
        validator="luhn",
        score=1.0,
    ),
    EntityDef(
        "US_SSN",
        "us_ssn",
        r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
        validator="ssn",
        sql_pattern="[0-9]{3}-[0-9]{2}-[0-9]{4}",
        hints=("-",),
        score=0.85,
    ),
    EntityDef(
        "DATE_OF_BIRTH",
        "date_of_birth",
        rf"(?P<pre>\b{_DOB_WORDS}\s*[:=,-]?\s*)(?P<val>{_DATE})",
        score=0.85,
        hint_regex=r"(?i)birth|dob|d\.o\.b|born|geb|n[ée]e? le|naissance|nac",
    ),
    EntityDef(
        "IP_ADDRESS",
        "ipv4",
        rf"\b{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}\b",
        sql_pattern="[0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}",
        hints=(".",),
        score=0.9,
    ),
    EntityDef(
        "IP_ADDRESS",
        "ipv6",
        r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
        sql_pattern="[0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){7}",
        hints=(":",),
        score=0.9,
    ),
    EntityDef(
        "PHONE_NUMBER",
        "phone",
        r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,5}\)[ .-]?)?[0-9]{2,10}(?:[ .-][0-9]{2,10}){0,4}"
        r"(?:[ ]?(?:x|ext\.?)[ ]?[0-9]{1,5})?\b",
        validator="phone",
        sql_pattern="[+]?[0-9][0-9() .-]{7,}[0-9]",
        score=0.7,
    ),
)

#: Every definition's match holds one of these: a digit, ``@``, ``:``, ``=`` or a secret
#: prefix. Text without any of them holds no entity and skips every other pass.
PREFILTER = r"[0-9@:=]|sk_|pk_|rk_|gh[pousr]_|github_pat_|AKIA|xox|glpat-|AIza"

ENTITIES: tuple[str, ...] = tuple(dict.fromkeys(d.entity for d in DEFINITIONS))
#: Entities whose matches must pass a checksum.
CHECKSUM_ENTITIES = ("CREDIT_CARD", "IBAN_CODE")


def definitions_for(entities: tuple[str, ...] | None = None) -> tuple[EntityDef, ...]:
    wanted = set(entities or ENTITIES)
    unknown = wanted - set(ENTITIES)
    if unknown:
        raise ValueError(f"Unknown PII entities: {', '.join(sorted(unknown))}.")
    return tuple(d for d in DEFINITIONS if d.entity in wanted)


# -- scalar validators (presidio's recognizers; the fast path has vectorized twins) ------


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_valid(text: str) -> bool:
    numbers = [int(c) for c in digits(text)]
    if not 13 <= len(numbers) <= 19:
        return False
    total = 0
    for i, n in enumerate(reversed(numbers)):
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    code = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(code[:2]) != len(code) or not code.isalnum():
        return False
    rearranged = code[4:] + code[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_valid(text: str) -> bool:
    d = digits(text)
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


def entropy(text: str) -> float:
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def secret_valid(text: str) -> bool:
    kinds = sum(any(test(c) for c in text) for test in (str.isdigit, str.islower, str.isupper))
    return entropy(text) >= SECRET_MIN_ENTROPY and kinds >= 2


#: Shapes that hold 7-15 digits with separators but are not phone numbers: dates, SSNs.
NOT_A_PHONE = (
    r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{2}[.-][0-9]{2}[.-][0-9]{4}|[0-9]{3}-[0-9]{2}-[0-9]{4})$"
)


def phone_valid(text: str) -> bool:
    """7 to 15 digits (E.164), written with a ``+``, parentheses or separators (a bare run
    of digits is an id, not a phone number), and not a date or an SSN."""
    import re

    number = re.sub("(x|ext).*$", "", text).strip()
    return (
        7 <= len(digits(number)) <= 15
        and re.search("[^0-9]", number) is not None
        and re.search(NOT_A_PHONE, text) is None
    )


SCALAR_VALIDATORS = {
    "luhn": luhn_valid,
    "iban": iban_valid,
    "ssn": ssn_valid,
    "entropy": secret_valid,
    "phone": phone_valid,
}


# -- presidio recognizers ------------------------------------------------------------------


def build_recognizers() -> list[Any]:
    """One presidio ``PatternRecognizer`` per definition, with the same pattern and check."""
    import regex
    from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult

    class GovRecognizer(PatternRecognizer):
        """A pattern recognizer whose span may be a named group of the match (``val``)."""

        def __init__(self, definition: EntityDef) -> None:
            self.definition = definition
            self.compiled = regex.compile(definition.pattern, regex.DOTALL | regex.MULTILINE)
            super().__init__(
                supported_entity=definition.entity,
                name=f"jupyter_gov_{definition.name}",
                patterns=[Pattern(definition.name, definition.pattern, definition.score)],
                global_regex_flags=regex.DOTALL | regex.MULTILINE,
            )

        def validate_result(self, pattern_text: str) -> bool | None:
            check = SCALAR_VALIDATORS.get(self.definition.validator or "")
            return None if check is None else check(pattern_text)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None,
                    regex_flags: int | None = None) -> list[Any]:  # fmt: skip
            results = []
            group = "val" if self.definition.grouped else 0
            for match in self.compiled.finditer(text):
                value = match.group(group)
                if self.validate_result(value) is False:
                    continue
                start, end = match.span(group)
                results.append(
                    RecognizerResult(
                        self.definition.entity,
                        start,
                        end,
                        self.definition.score,
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                )
            return results

    return [GovRecognizer(d) for d in DEFINITIONS]
