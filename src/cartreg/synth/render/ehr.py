"""EHR layout: a research data warehouse extract, one row per clinical event.

Files: ``patients.csv`` (one row per patient) and ``events.csv`` (one row per event: infusion,
assessment, progression, salvage start, transplant, last contact, death), ISO dates, some
partial (``YYYY-MM``) diagnosis dates, and the warehouse's sentinel codes (``-99`` for an
unknown number, ``1900-01-01`` for an unknown date, ``UNK``). Lineage is the file name and
the CSV line number (header = line 1).
"""

from __future__ import annotations

import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render.common import (
    REF,
    Export,
    Sheet,
    by_patient,
    coded,
    iso,
    num,
    render_template,
)

PATIENTS = "patients.csv"
EVENTS = "events.csv"

PH = {
    "BCR_ABL1_POS": "POSITIVE",
    "BCR_ABL1_NEG": "NEGATIVE",
    "PH_LIKE": "PH-LIKE",
    "UNKNOWN": "UNK",
}
YNU = {"Y": "Y", "N": "N", "UNKNOWN": "UNK"}
PRODUCT = {
    "tisagenlecleucel": "KYMRIAH (tisagenlecleucel) IV susp",
    "brexucabtagene_autoleucel": "TECARTUS (brexucabtagene autoleucel) IV susp",
    "obecabtagene_autoleucel": "AUCATZYL (obecabtagene autoleucel) IV susp",
    "msk_19_28z": "19-28z CAR T (protocol)",
    "hucart19": "huCART19 (protocol)",
    "other_cd19_car_t": "CD19 CAR-T (protocol)",
}
AGENT = {
    "blinatumomab": "BLINATUMOMAB 35 MCG INJ",
    "inotuzumab_ozogamicin": "INOTUZUMAB OZOGAMICIN 0.9 MG INJ",
    "car_t_reinfusion": "CAR T REINFUSION",
    "new_cd19_car_t": "NEW CD19 CAR T",
    "cd22_car_t": "CD22 CAR T (protocol)",
    "hyper_cvad": "HYPER-CVAD",
    "flag_ida": "FLAG-IDA",
    "mini_hcvd": "MINI-HCVD",
    "venetoclax": "VENETOCLAX 100 MG TAB",
    "ponatinib": "PONATINIB 45 MG TAB",
    "clinical_trial_other": "INVESTIGATIONAL AGENT (protocol)",
}
EVENT_TYPES = (
    "CAR_T_INFUSION",
    "DISEASE_ASSESSMENT",
    "PROGRESSION",
    "SALVAGE_START",
    "TRANSPLANT",
    "LAST_CONTACT",
    "DEATH",
)

_EVENT_COLUMNS = [
    "STUDY_ID",
    "EVENT_TYPE",
    "EVENT_DATE",
    "EVENT_SEQ",
    "ITEM_NAME",
    "SETTING",
    "PROTOCOL_NCT",
    "DOSE",
    "DOSE_UNIT",
    "LD_REGIMEN",
    "BRIDGING_YN",
    "REINFUSION_REASON",
    "TIMEPOINT",
    "SPECIMEN",
    "BM_BLAST_PCT",
    "BM_BLAST_QUAL",
    "ANC_PER_UL",
    "PLT_PER_UL",
    "MRD_PCT",
    "MRD_METHOD",
    "MRD_RESULT",
    "EMD_YN",
    "CNS_STATUS",
    "DISEASE_BURDEN",
    "CD19",
    "RESPONSE",
    "PROG_TYPE",
    "PROG_SITE",
    "REMISSION_DATE",
    "BEST_RESPONSE",
    "BEST_RESPONSE_DATE",
    "HCT_TYPE",
    "DONOR_TYPE",
    "HCT_INTENT",
    "HCT_STATUS",
    "CAUSE_OF_DEATH",
    "DATA_CUT_DATE",
]


def study_id() -> pl.Expr:
    return pl.col("patient_key").str.split("-").list.last()


def build(site: SiteInfo, t: dict[str, pl.DataFrame]) -> Export:
    """Render a site's truth tables as a patients file and a long event file."""
    keys = t["patients"]["patient_key"]
    pats = by_patient(t["patients"], keys).select(
        study_id().alias("STUDY_ID"),
        pl.col("sex").alias("SEX"),
        pl.col("birth_year").cast(pl.String).alias("BIRTH_YEAR"),
        num("age_at_index_years", 1).alias("AGE_AT_CART"),
        pl.when(pl.col("diagnosis_date_precision") == "MONTH")
        .then(pl.col("diagnosis_date").dt.to_string("%Y-%m"))
        .otherwise(iso("diagnosis_date"))
        .alias("DIAG_DATE"),
        pl.col("diagnosis_icd10").alias("DIAG_ICD10"),
        coded("ph_status", PH).alias("PH_STATUS"),
        coded("kmt2a_rearranged", YNU).alias("KMT2A_R"),
        pl.col("cytogenetic_risk").replace("UNKNOWN", "UNK").alias("CYTO_RISK"),
        pl.col("n_prior_lines").cast(pl.String).alias("PRIOR_LINES"),
        pl.col("prior_allohct").alias("PRIOR_ALLO_HCT"),
        pl.col("prior_blinatumomab").alias("PRIOR_BLINA"),
        pl.col("prior_blinatumomab_response").alias("PRIOR_BLINA_RESPONSE"),
        pl.col("prior_inotuzumab").alias("PRIOR_INO"),
        pl.col("patient_key").alias(REF),
    )

    def events(
        frame: pl.DataFrame, etype: str, date_col: str, ref: str, exprs: list[pl.Expr]
    ) -> pl.DataFrame:
        return frame.select(
            pl.col("patient_key"),
            pl.col(date_col).alias("_date"),
            pl.lit(EVENT_TYPES.index(etype)).alias("_type"),
            study_id().alias("STUDY_ID"),
            pl.lit(etype).alias("EVENT_TYPE"),
            iso(date_col).alias("EVENT_DATE"),
            *exprs,
            pl.col(ref).alias(REF),
        )

    inf = events(
        t["car_t_infusions"],
        "CAR_T_INFUSION",
        "infusion_date",
        "infusion_id",
        [
            pl.col("infusion_number").cast(pl.String).alias("EVENT_SEQ"),
            coded("product", PRODUCT).alias("ITEM_NAME"),
            pl.col("setting").alias("SETTING"),
            pl.col("trial_id").alias("PROTOCOL_NCT"),
            num("dose_value", 0).alias("DOSE"),
            pl.col("dose_unit")
            .replace({"CAR_POS_CELLS_PER_KG": "CELLS/KG", "CAR_POS_CELLS_TOTAL": "CELLS"})
            .alias("DOSE_UNIT"),
            pl.col("lymphodepletion_regimen").alias("LD_REGIMEN"),
            pl.col("bridging_therapy").alias("BRIDGING_YN"),
            pl.col("reinfusion_reason").alias("REINFUSION_REASON"),
            num("pre_bm_blast_pct", 1).alias("BM_BLAST_PCT"),
            pl.col("pre_bm_blast_qualifier").replace({"LT": "<"}).alias("BM_BLAST_QUAL"),
            pl.when(pl.col("is_index_infusion"))
            .then(pl.coalesce(num(pl.col("pre_mrd_value") * 100, 4), pl.lit("-99")))
            .alias("MRD_PCT"),
            pl.col("pre_emd_present").alias("EMD_YN"),
            pl.col("pre_cns_status").alias("CNS_STATUS"),
            pl.col("disease_burden").alias("DISEASE_BURDEN"),
            pl.col("cd19_status_pre").replace("UNKNOWN", "UNK").alias("CD19"),
        ],
    )
    asm = events(
        t["disease_assessments"],
        "DISEASE_ASSESSMENT",
        "assessment_date",
        "assessment_id",
        [
            pl.col("timepoint_label").alias("TIMEPOINT"),
            pl.col("specimen").alias("SPECIMEN"),
            num("bm_blast_pct", 1).alias("BM_BLAST_PCT"),
            pl.col("bm_blast_qualifier").replace({"LT": "<"}).alias("BM_BLAST_QUAL"),
            num("anc_per_ul", 0).alias("ANC_PER_UL"),
            num("platelets_per_ul", 0).alias("PLT_PER_UL"),
            num(pl.col("mrd_value") * 100, 4).alias("MRD_PCT"),
            pl.col("mrd_method").alias("MRD_METHOD"),
            pl.col("mrd_status")
            .replace({"NEG": "NOT DETECTED", "POS": "DETECTED"})
            .alias("MRD_RESULT"),
            pl.col("emd_present").alias("EMD_YN"),
            pl.col("cd19_status").replace("UNKNOWN", "UNK").alias("CD19"),
            pl.col("response").alias("RESPONSE"),
        ],
    )
    prog = events(
        t["progression_events"],
        "PROGRESSION",
        "progression_date",
        "progression_id",
        [
            pl.col("event_seq").cast(pl.String).alias("EVENT_SEQ"),
            pl.col("event_type").alias("PROG_TYPE"),
            pl.col("site").alias("PROG_SITE"),
            pl.col("antigen_phenotype").replace("UNKNOWN", "UNK").alias("CD19"),
            num("bm_blast_pct_at_event", 1).alias("BM_BLAST_PCT"),
            iso("remission_date").alias("REMISSION_DATE"),
        ],
    )
    sal = events(
        t["salvage_treatments"],
        "SALVAGE_START",
        "start_date",
        "salvage_id",
        [
            pl.col("line_number").cast(pl.String).alias("EVENT_SEQ"),
            coded("agent", AGENT).alias("ITEM_NAME"),
            pl.col("best_response").alias("BEST_RESPONSE"),
            pl.coalesce(iso("best_response_date"), pl.lit("1900-01-01")).alias(
                "BEST_RESPONSE_DATE"
            ),
        ],
    )
    hct = events(
        t["transplants"],
        "TRANSPLANT",
        "hct_date",
        "hct_id",
        [
            pl.col("hct_type").alias("HCT_TYPE"),
            pl.col("donor_type").alias("DONOR_TYPE"),
            pl.col("intent").alias("HCT_INTENT"),
            pl.col("disease_status_at_hct").alias("HCT_STATUS"),
        ],
    )
    fu = t["follow_up"]
    last = events(
        fu.filter(pl.col("vital_status") == "ALIVE"),
        "LAST_CONTACT",
        "last_contact_date",
        "patient_key",
        [iso("data_cut_date").alias("DATA_CUT_DATE")],
    )
    death = events(
        fu.filter(pl.col("vital_status") == "DEAD"),
        "DEATH",
        "death_date",
        "patient_key",
        [
            pl.col("cause_of_death").alias("CAUSE_OF_DEATH"),
            iso("data_cut_date").alias("DATA_CUT_DATE"),
        ],
    )
    ev = pl.concat([inf, asm, prog, sal, hct, last, death], how="diagonal_relaxed")
    ev = by_patient(ev.sort(["_date", "_type"], maintain_order=True), keys)
    ev = ev.select(
        [pl.col(c) if c in ev.columns else pl.lit(None, pl.String).alias(c) for c in _EVENT_COLUMNS]
        + [pl.col(REF)]
    )
    return Export(
        site_id=site.site_id,
        layout="ehr",
        sheets=[Sheet(PATIENTS, pats), Sheet(EVENTS, ev)],
        static_files={"README.md": readme(site)},
    )


def readme(site: SiteInfo) -> str:
    return render_template("ehr_README.md", site_id=site.site_id)
