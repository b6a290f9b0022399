"""Who a patient is on their wearable: typical steps, sleep and resting pulse, and whether it is rising.

A profile is fixed by the patient id (like ``devices.patient_devices``), so the MySQL seeder, the
device seeder and the device workload agree about a patient without sharing state: the patients
whose resting pulse rises in the last week of device data also have a recent insurance claim, the
combination the care team's use case looks for. Levels are spread so that some patients meet
their plan's daily targets and others do not.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

__all__ = ["RISE_DAYS", "PatientProfile", "patient_profile"]

# Share of patients whose resting pulse has been rising lately.
_RISING_SHARE = 0.1
# The rise shows in this many most recent days of device data.
RISE_DAYS = 7


@dataclass(frozen=True, slots=True)
class PatientProfile:
    """A patient's usual day, as their wearable sees it."""

    daily_steps: int
    sleep_minutes: int
    resting_pulse: int
    # Resting pulse up by ``pulse_rise`` bpm over the last RISE_DAYS days, with a recent claim.
    pulse_rise: int

    @property
    def pulse_rising(self) -> bool:
        """True for the patients a care team should call."""
        return self.pulse_rise > 0

    def day(self, rng: random.Random, *, recent: bool) -> tuple[int, int, int]:
        """(steps, sleep minutes, resting pulse) of one day; ``recent``: within the last RISE_DAYS days."""
        steps = max(0, round(rng.gauss(self.daily_steps, self.daily_steps * 0.2)))
        sleep = max(0, round(rng.gauss(self.sleep_minutes, 30)))
        pulse = self.resting_pulse + rng.randint(-2, 2) + (self.pulse_rise if recent else 0)
        return steps, sleep, pulse


@functools.lru_cache(maxsize=4096)
def patient_profile(patient_id: int) -> PatientProfile:
    """The profile of ``patient_id`` (the same in every world and run)."""
    rng = random.Random(f"profile/{patient_id}")
    resting = rng.randrange(52, 80)
    rising = rng.random() < _RISING_SHARE
    return PatientProfile(
        daily_steps=rng.randrange(2_500, 16_000),
        sleep_minutes=rng.randrange(330, 540),
        resting_pulse=resting,
        pulse_rise=round(resting * rng.uniform(0.2, 0.35)) if rising else 0,
    )
