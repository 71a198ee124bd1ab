"""A labelled corpus of short texts for PII detection: Faker with a fixed seed.

Each snippet is filler text in one of a few locales with zero, one or two entities
inserted, and sometimes a *near miss* (a 16-digit number failing Luhn, an IBAN with a
broken checksum, an SSN with area 000, a low-entropy "token=", a date with no birth
keyword), whose gold label is "nothing". Gold counts are kept per entity, so precision
and recall are computed from count arrays, not by walking spans.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

import numpy as np

LOCALES = ("en_US", "de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES")
ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "URL_CREDENTIALS",
    "SECRET",
    "DATE_OF_BIRTH",
)


@dataclass
class Corpus:
    texts: list[str]
    gold: dict[str, np.ndarray]  # entity -> count per snippet
    values: dict[str, list[tuple[int, str]]]  # entity -> (snippet, inserted value)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        n = int(c)
        if i % 2 == 0:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return str((10 - total % 10) % 10)


def generate(n: int, seed: int = 1234) -> Corpus:
    from faker import Faker

    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, fake in enumerate(fakers.values()):
        fake.seed_instance(seed + i)
    us = fakers["en_US"]
    rnd = random.Random(seed)
    alnum = string.ascii_letters + string.digits

    def card() -> str:
        number = us.credit_card_number(
            card_type=rnd.choice(["visa16", "mastercard", "amex", "discover"])
        )
        if rnd.random() < 0.4 and len(number) == 16:
            number = " ".join(number[i : i + 4] for i in range(0, 16, 4))
        return number

    def bad_card() -> str:
        body = "".join(rnd.choice(string.digits) for _ in range(15))
        good = _luhn_digit(body)
        return body + str((int(good) + rnd.randint(1, 9)) % 10)

    def iban(fake) -> str:
        value = fake.iban()
        if rnd.random() < 0.3:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value

    def bad_iban(fake) -> str:
        value = fake.iban()
        position = rnd.randrange(4, len(value))
        wrong = rnd.choice([d for d in string.digits if d != value[position]])
        return value[:position] + wrong + value[position + 1 :]

    makers = {
        "EMAIL_ADDRESS": lambda f: f.email(),
        "PHONE_NUMBER": lambda f: f.phone_number(),
        "CREDIT_CARD": lambda f: card(),
        "IBAN_CODE": iban,
        "US_SSN": lambda f: us.ssn(),
        "IP_ADDRESS": lambda f: us.ipv4() if rnd.random() < 0.7 else us.ipv6(),
        "URL_CREDENTIALS": lambda f: (
            f"{rnd.choice(['postgres', 'https', 'mysql'])}://"
            f"{f.user_name()}:{us.password(length=12, special_chars=False)}"
        ),
        "SECRET": lambda f: rnd.choice(
            [
                "sk_live_" + "".join(rnd.choice(alnum) for _ in range(24)),
                "AKIA"
                + "".join(rnd.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
                "ghp_" + "".join(rnd.choice(alnum) for _ in range(36)),
                "api_key=" + "".join(rnd.choice(alnum) for _ in range(28)),
            ]
        ),
        "DATE_OF_BIRTH": lambda f: (
            rnd.choice(["DOB: ", "born on ", "date of birth "])
            + f.date_of_birth().strftime(rnd.choice(["%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y"]))
        ),
    }
    near_misses = [
        ("order number", lambda f: bad_card()),
        ("reference", bad_iban),
        ("case", lambda f: "000-" + us.numerify("##-####")),
        ("the", lambda f: "token=" + "ab" * 10),
        ("meeting on", lambda f: f.date_this_decade().isoformat()),
        ("version", lambda f: us.numerify("#.#.#")),
    ]
    texts: list[str] = []
    gold = {e: np.zeros(n, np.int64) for e in ENTITIES}
    values: dict[str, list[tuple[int, str]]] = {e: [] for e in ENTITIES}
    for i in range(n):
        locale = LOCALES[i % len(LOCALES)]
        fake = fakers[locale]
        parts = [fake.sentence(nb_words=rnd.randint(4, 10))]
        kind = rnd.random()
        if kind < 0.6:
            for _ in range(rnd.choice([1, 1, 2])):
                entity = rnd.choice(ENTITIES)
                value = makers[entity](fake)
                if entity == "URL_CREDENTIALS":
                    parts.append(f"connect with {value}@{us.domain_name()}/db")
                    value = value.split("://", 1)[1]
                elif entity in ("SECRET", "DATE_OF_BIRTH"):
                    parts.append(f"{value} noted")
                    value = value.split("=", 1)[-1].split(" ")[-1].split(": ")[-1]
                else:
                    parts.append(f"contact: {value} ok")
                gold[entity][i] += 1
                values[entity].append((i, value))
        elif kind < 0.85:
            word, maker = rnd.choice(near_misses)
            parts.append(f"{word} {maker(fake)} done")
        parts.append(fake.sentence(nb_words=rnd.randint(3, 8)))
        texts.append(" ".join(parts))
    return Corpus(texts, gold, values)
