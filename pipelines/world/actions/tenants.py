"""Operations on the PostgreSQL tenants database: tenant directory and care providers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from pipelines.world import catalog
from pipelines.world.actions.base import DELETE, DELETE_TRIES, INSERT, ActionBase, Assignment, assign
from pipelines.world.rows import json_text, money
from pipelines.world.stats import ChangeKind


class TenantActions(ActionBase):
    """Trial sign-ups, tenant and provider changes, removal of unreferenced rows."""

    def tenant_metadata(self, cur: Any, kind: ChangeKind) -> None:
        """Trial sign-ups, status/tier/settings changes, and deletion of empty tenants."""
        state, rng = self.state, self.rng
        if kind is DELETE:
            for _ in range(DELETE_TRIES if state.tenants else 0):
                tenant_id = state.tenants.choice(rng)
                if state.tenant_refs[tenant_id] == 0:
                    self._delete(cur, "tenant_metadata", tenant_id)
                    state.tenants.remove(tenant_id)
                    return
        if kind is not INSERT and state.tenants:
            tenant_id = state.tenants.choice(rng)
            edit = rng.randrange(4)
            sets: list[Assignment]
            if edit == 0:
                sets = [assign("status", rng.choice(catalog.TENANT_STATUSES))]
            elif edit == 1:
                sets = [
                    assign("tier", rng.choice(catalog.TENANT_TIERS)),
                    assign("seats", rng.randrange(0, 5000)),
                ]
            elif edit == 2:
                beta = rng.choice(
                    ("true", "false", "null", json_text({"since": self.now.date().isoformat()}))
                )
                sets = [("settings", "jsonb_set(settings, '{features,beta}', %s::jsonb)", (beta,))]
            else:
                sets = [
                    (
                        "credit_balance",
                        "credit_balance + %s",
                        (Decimal(rng.randrange(-(10**6), 10**8)).scaleb(-4),),
                    )
                ]
            self._update(cur, "tenant_metadata", [*sets, assign("updated_at", self.now)], tenant_id)
            return
        tenant_id = ""
        while not tenant_id or tenant_id in state.tenants:
            tenant_id = f"{rng.choice(catalog.TENANT_WORDS)}-{rng.getrandbits(32):08x}"
        self._insert(
            cur,
            "tenant_metadata",
            self.rows.tenant(tenant_id, status="trial", created_at=self.now, now=self.now),
        )
        self._record("tenant_metadata", INSERT, tenant_id)
        state.tenants.add(tenant_id)

    def care_providers(self, cur: Any, kind: ChangeKind) -> None:
        """Providers join the directory, change availability, and leave (if no claim points at them)."""
        state, rng = self.state, self.rng
        if kind is DELETE:
            for _ in range(DELETE_TRIES if state.providers else 0):
                provider_id = state.providers.choice(rng)
                if state.provider_refs[provider_id] == 0:
                    self._delete(cur, "care_providers", provider_id)
                    state.remove_provider(provider_id)
                    return
        if kind is not INSERT and state.providers:
            provider_id = state.providers.choice(rng)
            sets: list[Assignment] = [("accepting_patients", "NOT accepting_patients", ())]
            if rng.random() < 0.5:
                sets.append(assign("rating", money(rng, 100, 501) if rng.random() < 0.9 else None))
            if rng.random() < 0.3:
                sets.append(
                    ("languages", "array_append(languages, %s)", (rng.choice(catalog.PROVIDER_LANGUAGES),))
                )
            elif rng.random() < 0.2:
                sets.append(assign("languages", []))
            if rng.random() < 0.3:
                sets.append(
                    assign(
                        "next_available", dt.timedelta(days=rng.randrange(0, 30), minutes=rng.randrange(60))
                    )
                )
            self._update(cur, "care_providers", [*sets, assign("updated_at", self.now)], provider_id)
            return
        if not state.tenants:
            self.tenant_metadata(cur, INSERT)
            return
        tenant_id = state.tenants.choice(rng)
        npi = f"1{rng.randrange(10**9):09d}"
        while npi in state.npis:
            npi = f"1{rng.randrange(10**9):09d}"
        row = self.rows.provider(None, tenant_id, npi=npi, now=self.now)
        provider_id = self._insert(cur, "care_providers", row, returning="provider_id")
        self._record("care_providers", INSERT, provider_id)
        state.add_provider(provider_id, tenant_id, row["npi"])
