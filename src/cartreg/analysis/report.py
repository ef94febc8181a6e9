"""A self-contained HTML analysis report (no external files, fonts, scripts or URLs).

Figures are inlined as base64 PNG data URIs; styles are inline; text is autoescaped.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cartreg outcome analysis - data cut {{ r.data_cut_date }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 60rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ccc; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.meta td:first-child { font-weight: 600; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.5rem 0.8rem; }
.r code { font-size: 0.8rem; }
figure { margin: 1rem 0; } figure img { max-width: min(100%, 40rem); }
figcaption { font-size: 0.85rem; color: #555; }
</style>
</head>
<body>
<h1>Outcomes after CD19 CAR T in adult B-ALL</h1>
<h2 id="population">Analysis population</h2>
{{ tables.flow }}
<p>Error findings: {{ r.population.policy.error_findings }} ({{ r.population.findings_source }});
unreviewed candidate duplicates: {{ r.population.policy.duplicates }}
({{ r.population.duplicates_source }}, {{ r.population.unreviewed_duplicate_pairs }} unreviewed
pair{{ "s" if r.population.unreviewed_duplicate_pairs != 1 }}).
{{ r.population.error_findings_on_unused_fields }} error finding(s) concern fields no analysis
uses and {{ r.population.error_findings_without_patient }} name no patient: they exclude no one.
Every exclusion is listed in <code>excluded_patients.csv</code>.</p>
{% set left = r.data_notes.records_left_out_by_derivation %}
{% if left.values() | sum %}
<p class="note">Records the derivations leave out because they contradict the timeline:
{% for k, n in left.items() if n -%}
{{ k | replace("_", " ") }} {{ n }}{{ "; " if not loop.last }}
{%- endfor %}.</p>
{% endif %}
<table class="meta">
<tr><td>Data cut</td><td>{{ r.data_cut_date }}</td></tr>
<tr><td>Patients analysed</td><td>{{ r.n_patients }}
 ({{ r.sites | length }} site{{ "s" if r.sites | length != 1 }}:
 {{ r.sites | join(", ") }})</td></tr>
<tr><td>Software</td><td>cartreg {{ r.cartreg_version }}, CDM {{ r.cdm_version }}</td></tr>
<tr><td>Time unit</td><td>{{ r.time_unit }}</td></tr>
<tr><td>Data notes</td><td>
{{ r.data_notes.censored_at_data_cut }} patients followed beyond the data cut (OS censored there);
{{ r.data_notes.patients_without_calendar_index }} patients from de-identified sites (day offsets
only; their submission's own cut applies); imputed partial end dates:
{% for code, n in r.data_notes.imputed_end_dates.items() -%}
{{ code }} {{ n }}{{ ", " if not loop.last }}
{%- else %}none{% endfor %}.</td></tr>
</table>

<h2>Follow-up</h2>
{% for w in r.follow_up.warnings %}<p class="note">{{ w }}</p>{% endfor %}
{{ tables.follow_up }}
<p>Median follow-up by the reverse Kaplan-Meier method: vital status from overall survival,
progression from event-free survival (the last day known progression-free). A site is marked
short when its progression follow-up is below {{ "%.0f" | format(100 * r.follow_up.short_ratio) }}%
of its vital-status follow-up.</p>

<h2>Endpoints</h2>
{{ tables.endpoint_summary }}
<p>NR: not reached. Kaplan-Meier medians with 95% confidence intervals (log(-log) bands,
R's median rule); competing-risk endpoints (TTP, CIR) give the Aalen-Johansen cumulative
incidence (ties exact, cmprsk variance) and the time it reaches 50%; TTP_DESC is the median and
range of observed times among patients who progressed.</p>
{% for key in figures if key.startswith("km_") or key == "cif_TTP" %}
<figure><img alt="{{ key }}" src="data:image/png;base64,{{ images[key] }}">
<figcaption>{{ captions.get(key, key) }}</figcaption></figure>
{% endfor %}

<h2>Landmark estimates</h2>
<table><tr><th>Endpoint</th><th>Months</th><th>Estimate</th><th>95% CI</th></tr>
{% for code, block in r.endpoints.items() %}{% for m in block.get("landmarks", []) %}
<tr><td>{{ code }}
{%- if block.estimator == "aalen_johansen" %} (cumulative incidence)
{%- else %} (survival){% endif %}</td>
<td>{{ "%.0f" | format(m.months) }}</td><td>{{ pct(m.estimate) }}</td>
<td>{{ pct(m.ci_low) }} - {{ pct(m.ci_high) }}</td></tr>
{% endfor %}{% endfor %}
</table>

<h2>Response to CAR T and salvage after progression</h2>
{{ tables.response_rates }}
<h3>Complete remission rate to the first salvage line</h3>
{{ tables.salvage_response }}
<p>Exact (Clopper-Pearson) 95% confidence intervals. ITT counts every analysed patient (no
evaluable assessment counts as no CR); evaluable rates count patients with an evaluable
response.</p>

<h2>Relapse and non-relapse mortality (competing risks)</h2>
{% if "cif_CIR_NRM" in figures %}
<figure><img alt="cif_CIR_NRM" src="data:image/png;base64,{{ images["cif_CIR_NRM"] }}">
<figcaption>{{ captions["cif_CIR_NRM"] }}</figcaption></figure>
{% endif %}
<table><tr><th>Endpoint</th><th>Cause</th>
<th>Gray's test by burden: chi-square (df)</th><th>p</th></tr>
{% for key, comp in r.comparisons.items() if comp.gray is defined %}
{% for cause, t in comp.gray.causes.items() %}
<tr><td>{{ comp.endpoint }}</td><td>{{ "event" if cause == "1" else "competing" }}</td>
<td>{{ num(t.statistic, 2) }} ({{ t.df if t.df is not none else "-" }})</td>
<td>{{ pval(t.p_value) }}</td></tr>
{% endfor %}{% endfor %}
</table>

<h2>Comparisons by disease burden at infusion</h2>
<table><tr><th>Endpoint</th><th>Group</th><th>n</th><th>Events</th><th>Median (95% CI)</th>
<th>Log-rank p</th></tr>
{% for key, comp in r.comparisons.items() if comp.logrank is defined %}
{% for level, g in comp.groups.items() %}
<tr><td>{{ comp.endpoint }}</td><td>{{ level }}</td><td>{{ g.n }}</td><td>{{ g.events }}</td>
<td>{{ num(g.median_months) }} ({{ num(g.ci_low) }} - {{ num(g.ci_high) }})</td>
<td>{% if loop.first %}{{ pval(comp.logrank.p_value) }}{% endif %}</td></tr>
{% endfor %}{% endfor %}
</table>

<h2>Models</h2>
{% if "forest_burden_progression" in figures %}
<figure><img alt="forest_burden_progression"
 src="data:image/png;base64,{{ images["forest_burden_progression"] }}">
<figcaption>{{ captions["forest_burden_progression"] }}</figcaption></figure>
{% endif %}
{% for key, m in r.models.items() %}
<h3>{{ m.model }}</h3>
{% if m.status == "fitted" %}
<p>{{ m.n }} patients, {{ m.events }} events{% if m.competing_events is defined %},
{{ m.competing_events }} competing events{% endif %}{% if m.concordance is defined %};
concordance {{ num(m.concordance, 2) }}{% endif %}.
{% for d in m.dropped_covariates %}Not in the model: {{ d.term }} ({{ d.reason }}).
{% endfor %}{% for term, n in m.incomplete.items() if n %}{{ n }} patient(s) left out for
unknown {{ term }}. {% endfor %}</p>
{{ tables["model_" ~ key] }}
{% if m.get("ph_global") %}<p>Proportional hazards (cox.zph, Kaplan-Meier time transform): global
chi-square {{ num(m.ph_global.statistic, 2) }} on {{ m.ph_global.df }} df,
p {{ pval(m.ph_global.p_value) }}.</p>{% endif %}
<p class="r">R: <code>{{ m.r_call }}</code></p>
{% else %}
<p class="note">Model not fitted: {{ m.message }}.</p>
{% endif %}
{% endfor %}

<h2>Baseline characteristics (Table 1)</h2>
{{ tables.table1 }}

<h2>Endpoint definitions</h2>
<table><tr><th>Endpoint</th><th>Definition</th><th>Parameters</th></tr>
{% for code, d in r.endpoint_definitions.items() %}
<tr><td>{{ code }}<br>{{ d.name }}</td><td>{{ d.description }}</td>
<td>{% for k, v in d.parameters.items() %}{{ k }}={{ v }}<br>{% endfor %}</td></tr>
{% endfor %}
</table>
<p>Days are counted as end minus origin with no +1; months are days / 30.4375. Events after
the data cut are ignored and follow-up is censored at the data cut. Partial dates are imputed
(day to the 15th, month and day to 1 July) without crossing the infusion, death or the data
cut, and flagged in the ADTTE column <code>adtf</code>. Every model can be refitted from
<code>adsl</code> and <code>adtte</code> (CSV or Parquet) with the R call shown.</p>
</body>
</html>
"""

CAPTIONS = {
    "km_OS": "Overall survival from the index infusion (Kaplan-Meier, 95% CI, numbers at risk).",
    "km_EFS": "Event-free survival from the index infusion.",
    "km_PPS": "Survival after the first progression.",
    "km_REMDUR": "Remission duration from the first CR/CRi after CAR T.",
    "km_EFS_by_burden": "Event-free survival by disease burden at infusion.",
    "cif_TTP": "Cumulative incidence of progression, death without progression competing.",
    "cif_CIR_NRM": "Cumulative incidence of relapse (CIR) and non-relapse mortality (NRM) among"
    " patients who reached CR/CRi: from the infusion and from the first CR (Aalen-Johansen,"
    " 95% log(-log) bands, numbers at risk).",
    "forest_burden_progression": "Hazard ratio of progression for high vs low disease burden"
    " within each site (cause-specific Cox) and in the site-stratified model.",
}


def _html_table(frame: pl.DataFrame) -> str:
    from markupsafe import escape

    if frame.width == 0:
        return "<p>No data.</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if v is None else v)}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "NR" if value is None else f"{value:.{digits}f}"


def _pval(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def render_report(
    results: Mapping[str, Any],
    tables: Mapping[str, pl.DataFrame],
    figures: Mapping[str, Path],
) -> str:
    """The HTML report as one string."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    images = {k: base64.b64encode(p.read_bytes()).decode("ascii") for k, p in figures.items()}
    return template.render(
        r=results,
        tables={k: Markup(_html_table(v)) for k, v in tables.items()},
        figures=figures,
        images=images,
        captions=CAPTIONS,
        pct=_pct,
        num=_num,
        pval=_pval,
    )
