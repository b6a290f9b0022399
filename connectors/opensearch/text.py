"""The one Unicode form of every text that reaches the indices: documents, queries and synonyms.

"é" can be written as one code point (U+00E9, composed: NFC) or as "e" plus a combining acute
(U+0065 U+0301, decomposed: NFD, what macOS file names and some keyboards and APIs produce).
Lucene compares tokens code point by code point, so the two never match; the `asciifolding`
filter of our analyzers folds U+00E9 to "e" but leaves "e" + U+0301 as it is. OpenSearch's own
Unicode normaliser (`icu_normalizer`) comes from the analysis-icu plugin, which a plain node does
not have (the stack's node has only analysis-common), so text is normalised here, in Python,
wherever documents, queries and synonym lines are built.

NFC rather than NFKC: NFC only composes canonically equivalent sequences, so the stored
`_source` and the highlights look exactly as written; the compatibility folding NFKC would add
(ligatures, full-width letters, superscripts) is already done at both index and search time by
`asciifolding`.
"""

from __future__ import annotations

import unicodedata
from typing import Final, Literal

NORMAL_FORM: Final[Literal["NFC"]] = "NFC"


def normalize_text(text: str) -> str:
    """`text` in the indices' Unicode form (NFC); cheap for text that already is (ASCII, say)."""
    if unicodedata.is_normalized(NORMAL_FORM, text):
        return text
    return unicodedata.normalize(NORMAL_FORM, text)
