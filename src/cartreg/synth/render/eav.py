"""EAV layout: a clinical data warehouse extract in entity-attribute-value form.

Files: ``observations.csv`` (``;``-separated, a title line with the date the data are complete
to, then one row per observation: ``PATIENT;DATE;CODE;VALUE;UNIT``, dates as ``YYYYMMDD``),
``demographics.csv`` (one row per patient: sex, year of birth, age at the index infusion) and
``codebook.csv`` (what each code means). Coded values are written as the CDM vocabulary's
labels, as a warehouse's display names would be.

What the extract carries (the truth columns a clean ingest with ``eav_mapping.yaml`` recovers):
sex, year of birth, age at infusion; diagnosis date and ICD-10 code, Ph status, prior therapy;
each CAR T infusion (date, product) with the pre-infusion marrow (blasts, MRD, EMD, a few days
before the index infusion) and the disease burden; every marrow after the infusion (blasts,
MRD with its method, response); each progression (date, type) with the CD19 phenotype on its
date; each salvage line (start, the agents in one cell joined by ``+``) and its best response;
each transplant (date, type, donor, intent); vital status at the last contact, death date and
cause.

Lineage: the CSV line a person sees (the title line is line 1, the header line 2). Each row's
``_ref`` is ``<truth id>:<CODE>``, so a defect can be placed on one observation.
"""

from __future__ import annotations

import polars as pl

from cartreg.cdm import load_cdm
from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render.common import REF, Export, Sheet, by_patient, num, render_template

OBSERVATIONS = "observations.csv"
DEMOGRAPHICS = "demographics.csv"
CODEBOOK = "codebook.csv"
MAPPING_TEMPLATE = "eav_mapping.yaml"

# code -> (description, value type, unit); also the order of codes on one date
CODES: dict[str, tuple[str, str, str]] = {
    "DX_ICD10": ("Diagnosis of B-ALL, ICD-10 code", "text", ""),
    "PH": ("Philadelphia chromosome / BCR::ABL1 status at diagnosis", "coded", ""),
    "HCT": ("Allogeneic stem cell transplant (value: type)", "coded", ""),
    "HCT_DONOR": ("Donor of the transplant on this date", "coded", ""),
    "HCT_INTENT": ("Intent of the transplant on this date", "coded", ""),
    "PRIOR_LINES": ("Number of therapy lines before CAR T", "number", ""),
    "PRIOR_BLINA": ("Blinatumomab before CAR T", "yes/no", ""),
    "PRIOR_INO": ("Inotuzumab ozogamicin before CAR T", "yes/no", ""),
    "BM_BLAST": ("Bone marrow blasts (morphology)", "number", "%"),
    "MRD_FLOW": (
        "Measurable residual disease in marrow, flow cytometry",
        "number or 'not detected'",
        "%",
    ),
    "MRD_NGS": (
        "Measurable residual disease in marrow, IG/TR sequencing",
        "number or 'not detected'",
        "%",
    ),
    "EMD": ("Extramedullary disease at the CAR T work-up", "yes/no", ""),
    "RESP": ("Response assessment of this marrow", "coded", ""),
    "BURDEN": ("Disease burden before CAR T (work-up)", "coded", ""),
    "CART": ("CAR T cell infusion (value: product)", "text", ""),
    "PROG": ("Progression after CAR T (value: relapse or refractory)", "coded", ""),
    "CD19": ("CD19 phenotype of the leukemia at progression", "coded", ""),
    "SALVAGE": ("Salvage treatment started (agents joined by +)", "text", ""),
    "SALV_RESP": ("Best response to the salvage treatment", "coded", ""),
    "DEATH": ("Death (value: cause)", "coded", ""),
    "VITAL": ("Vital status at the last contact", "coded", ""),
}
NEGATIVE = "not detected"
_ORDER = {code: i for i, code in enumerate(CODES)}
_PROG = {"RELAPSE_AFTER_CR": "relapse", "REFRACTORY_NONRESPONSE": "refractory"}


def labels(vocabulary: str) -> dict[str, str]:
    """CDM code -> the vocabulary's label (what an EHR display name would say)."""
    return {t.code: t.label for t in load_cdm().vocabularies[vocabulary].terms}


def local_id() -> pl.Expr:
    return pl.col("patient_key").str.split("-").list.last()


def _rows(frame: pl.DataFrame, code: str, date: str, value: pl.Expr, ref: str) -> pl.DataFrame:
    """One observation row per truth row with a value (and a date)."""
    unit = CODES[code][2]
    return frame.select(
        pl.col("patient_key"),
        pl.col(date).alias("_date"),
        pl.lit(_ORDER[code]).alias("_code"),
        local_id().alias("PATIENT"),
        pl.col(date).dt.to_string("%Y%m%d").alias("DATE"),
        pl.lit(code).alias("CODE"),
        value.cast(pl.String).alias("VALUE"),
        pl.lit(unit or None, dtype=pl.String).alias("UNIT"),
        pl.concat_str(pl.col(ref), pl.lit(f":{code}")).alias(REF),
    ).filter(pl.col("VALUE").is_not_null() & pl.col("_date").is_not_null())


def pre_infusion_date() -> pl.Expr:
    """The work-up marrow: 3 to 14 days before the index infusion (fixed per patient)."""
    days = pl.col("patient_key").hash(7) % 12 + 3
    return pl.col("infusion_date") - pl.duration(days=days)


def observations(t: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Every truth value the extract carries, one row per observation, in the site's order."""
    ph, resp = labels("ph_status"), labels("response")
    prog = t["progression_events"]
    pats, inf, asm = t["patients"], t["car_t_infusions"], t["disease_assessments"]
    index = inf.filter(pl.col("is_index_infusion")).with_columns(pre_infusion_date().alias("_pre"))
    # the work-up MRD is measured by the patient's lab method after infusion (flow if none)
    method = asm.group_by("patient_key").agg(
        pl.col("mrd_method").drop_nulls().first().alias("_method")
    )
    index = index.join(method, on="patient_key", how="left").with_columns(
        pl.col("_method").fill_null("FLOW").alias("mrd_method")
    )
    pats = pats.join(index.select("patient_key", "_pre"), on="patient_key", how="left")
    yes_no = {"Y": "yes", "N": "no", "UNKNOWN": "unknown"}
    sal = t["salvage_treatments"]
    lines = sal.group_by("patient_key", "start_date", "best_response", "best_response_date").agg(
        pl.col("agent").sort_by("salvage_id"), pl.col("salvage_id").min()
    )
    agent = labels("salvage_agents")
    hct, fu = t["transplants"], t["follow_up"]
    dead = fu.filter(pl.col("vital_status") == "DEAD")
    parts = [
        _rows(pats, "DX_ICD10", "diagnosis_date", pl.col("diagnosis_icd10"), "patient_key"),
        _rows(pats, "PH", "diagnosis_date", _coded("ph_status", ph), "patient_key"),
        _rows(
            inf, "CART", "infusion_date", _coded("product", labels("car_t_products")), "infusion_id"
        ),
        _rows(
            index,
            "BM_BLAST",
            "_pre",
            _blasts("pre_bm_blast_pct", "pre_bm_blast_qualifier"),
            "infusion_id",
        ),
        _rows(pats, "PRIOR_LINES", "_pre", pl.col("n_prior_lines"), "patient_key"),
        _rows(pats, "PRIOR_BLINA", "_pre", _coded("prior_blinatumomab", yes_no), "patient_key"),
        _rows(pats, "PRIOR_INO", "_pre", _coded("prior_inotuzumab", yes_no), "patient_key"),
        *_mrd(index.rename({"pre_mrd_value": "mrd_value"}), "_pre", "infusion_id"),
        _rows(index, "EMD", "_pre", _coded("pre_emd_present", yes_no), "infusion_id"),
        _rows(
            index,
            "BURDEN",
            "infusion_date",
            pl.col("disease_burden").str.to_lowercase(),
            "infusion_id",
        ),
        _rows(
            asm,
            "BM_BLAST",
            "assessment_date",
            _blasts("bm_blast_pct", "bm_blast_qualifier"),
            "assessment_id",
        ),
        *_mrd(asm, "assessment_date", "assessment_id"),
        _rows(asm, "RESP", "assessment_date", _coded("response", resp), "assessment_id"),
        _rows(prog, "PROG", "progression_date", _coded("event_type", _PROG), "progression_id"),
        _rows(
            prog,
            "CD19",
            "progression_date",
            _coded("antigen_phenotype", labels("antigen_phenotype")),
            "progression_id",
        ),
        _rows(
            lines,
            "SALVAGE",
            "start_date",
            pl.col("agent").list.eval(pl.element().replace_strict(agent)).list.join(" + "),
            "salvage_id",
        ),
        # a response not evaluated is written on the start date (a warehouse has no empty date)
        _rows(
            lines.with_columns(pl.coalesce("best_response_date", "start_date").alias("_resp")),
            "SALV_RESP",
            "_resp",
            _coded("best_response", resp),
            "salvage_id",
        ),
        _rows(hct, "HCT", "hct_date", pl.col("hct_type").str.to_lowercase(), "hct_id"),
        _rows(hct, "HCT_DONOR", "hct_date", _coded("donor_type", labels("donor_type")), "hct_id"),
        _rows(hct, "HCT_INTENT", "hct_date", _coded("intent", labels("hct_intent")), "hct_id"),
        _rows(
            dead,
            "DEATH",
            "death_date",
            _coded("cause_of_death", labels("cause_of_death")),
            "patient_key",
        ),
        _rows(
            fu,
            "VITAL",
            "last_contact_date",
            pl.col("vital_status").str.to_lowercase(),
            "patient_key",
        ),
    ]
    rows = pl.concat(parts, how="vertical_relaxed").sort(["_date", "_code"], maintain_order=True)
    return by_patient(rows, pats["patient_key"]).drop("patient_key", "_date", "_code")


def _coded(col: str, mapping: dict[str, str]) -> pl.Expr:
    return pl.col(col).replace_strict(mapping, default=None, return_dtype=pl.String)


def _blasts(value: str, qualifier: str) -> pl.Expr:
    text = num(value, 1)
    return pl.when(pl.col(qualifier) == "LT").then(pl.concat_str(pl.lit("<"), text)).otherwise(text)


def _mrd(frame: pl.DataFrame, date: str, ref: str) -> list[pl.DataFrame]:
    """MRD in percent, under the code of its method; "not detected" when negative."""
    value = num(pl.col("mrd_value") * 100, 4)
    if "mrd_status" in frame.columns:  # a negative marrow is reported without a number
        value = pl.coalesce(value, pl.when(pl.col("mrd_status") == "NEG").then(pl.lit(NEGATIVE)))
    return [
        _rows(frame.filter(pl.col("mrd_method") == method), code, date, value, ref)
        for method, code in (("FLOW", "MRD_FLOW"), ("NGS_IG_TR", "MRD_NGS"))
    ]


def build(site: SiteInfo, t: dict[str, pl.DataFrame]) -> Export:
    """Render a site's truth tables as an observation extract, demographics and a codebook."""
    pats = t["patients"]
    demo = by_patient(pats, pats["patient_key"]).select(
        local_id().alias("PATIENT"),
        pl.col("sex").alias("SEX"),
        pl.col("birth_year").cast(pl.String).alias("BIRTH_YEAR"),
        num("age_at_index_years", 1).alias("AGE_AT_CART"),
        pl.col("patient_key").alias(REF),
    )
    cut = t["follow_up"]["data_cut_date"]
    title = f"Data warehouse extract;data complete to;{cut[0].isoformat() if cut.len() else ''};;"
    return Export(
        site_id=site.site_id,
        layout="eav",
        sheets=[
            Sheet(OBSERVATIONS, observations(t), header_rows=2, separator=";", title=title),
            Sheet(DEMOGRAPHICS, demo),
        ],
        static_files={CODEBOOK: codebook(), "README.md": readme(site)},
    )


def codebook() -> str:
    lines = ["CODE;DESCRIPTION;VALUE_TYPE;UNIT"]
    lines += [f"{code};{d};{kind};{unit}" for code, (d, kind, unit) in CODES.items()]
    return "\n".join(lines) + "\n"


def readme(site: SiteInfo) -> str:
    return render_template("eav_README.md", site_id=site.site_id)


def mapping(site: SiteInfo) -> str:
    """The hand-written mapping of this layout, for this site."""
    return render_template(MAPPING_TEMPLATE, site_id=site.site_id)
