"""SQL as the rules read it: statements split and tokenized by :mod:`k2_migrations.sqltext`.

A keyword counts only as an unquoted word token: comments are no tokens at all, and a string literal,
a backquoted name or a heredoc never reads as a keyword. Where a word could also be a name (a column
``populate``, a table ``k2.sync``), the rules look at its position in the statement too.
"""

from __future__ import annotations

from dataclasses import dataclass

from k2_migrations.errors import UsageError
from k2_migrations.sqltext import split_statements
from k2_migrations.sqltext.tokens import Kind, Token, tokenize


@dataclass(frozen=True)
class Statement:
    """One statement: its text, its tokens and each token's depth in parentheses."""

    text: str
    tokens: tuple[Token, ...]
    depths: tuple[int, ...]

    @classmethod
    def of(cls, text: str) -> Statement:
        tokens = tuple(tokenize(text))
        depths: list[int] = []
        level = 0
        for token in tokens:
            if token.kind is Kind.PUNCT and token.value == ")":
                level = max(level - 1, 0)
            depths.append(level)
            if token.kind is Kind.PUNCT and token.value == "(":
                level += 1
        return cls(text, tokens, tuple(depths))

    @property
    def first(self) -> str:
        return self.word(0)

    def word(self, index: int) -> str:
        """The keyword at ``index`` (upper-cased), "" for anything else or past the end."""
        return self.tokens[index].upper() if 0 <= index < len(self.tokens) else ""

    def punct(self, index: int, value: str) -> bool:
        if not 0 <= index < len(self.tokens):
            return False
        token = self.tokens[index]
        return token.kind is Kind.PUNCT and token.value == value

    def words_at(self, index: int, *words: str) -> bool:
        """True when the keywords ``words`` come in this order from ``index``."""
        return all(self.word(index + offset) == word for offset, word in enumerate(words))

    def after_words(self, index: int, words: frozenset[str]) -> int:
        """The index of the first token from ``index`` that is not one of ``words``."""
        while self.word(index) in words:
            index += 1
        return index

    def name(self, index: int) -> tuple[str | None, str, int] | None:
        """(database, name, index after it) for a one- or two-part name starting at ``index``."""
        parts: list[str] = []
        while index < len(self.tokens) and self.tokens[index].is_name:
            parts.append(self.tokens[index].value)
            if not self.punct(index + 1, "."):
                index += 1
                break
            index += 2
        if not parts or len(parts) > 2:
            return None
        return (parts[0] if len(parts) == 2 else None), parts[-1], index

    def dropped_table(self) -> tuple[str | None, str, int] | None:
        """The name a ``DROP [TEMPORARY] TABLE [IF EXISTS] name`` drops, as :meth:`name` gives it, else None."""
        index = self.after_words(1, frozenset({"TEMPORARY"}))
        if self.first != "DROP" or self.word(index) != "TABLE":
            return None
        return self.name(index + 3 if self.words_at(index + 1, "IF", "EXISTS") else index + 1)

    def has_if_exists(self, *, not_exists: bool) -> bool:
        """True when ``IF [NOT] EXISTS`` follows the statement's leading keywords (``DROP TABLE IF EXISTS``)."""
        clause = ("IF", "NOT", "EXISTS") if not_exists else ("IF", "EXISTS")
        for index in range(1, min(len(self.tokens), 8)):
            if self.words_at(index, *clause):
                return True
            if self.tokens[index].kind is not Kind.WORD or self.punct(index + 1, "."):
                return False
        return False

    def is_name_position(self, index: int) -> bool:
        """True when the word at ``index`` is (part of) a name rather than a keyword: ``k2.sync``,
        ``TABLE sync``, ``TO populate``, ``a, sync``."""
        if self.punct(index - 1, ".") or self.punct(index + 1, ".") or self.punct(index - 1, ","):
            return True
        return self.word(index - 1) in _BEFORE_NAME or self.punct(index - 1, "=")


#: Keywords a name follows (so the word after them is a name even when it reads as a keyword).
_BEFORE_NAME = frozenset(
    {"TABLE", "VIEW", "DICTIONARY", "DATABASE", "EXISTS", "TO", "CLUSTER", "BY", "FROM", "JOIN"}
)


def read_sql(text: str) -> list[Statement] | None:
    """The statements of ``text``; None when it does not tokenize (prose with an apostrophe, say)."""
    try:
        return [Statement.of(part) for part in split_statements(text)]
    except UsageError:
        return None
