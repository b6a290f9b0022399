"""Operations on the plan catalogue and on who follows which plan."""

from __future__ import annotations

from typing import Any

from pipelines.world.actions.base import DELETE, DELETE_TRIES, INSERT, ActionBase, Assignment, assign
from pipelines.world.rows import money
from pipelines.world.stats import ChangeKind


class PlanActions(ActionBase):
    """Plans launched, repriced and retired; enrollments started, paused and removed."""

    def plan_enrollments(self, cur: Any, kind: ChangeKind) -> None:
        """Patients join plans, pause or cancel them, and enrollments are removed."""
        state, rng = self.state, self.rng
        if kind is DELETE and state.enrollments:
            patient_id, plan_id = state.enrollments.choice(rng)
            self._delete(cur, "plan_enrollments", patient_id, plan_id)
            state.remove_enrollment(patient_id, plan_id)
            return
        if kind is INSERT and state.patients and state.plans:
            for _ in range(3):
                patient_id, plan_id = self._pick_patient(), state.plans.choice(rng)
                if (patient_id, plan_id) not in state.enrollments:
                    row = self.rows.enrollment(patient_id, plan_id, enrolled_at=self.now, now=self.now)
                    self._insert(cur, "plan_enrollments", row)
                    self._record("plan_enrollments", INSERT, patient_id, plan_id)
                    state.add_enrollment(patient_id, plan_id)
                    return
        if state.enrollments:
            patient_id, plan_id = state.enrollments.choice(rng)
            status = rng.choice(("active", "paused", "cancelled"))
            sets = [
                assign("status", status),
                assign("ended_on", self.now.date() if status == "cancelled" else None),
                assign("discount_pct", money(rng, 0, 5001) if rng.random() < 0.3 else None),
                assign("updated_at", self._wall),
            ]
            self._update(cur, "plan_enrollments", sets, patient_id, plan_id)
        else:
            self._sign_up(cur)

    def fitness_plans(self, cur: Any, kind: ChangeKind) -> None:
        """New plans, fee and target changes, and deletion of plans nobody follows."""
        state, rng = self.state, self.rng
        if kind is DELETE:
            for _ in range(DELETE_TRIES if state.plans else 0):
                plan_id = state.plans.choice(rng)
                if state.plan_refs[plan_id] == 0:
                    self._delete(cur, "fitness_plans", plan_id)
                    state.plans.remove(plan_id)
                    return
        if kind is not INSERT and state.plans:
            plan_id = state.plans.choice(rng)
            sets: list[Assignment] = [
                assign("monthly_fee", money(rng, 0, 30_000)),
                assign("target_daily_steps", rng.randrange(3_000, 25_000)),
            ]
            if rng.random() < 0.2:
                sets.append(("is_active", "1 - `is_active`", ()))
            if rng.random() < 0.2:
                sets.append(
                    assign("description", rng.choice((None, "Updated for 2025 — now with sleep coaching.")))
                )
            self._update(cur, "fitness_plans", [*sets, assign("updated_at", self._wall)], plan_id)
            return
        code = ""
        while not code or code.casefold() in state.plan_codes:  # UNIQUE; a rerun draws the same codes
            code = f"PLAN-{rng.getrandbits(48):012X}"
        plan_id = self._insert(cur, "fitness_plans", self.rows.new_plan(code, now=self.now))
        self._record("fitness_plans", INSERT, plan_id)
        state.plans.add(plan_id)
        state.plan_codes.add(code.casefold())
