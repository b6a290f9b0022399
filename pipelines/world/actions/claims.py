"""Operations on insurance claims: submission, adjudication, withdrawal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pipelines.world import catalog
from pipelines.world.actions.base import DELETE, INSERT, UPDATE, ActionBase, Assignment, assign
from pipelines.world.stats import ChangeKind


class ClaimActions(ActionBase):
    """Claims move submitted -> approved/denied -> paid; denied ones are appealed."""

    def insurance_claims(self, cur: Any, kind: ChangeKind) -> None:
        """Claims submitted, adjudicated (submitted→approved/denied→paid, appeals), withdrawn."""
        state, rng = self.state, self.rng
        if kind is DELETE and state.claims:
            claim_id = state.claims.choice(rng)
            self._delete(cur, "insurance_claims", claim_id)
            state.remove_claim(claim_id)
        elif kind is UPDATE and state.claims:
            self._adjudicate(cur, state.claims.choice(rng))
        elif state.patients and state.providers:
            patient_id, provider_id = self._pick_patient(), state.providers.choice(rng)
            claim_id = state.next_claim_id
            currency = state.patient_info[patient_id].locale.currency
            row = self.rows.claim(
                claim_id,
                patient_id,
                provider_id,
                currency,
                submitted_at=self.now,
                now=self.now,
                status="submitted",
            )
            self._insert(cur, "insurance_claims", row)
            self._record("insurance_claims", INSERT, claim_id)
            state.add_claim(claim_id, patient_id, provider_id, "submitted")
        elif state.claims:
            self._adjudicate(cur, state.claims.choice(rng))
        else:
            self._sign_up(cur)

    def _adjudicate(self, cur: Any, claim_id: int) -> None:
        rng, info = self.rng, self.state.claim_info[claim_id]
        sets: list[Assignment]
        if info.status == "submitted" and rng.random() < 0.8:
            factor = Decimal(rng.randrange(50, 101)) / 100
            status = "approved"
            sets = [("approved_amount", "ROUND(`amount` * %s, 2)", (factor,)), assign("denial_reason", None)]
        elif info.status == "submitted":
            status = "denied"
            sets = [
                assign("approved_amount", None),
                assign("denial_reason", rng.choice(catalog.DENIAL_REASONS)),
            ]
        elif info.status == "approved":
            status, sets = "paid", []
        elif info.status == "denied":  # appeal: back in the queue
            status, sets = "submitted", [assign("denial_reason", None)]
        else:  # paid: a late receipt arrives
            status, sets = "paid", [assign("attachment", self.rows.attachment())]
        self._update(
            cur,
            "insurance_claims",
            [assign("status", status), *sets, assign("updated_at", self._wall)],
            claim_id,
        )
        info.status = status
