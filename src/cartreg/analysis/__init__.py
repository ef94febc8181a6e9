"""Outcome analyses: endpoint declarations, ADTTE derivation, lifelines statistics, reports.

Public API::

    from cartreg.analysis import analyze, derive_tte, load_endpoints
    result = analyze("registry/", datetime.date(2025, 6, 30), "analysis/")

lifelines, matplotlib and scipy are imported only inside the functions that use them.
"""

from cartreg.analysis.derive import derive_baseline, derive_salvage_response, derive_tte
from cartreg.analysis.endpoints import Endpoint, load_endpoint, load_endpoints
from cartreg.analysis.run import AnalysisResult, analyze, analyze_tables

__all__ = [
    "AnalysisResult",
    "Endpoint",
    "analyze",
    "analyze_tables",
    "derive_baseline",
    "derive_salvage_response",
    "derive_tte",
    "load_endpoint",
    "load_endpoints",
]
