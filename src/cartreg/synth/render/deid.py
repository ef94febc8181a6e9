"""De-identified layout: nested NDJSON, one patient per line, no calendar dates.

Timing is the calendar year of each infusion plus day offsets from the first CAR T infusion
(day 0). Lineage is the file name and the line number (one line per patient).
"""

from __future__ import annotations

import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render.common import REF, Export, Sheet, by_patient, render_template

COHORT = "cohort.ndjson"

YN_BOOL = {"Y": True, "N": False}
PRODUCT = {
    "tisagenlecleucel": "tisa-cel",
    "brexucabtagene_autoleucel": "brexu-cel",
    "obecabtagene_autoleucel": "obe-cel",
    "msk_19_28z": "19-28z",
    "hucart19": "huCART19",
    "other_cd19_car_t": "CD19 CAR T",
}


def _bool(col: str) -> pl.Expr:
    return pl.col(col).replace_strict(YN_BOOL, default=None, return_dtype=pl.Boolean)


def sorted_struct(**fields: pl.Expr) -> pl.Expr:
    """A struct with its keys in sorted order, so the JSON is stable and easy to diff."""
    return pl.struct([fields[k].alias(k) for k in sorted(fields)])


_struct = sorted_struct


def _nested(frame: pl.DataFrame, name: str, **fields: pl.Expr) -> pl.DataFrame:
    return frame.group_by("patient_key", maintain_order=True).agg(_struct(**fields).alias(name))


def build(site: SiteInfo, t: dict[str, pl.DataFrame]) -> Export:
    """Render a site's truth tables as one nested JSON object per patient."""
    keys = t["patients"]["patient_key"]
    infusions = _nested(
        t["car_t_infusions"],
        "infusions",
        number=pl.col("infusion_number"),
        year=pl.col("infusion_year"),
        day=pl.col("infusion_day"),
        product=pl.col("product").replace(PRODUCT),
        setting=pl.col("setting").str.to_lowercase(),
        trial=pl.col("trial_id"),
        dose=_struct(value=pl.col("dose_value"), unit=pl.col("dose_unit")),
        lymphodepletion=pl.col("lymphodepletion_regimen"),
        bridging=_bool("bridging_therapy"),
        reinfusion_reason=pl.col("reinfusion_reason"),
        pre_infusion=_struct(
            marrow_blasts_pct=pl.col("pre_bm_blast_pct"),
            marrow_blasts_below=(pl.col("pre_bm_blast_qualifier") == "LT").fill_null(False),
            mrd_fraction=pl.col("pre_mrd_value"),
            emd=_bool("pre_emd_present"),
            cns=pl.col("pre_cns_status"),
            burden=pl.col("disease_burden").str.to_lowercase(),
            cd19=pl.col("cd19_status_pre").str.to_lowercase(),
        ),
    )
    assessments = _nested(
        t["disease_assessments"],
        "assessments",
        day=pl.col("assessment_day"),
        timepoint=pl.col("timepoint_label"),
        specimen=pl.col("specimen").str.to_lowercase(),
        marrow_blasts_pct=pl.col("bm_blast_pct"),
        marrow_blasts_below=(pl.col("bm_blast_qualifier") == "LT").fill_null(False),
        anc_per_ul=pl.col("anc_per_ul"),
        platelets_per_ul=pl.col("platelets_per_ul"),
        mrd=_struct(
            fraction=pl.col("mrd_value"), method=pl.col("mrd_method"), status=pl.col("mrd_status")
        ),
        emd=_bool("emd_present"),
        cd19=pl.col("cd19_status").str.to_lowercase(),
        response=pl.col("response"),
    )
    progressions = _nested(
        t["progression_events"],
        "progressions",
        seq=pl.col("event_seq"),
        day=pl.col("progression_day"),
        type=pl.col("event_type").str.to_lowercase(),
        site=pl.col("site").str.to_lowercase(),
        phenotype=pl.col("antigen_phenotype"),
        marrow_blasts_pct=pl.col("bm_blast_pct_at_event"),
        remission_day=pl.col("remission_day"),
    )
    lines = (
        t["salvage_treatments"]
        .group_by(["patient_key", "line_number"], maintain_order=True)
        .agg(
            pl.col("start_day").first(),
            pl.col("agent"),
            pl.col("best_response").first(),
            pl.col("best_response_day").first(),
        )
    )
    salvage = _nested(
        lines,
        "salvage",
        line=pl.col("line_number"),
        day=pl.col("start_day"),
        agents=pl.col("agent"),
        best_response=pl.col("best_response"),
        best_response_day=pl.col("best_response_day"),
    )
    transplants = _nested(
        t["transplants"],
        "transplants",
        day=pl.col("hct_day"),
        type=pl.col("hct_type").str.to_lowercase(),
        donor=pl.col("donor_type"),
        intent=pl.col("intent").str.to_lowercase(),
        status=pl.col("disease_status_at_hct"),
    )
    pat = t["patients"].join(t["follow_up"], on="patient_key", suffix="_fu")
    for part in (infusions, assessments, progressions, salvage, transplants):
        pat = pat.join(part, on="patient_key", how="left")
    empty = {
        name: pl.col(name).fill_null(pl.lit([], dtype=pat.schema[name]))
        for name in ("infusions", "assessments", "progressions", "salvage", "transplants")
    }
    record = _struct(
        pseudo_id=pl.col("patient_key").str.split("-").list.last(),
        sex=pl.col("sex").replace({"M": "male", "F": "female"}),
        birth_year=pl.col("birth_year"),
        age_at_infusion=pl.col("age_at_index_years"),
        diagnosis=_struct(
            day=pl.col("diagnosis_day"),
            icd10=pl.col("diagnosis_icd10"),
            ph=pl.col("ph_status"),
            kmt2a=pl.col("kmt2a_rearranged"),
            cytogenetic_risk=pl.col("cytogenetic_risk").str.to_lowercase(),
        ),
        prior_therapy=_struct(
            lines=pl.col("n_prior_lines"),
            allo_hct=_bool("prior_allohct"),
            blinatumomab=_bool("prior_blinatumomab"),
            blinatumomab_response=pl.col("prior_blinatumomab_response"),
            inotuzumab=_bool("prior_inotuzumab"),
        ),
        follow_up=_struct(
            data_cut=pl.col("data_cut_date").dt.to_string("%Y-%m-%d"),
            last_contact_day=pl.col("last_contact_day"),
            vital_status=pl.col("vital_status").str.to_lowercase(),
            death_day=pl.col("death_day"),
            cause_of_death=pl.col("cause_of_death"),
        ),
        **empty,
    )
    lines_frame = by_patient(pat, keys).select(
        record.struct.json_encode().alias("_json"), pl.col("patient_key").alias(REF)
    )
    return Export(
        site_id=site.site_id,
        layout="deid",
        sheets=[Sheet(COHORT, lines_frame, header_rows=0)],
        static_files={"README.md": readme(site)},
    )


def readme(site: SiteInfo) -> str:
    return render_template("deid_README.md", site_id=site.site_id)
