"""Queries: follow every finding from the report to the site and back, across submissions.

* :mod:`cartreg.queries.fingerprint`: the stable identity of a finding (rule, site, local patient
  id, table, event, column), independent of row positions.
* :mod:`cartreg.queries.lifecycle`: query states in the registry (open → answered → closed as
  resolved / waived / unobtainable; reopened when the finding returns), updated by each submit.
* :mod:`cartreg.queries.waivers`: waived queries as waivers of a validation report.
* :mod:`cartreg.queries.workbook`: the site exchange (export / import of an XLSX workbook).
* :mod:`cartreg.queries.scorecard`: per-site metrics, as JSON and a self-contained HTML page.

Nothing is imported here: :mod:`cartreg.registry.store` imports :mod:`cartreg.queries.schema`,
and the other modules import the registry.
"""
