"""Search over documents: BM25 ranking of passages, for the agent's `search_docs` tool.

Documents are split into passages (paragraphs, merged up to ~600 characters); words are
lower-cased ASCII words and single CJK characters, so Chinese text is searchable without a
segmenter. `DocumentIndex.from_folder` reads .md/.txt files; the bundled set is in
assets/agent/docs/.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import InvalidInput

DOCS_DIR = Path(__file__).resolve().parents[2] / "assets" / "agent" / "docs"
PASSAGE_CHARS = 600
WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|[\u4e00-\u9fff]")
K1, B = 1.5, 0.75


def words(text: str) -> list[str]:
    """Lower-case ASCII words and numbers, and each CJK character on its own."""
    return WORD.findall(text.lower())


@dataclass
class Passage:
    source: str
    text: str


def split_passages(source: str, text: str) -> list[Passage]:
    """Paragraphs of `text`, neighbours merged while they stay under PASSAGE_CHARS."""
    passages, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) > PASSAGE_CHARS:
            passages.append(Passage(source, current))
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        passages.append(Passage(source, current))
    return passages


class DocumentIndex:
    """BM25 over passages (Robertson's k1=1.5, b=0.75)."""

    def __init__(self, documents: dict[str, str]) -> None:
        self.passages = [p for name, text in documents.items() for p in split_passages(name, text)]
        self.terms = [Counter(words(p.text)) for p in self.passages]
        self.lengths = [sum(t.values()) for t in self.terms]
        self.average = sum(self.lengths) / len(self.lengths) if self.lengths else 0.0
        frequency: Counter[str] = Counter()
        for terms in self.terms:
            frequency.update(terms.keys())
        n = len(self.passages)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}

    @classmethod
    def from_folder(cls, folder: Path | str = DOCS_DIR) -> DocumentIndex:
        folder = Path(folder)
        files = sorted(p for p in folder.glob("**/*") if p.suffix in (".md", ".txt"))
        return cls({p.name: p.read_text("utf-8") for p in files})

    def search(self, query: str, k: int = 3) -> list[tuple[float, Passage]]:
        """The `k` best passages for `query`, best first (only those sharing a word with it)."""
        if not query.strip():
            raise InvalidInput("The search query is empty.", where="search_docs: query", fix="")
        asked = words(query)
        scored = []
        for passage, terms, length in zip(self.passages, self.terms, self.lengths, strict=True):
            score = 0.0
            for word in asked:
                tf = terms.get(word, 0)
                if tf:
                    norm = tf + K1 * (1 - B + B * length / (self.average or 1))
                    score += self.idf[word] * tf * (K1 + 1) / norm
            if score > 0:
                scored.append((score, passage))
        scored.sort(key=lambda pair: -pair[0])
        return scored[: max(1, k)]
