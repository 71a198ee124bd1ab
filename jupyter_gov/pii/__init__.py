"""PII detection and replacement with presidio's building blocks (see docs/pii.md).

``recognizers`` defines the entities, ``detect`` finds them (presidio's NLP-free analyzer
per text; a vectorized Arrow fast path per column), ``operators`` replaces them
(replace, mask, keyed hash, reversible encrypt) and ``classify`` profiles columns nobody
classified, for ``unclassified: auto`` and ``jupyter-gov classify``.
"""
