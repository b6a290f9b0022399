"""The workload's operations, one group per domain, combined into ``Actions``."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pipelines.world.actions.base import StaleStateError
from pipelines.world.actions.claims import ClaimActions
from pipelines.world.actions.patients import PatientActions
from pipelines.world.actions.plans import PlanActions
from pipelines.world.actions.synonyms import SynonymActions
from pipelines.world.actions.tenants import TenantActions
from pipelines.world.state import WorldState
from pipelines.world.stats import ChangeKind

__all__ = ["Actions", "StaleStateError"]


class Actions(PatientActions, PlanActions, ClaimActions, SynonymActions, TenantActions):
    """Carries out one operation on any world table; ``now`` is set by the workload before each one."""

    def __init__(self, state: WorldState, rng: random.Random) -> None:
        super().__init__(state, rng)
        self._dispatch: dict[str, Callable[[Any, ChangeKind], None]] = {
            "patients": self.patients,
            "assessments": self.assessments,
            "surveys": self.surveys,
            "plan_enrollments": self.plan_enrollments,
            "health_preferences": self.health_preferences,
            "insurance_claims": self.insurance_claims,
            "fitness_plans": self.fitness_plans,
            "SynonymsTable": self.synonyms,
            "tenant_metadata": self.tenant_metadata,
            "care_providers": self.care_providers,
        }

    def run(self, cur: Any, table: str, kind: ChangeKind) -> None:
        """Perform one ``kind`` operation on ``table`` (or its fallback) using ``cur``."""
        self._dispatch[table](cur, kind)
