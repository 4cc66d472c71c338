"""Hypothesis strategies the property tests share."""

from hypothesis import strategies as st


def storable_text(max_size: int) -> st.SearchStrategy[str]:
    """Any text ingest accepts: no NUL (no store holds it) and no lone surrogate (not UTF-8)."""
    return st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=max_size)
