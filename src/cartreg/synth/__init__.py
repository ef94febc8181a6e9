"""Synthetic multi-site cohorts: a calibrated truth simulator, site renderers and sample data."""

from cartreg.synth.cohort import Cohort, CohortParams, SiteInfo, simulate_cohort

__all__ = ["Cohort", "CohortParams", "SiteInfo", "simulate_cohort"]
