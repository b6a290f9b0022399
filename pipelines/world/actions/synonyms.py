"""Operations on the hand-maintained search synonyms."""

from __future__ import annotations

from typing import Any

from pipelines.world import catalog
from pipelines.world.actions.base import DELETE, INSERT, UPDATE, ActionBase, Assignment
from pipelines.world.state import WORKLOAD_SYNONYMS
from pipelines.world.stats import ChangeKind


class SynonymActions(ActionBase):
    """The content team adds, corrects and removes synonyms: only its own rows (``EXTRA_SYNONYMS``).

    The seeded rows are left alone: the searches the README shows ("danish", "child's doctor")
    depend on them, and a workload that rewrote them would break search after any demo.
    """

    def synonyms(self, cur: Any, kind: ChangeKind) -> None:
        """Add a synonym row; correct or remove one the workload added earlier."""
        state, rng = self.state, self.rng
        if kind is DELETE and state.synonyms:
            syn_id = state.synonyms.choice(rng)
            self._delete(cur, "SynonymsTable", syn_id)
            state.remove_synonym(syn_id)
        elif kind is UPDATE and state.synonyms:
            syn_id = state.synonyms.choice(rng)
            base, s1, s2 = WORKLOAD_SYNONYMS[state.synonym_base[syn_id].casefold()]
            if rng.random() < 0.5:
                sets: list[Assignment] = [
                    ("Synonym_2", "CASE WHEN `Synonym_2` IS NULL THEN %s ELSE NULL END", (s2 or s1 or base,))
                ]
            else:
                sets = [("Synonym_1", "CASE WHEN `Synonym_1` <=> %s THEN NULL ELSE %s END", (s1, s1))]
            self._update(cur, "SynonymsTable", sets, syn_id)
        else:
            base, s1, s2 = rng.choice(catalog.EXTRA_SYNONYMS)
            syn_id = self._insert(cur, "SynonymsTable", {"Base_Term": base, "Synonym_1": s1, "Synonym_2": s2})
            self._record("SynonymsTable", INSERT, syn_id)
            state.add_synonym(syn_id, base)
