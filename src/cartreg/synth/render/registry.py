"""REDCap registry-form layout: the forms of a registry project, not of a study database.

Files: ``CARTRegistry_DATA_2025-07-01.csv`` (the "CSV (raw data)" export) and
``CARTRegistry_DataDictionary_2025-07-01.csv``. The base row of a record holds two
non-repeating forms: ``enrolment`` (year of birth only, prior therapies as one checkbox field
whose columns each stand for a yes/no item) and ``fu_status`` (a follow-up status form: date
of last contact, vital status and the registry's yes/no question "progression or relapse after
CAR T?"). Repeating instruments: ``cart_infusion``, ``d28_response`` (the day-28 marrow, the
only marrow the registry collects), ``progression`` (without the date of the remission it
ended), ``salvage`` (agents as a checkbox) and ``transplant``. There is no age, no remission
date, no disease burden and no data cut-off field: ingest derives the first three, and the
mapping states the cut-off.
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
    qualified,
    render_template,
)
from cartreg.synth.render.redcap import dictionary_csv, instrument_rows, record_id
from cartreg.synth.render.site_truth import Tables, disease_status, renumber, restrict

RECORDS = "CARTRegistry_DATA_2025-07-01.csv"
DICTIONARY = "CARTRegistry_DataDictionary_2025-07-01.csv"

SEX = {"M": "1", "F": "2"}
PH = {"BCR_ABL1_POS": "1", "BCR_ABL1_NEG": "2", "PH_LIKE": "3", "UNKNOWN": "99"}
YNU = {"Y": "1", "N": "0", "UNKNOWN": "99"}
YN = {"Y": "1", "N": "0"}
PRIOR = {"prior_allohct": "1", "prior_blinatumomab": "2", "prior_inotuzumab": "3"}
PRODUCT = {
    "tisagenlecleucel": "1",
    "brexucabtagene_autoleucel": "2",
    "obecabtagene_autoleucel": "3",
    "msk_19_28z": "10",
    "hucart19": "11",
    "other_cd19_car_t": "19",
}
SETTING = {"COMMERCIAL": "1", "CLINICAL_TRIAL": "2", "EXPANDED_ACCESS": "3"}
REINF = {"B_CELL_RECOVERY": "1", "MRD": "2", "MORPHOLOGIC_RELAPSE": "3", "NONRESPONSE": "4"}
RESPONSE = {"CR": "1", "CRi": "2", "NR": "3", "NOT_EVALUATED": "8"}
PROG_TYPE = {"RELAPSE_AFTER_CR": "1", "REFRACTORY_NONRESPONSE": "2"}
PROG_SITE = {"BM_ONLY": "1", "BM_PLUS_EMD": "2", "ISOLATED_CNS": "3", "ISOLATED_EMD_OTHER": "4"}
PHENOTYPE = {
    "CD19_POS": "1",
    "CD19_DIM_PARTIAL": "2",
    "CD19_NEG": "3",
    "LINEAGE_SWITCH": "4",
    "UNKNOWN": "99",
}
AGENTS = {
    "blinatumomab": "1",
    "inotuzumab_ozogamicin": "2",
    "car_t_reinfusion": "3",
    "new_cd19_car_t": "4",
    "cd22_car_t": "5",
    "hyper_cvad": "6",
    "flag_ida": "7",
    "mini_hcvd": "8",
    "venetoclax": "9",
    "ponatinib": "10",
    "clinical_trial_other": "11",
}
SALV_RESP = {"CR": "1", "CRi": "2", "NR": "3", "PD": "4", "NOT_EVALUATED": "8"}
DONOR = {"MSD": "1", "MUD": "2", "MMUD": "3", "HAPLO": "4", "CORD": "5"}
INTENT = {"PRIOR_TO_INDEX": "1", "CONSOLIDATION": "2", "SALVAGE": "3"}
VITAL = {"ALIVE": "1", "DEAD": "2"}
COD = {
    "PRIMARY_DISEASE": "1",
    "INFECTION": "2",
    "CRS": "3",
    "ICANS": "4",
    "GVHD": "5",
    "HLH_IEC_HS": "6",
    "OTHER_TOXICITY": "7",
    "SECONDARY_MALIGNANCY": "8",
    "OTHER": "99",
}

LABELS: dict[str, dict[str, str]] = {
    "sex": {"1": "Male", "2": "Female"},
    "ph": {"1": "Ph+ (BCR::ABL1)", "2": "Ph-negative", "3": "Ph-like", "99": "Not known"},
    "kmt2a": {"1": "Yes", "0": "No", "99": "Not known"},
    "prior_tx": {"1": "Allogeneic HCT", "2": "Blinatumomab", "3": "Inotuzumab ozogamicin"},
    "inf_product": {
        "1": "Kymriah (tisagenlecleucel)",
        "2": "Tecartus (brexucabtagene autoleucel)",
        "3": "Aucatzyl (obecabtagene autoleucel)",
        "10": "19-28z (investigational)",
        "11": "huCART19 (investigational)",
        "19": "Other CD19 CAR T",
    },
    "inf_setting": {"1": "Commercial", "2": "Clinical trial", "3": "Expanded access"},
    "inf_reason": {
        "1": "B-cell recovery",
        "2": "MRD",
        "3": "Morphologic relapse",
        "4": "No response",
    },
    "d28_response": {"1": "CR", "2": "CRi", "3": "No response", "8": "Not evaluated"},
    "prog_type": {"1": "Relapse after CR/CRi", "2": "Refractory (no CR/CRi)"},
    "prog_site": {
        "1": "Marrow only",
        "2": "Marrow and extramedullary",
        "3": "Isolated CNS",
        "4": "Isolated extramedullary (not CNS)",
    },
    "prog_cd19": {
        "1": "CD19 positive",
        "2": "CD19 dim/partial",
        "3": "CD19 negative",
        "4": "Lineage switch",
        "99": "Not tested",
    },
    "salv_agents": {
        "1": "Blinatumomab",
        "2": "Inotuzumab ozogamicin",
        "3": "CAR T reinfusion",
        "4": "New CD19 CAR T product",
        "5": "CD22 CAR T",
        "6": "Hyper-CVAD",
        "7": "FLAG-IDA",
        "8": "Mini-hyper-CVD",
        "9": "Venetoclax-based",
        "10": "Ponatinib",
        "11": "Clinical trial (other)",
    },
    "salv_resp": {
        "1": "CR",
        "2": "CRi",
        "3": "No response",
        "4": "Progression",
        "8": "Not evaluated",
    },
    "hct_donor": {
        "1": "Matched sibling",
        "2": "Matched unrelated",
        "3": "Mismatched unrelated",
        "4": "Haploidentical",
        "5": "Cord blood",
    },
    "hct_intent": {
        "1": "Before CAR T",
        "2": "Consolidation in remission after CAR T",
        "3": "Salvage after progression",
    },
    "fu_vital": {"1": "Alive", "2": "Dead"},
    "fu_cod": {
        "1": "Leukemia",
        "2": "Infection",
        "3": "CRS",
        "4": "ICANS",
        "5": "GVHD",
        "6": "HLH / IEC-HS",
        "7": "Other toxicity",
        "8": "Second malignancy",
        "99": "Other",
    },
}

FIELDS: list[tuple[str, str, str, str, str]] = [
    ("record_id", "enrolment", "text", "Registry ID", ""),
    ("sex", "enrolment", "radio", "Sex at birth", ""),
    ("yob", "enrolment", "text", "Year of birth", "integer"),
    ("dx_date", "enrolment", "text", "Date of diagnosis of B-ALL", "date_ymd"),
    ("ph", "enrolment", "radio", "Philadelphia chromosome", ""),
    ("kmt2a", "enrolment", "radio", "KMT2A rearrangement", ""),
    ("prior_lines", "enrolment", "text", "Lines of therapy before CAR T", "integer"),
    ("prior_tx", "enrolment", "checkbox", "Therapies before CAR T (tick all)", ""),
    ("inf_date", "cart_infusion", "text", "Date of infusion", "date_ymd"),
    ("inf_product", "cart_infusion", "dropdown", "Product", ""),
    ("inf_setting", "cart_infusion", "radio", "Setting", ""),
    ("inf_nct", "cart_infusion", "text", "Trial registration number", ""),
    ("inf_bridge", "cart_infusion", "yesno", "Bridging therapy given", ""),
    ("inf_reason", "cart_infusion", "dropdown", "Reason for a further infusion", ""),
    ("inf_blasts", "cart_infusion", "text", "Marrow blasts before lymphodepletion (%)", ""),
    ("inf_emd", "cart_infusion", "yesno", "Extramedullary disease at infusion", ""),
    ("d28_date", "d28_response", "text", "Date of the day-28 marrow", "date_ymd"),
    ("d28_blasts", "d28_response", "text", "Marrow blasts (%)", ""),
    ("d28_response", "d28_response", "radio", "Response at day 28", ""),
    ("prog_date", "progression", "text", "Date relapse/progression documented", "date_ymd"),
    ("prog_type", "progression", "radio", "Type", ""),
    ("prog_site", "progression", "radio", "Site", ""),
    ("prog_cd19", "progression", "radio", "CD19 on blasts at relapse", ""),
    ("salv_start", "salvage", "text", "Start of this line", "date_ymd"),
    ("salv_agents", "salvage", "checkbox", "Agents (tick all)", ""),
    ("salv_resp", "salvage", "radio", "Best response", ""),
    ("salv_resp_date", "salvage", "text", "Date of best response", "date_ymd"),
    ("hct_date", "transplant", "text", "Date of transplant", "date_ymd"),
    ("hct_donor", "transplant", "dropdown", "Donor", ""),
    ("hct_intent", "transplant", "radio", "Indication", ""),
    ("fu_date", "fu_status", "text", "Date of last contact", "date_ymd"),
    ("fu_vital", "fu_status", "radio", "Vital status at last contact", ""),
    ("fu_prog", "fu_status", "yesno", "Progression or relapse after CAR T?", ""),
    ("fu_death_date", "fu_status", "text", "Date of death", "date_ymd"),
    ("fu_cod", "fu_status", "dropdown", "Main cause of death", ""),
]
FORMS: tuple[str, ...] = ("enrolment", "fu_status", "cart_infusion", "d28_response")
FORMS += ("progression", "salvage", "transplant")
REPEATING = FORMS[2:]

# What this layout exports, per CDM table (ingest derives the rest; see site_truth.restrict).
EXPORTED: dict[str, set[str]] = {
    "patients": {"sex", "birth_year", "diagnosis_date", "ph_status", "kmt2a_rearranged"}
    | {"n_prior_lines", "prior_allohct", "prior_blinatumomab", "prior_inotuzumab"},
    "car_t_infusions": {"infusion_date", "product", "setting", "trial_id", "bridging_therapy"}
    | {"reinfusion_reason", "pre_bm_blast_pct", "pre_bm_blast_qualifier", "pre_emd_present"}
    | {"disease_burden"},
    "disease_assessments": {"assessment_date", "bm_blast_pct", "bm_blast_qualifier", "response"}
    | {"specimen", "timepoint_label"},
    "progression_events": {"progression_date", "event_type", "site", "antigen_phenotype"}
    | {"remission_date"},
    "salvage_treatments": {"start_date", "agent", "best_response", "best_response_date"},
    "transplants": {"hct_date", "hct_type", "donor_type", "intent"},
    "follow_up": {"data_cut_date", "last_contact_date", "vital_status", "death_date"}
    | {"cause_of_death", "disease_status", "disease_status_date"},
}


def _day28(t: Tables) -> pl.DataFrame:
    return t["disease_assessments"].filter(pl.col("timepoint_label") == "D28")


def known(t: Tables) -> Tables:
    """What a clean ingest of this layout gives (the burden and the remission date are derived
    from the exported blasts and day-28 marrow; the age is only an interval, checked apart)."""
    t = disease_status(t)
    t["disease_assessments"] = renumber(_day28(t), "assessment_id", "A", "assessment_day")
    t["disease_assessments"] = t["disease_assessments"].with_columns(
        pl.lit("D28").alias("timepoint_label"), pl.lit("BONE_MARROW").alias("specimen")
    )
    return restrict(t, EXPORTED)


def _columns() -> list[str]:
    cols = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance"]
    for form in FORMS:
        for name, f, ftype, _, _ in FIELDS:
            if f != form or name == "record_id":
                continue
            if ftype == "checkbox":
                cols.extend(f"{name}___{code}" for code in LABELS[name])
            else:
                cols.append(name)
        cols.append(f"{form}_complete")
    return cols


def _blasts(value: str, qualifier: str) -> pl.Expr:
    return qualified(value, qualifier)


def build(site: SiteInfo, t: Tables) -> Export:
    """Render a site's truth tables as the registry project's raw export and dictionary."""
    keys = t["patients"]["patient_key"]
    progressed = t["progression_events"]["patient_key"].implode()
    pat = t["patients"].join(t["follow_up"], on="patient_key", suffix="_fu")
    base = pat.select(
        pl.col("patient_key").alias(REF),
        pl.col("patient_key"),
        pl.lit(None, pl.String).alias("redcap_repeat_instrument"),
        pl.lit(None, pl.String).alias("redcap_repeat_instance"),
        coded("sex", SEX).alias("sex"),
        pl.col("birth_year").cast(pl.String).alias("yob"),
        iso("diagnosis_date").alias("dx_date"),
        coded("ph_status", PH).alias("ph"),
        coded("kmt2a_rearranged", YNU).alias("kmt2a"),
        pl.col("n_prior_lines").cast(pl.String).alias("prior_lines"),
        *[coded(col, YN).alias(f"prior_tx___{code}") for col, code in PRIOR.items()],
        pl.lit("2").alias("enrolment_complete"),
        iso("last_contact_date").alias("fu_date"),
        coded("vital_status", VITAL).alias("fu_vital"),
        pl.when(pl.col("patient_key").is_in(progressed))
        .then(pl.lit("1"))
        .otherwise(pl.lit("0"))
        .alias("fu_prog"),
        iso("death_date").alias("fu_death_date"),
        coded("cause_of_death", COD).alias("fu_cod"),
        pl.lit("2").alias("fu_status_complete"),
        pl.lit(0).alias("_form"),
    )

    def repeating(
        frame: pl.DataFrame, form: str, id_col: str, exprs: list[pl.Expr]
    ) -> pl.DataFrame:
        return instrument_rows(frame, keys, form, id_col, exprs, FORMS.index(form))

    inf = repeating(
        t["car_t_infusions"],
        "cart_infusion",
        "infusion_id",
        [
            iso("infusion_date").alias("inf_date"),
            coded("product", PRODUCT).alias("inf_product"),
            coded("setting", SETTING).alias("inf_setting"),
            pl.col("trial_id").alias("inf_nct"),
            coded("bridging_therapy", YN).alias("inf_bridge"),
            coded("reinfusion_reason", REINF).alias("inf_reason"),
            _blasts("pre_bm_blast_pct", "pre_bm_blast_qualifier").alias("inf_blasts"),
            coded("pre_emd_present", YN).alias("inf_emd"),
        ],
    )
    d28 = repeating(
        _day28(t),
        "d28_response",
        "assessment_id",
        [
            iso("assessment_date").alias("d28_date"),
            _blasts("bm_blast_pct", "bm_blast_qualifier").alias("d28_blasts"),
            coded("response", RESPONSE).alias("d28_response"),
        ],
    )
    prog = repeating(
        t["progression_events"],
        "progression",
        "progression_id",
        [
            iso("progression_date").alias("prog_date"),
            coded("event_type", PROG_TYPE).alias("prog_type"),
            coded("site", PROG_SITE).alias("prog_site"),
            coded("antigen_phenotype", PHENOTYPE).alias("prog_cd19"),
        ],
    )
    lines = (
        t["salvage_treatments"]
        .with_columns(coded("agent", AGENTS).alias("_code"))
        .group_by(["patient_key", "line_number"], maintain_order=True)
        .agg(
            pl.col("salvage_id").first(),
            pl.col("start_date").first(),
            pl.col("best_response").first(),
            pl.col("best_response_date").first(),
            pl.col("_code"),
        )
    )
    sal = repeating(
        lines,
        "salvage",
        "salvage_id",
        [
            iso("start_date").alias("salv_start"),
            *[
                pl.col("_code")
                .list.contains(pl.lit(code))
                .cast(pl.Int8)
                .cast(pl.String)
                .alias(f"salv_agents___{code}")
                for code in LABELS["salv_agents"]
            ],
            coded("best_response", SALV_RESP).alias("salv_resp"),
            iso("best_response_date").alias("salv_resp_date"),
        ],
    )
    hct = repeating(
        t["transplants"],
        "transplant",
        "hct_id",
        [
            iso("hct_date").alias("hct_date"),
            coded("donor_type", DONOR).alias("hct_donor"),
            coded("intent", INTENT).alias("hct_intent"),
        ],
    )
    flat = pl.concat([base, inf, d28, prog, sal, hct], how="diagonal_relaxed")
    flat = by_patient(flat.sort("_form", maintain_order=True), keys)
    flat = flat.with_columns(record_id().alias("record_id")).select([*_columns(), REF])
    return Export(
        site_id=site.site_id,
        layout="registry",
        sheets=[Sheet(RECORDS, flat)],
        static_files={DICTIONARY: data_dictionary(), "README.md": readme(site)},
    )


def data_dictionary() -> str:
    notes = {
        "yob": "Year only; the registry does not collect dates of birth",
        "inf_blasts": "Number as in the pathology report; '<1' when below 1%",
        "d28_blasts": "Number as in the pathology report; '<1' when below 1%",
        "fu_prog": "Any relapse or progression since the first CAR T infusion, up to fu_date",
        "prior_tx": "Tick every therapy given before the first CAR T infusion",
    }
    branching = {
        "inf_nct": "[inf_setting] = '2'",
        "inf_reason": "[redcap_repeat_instance] > 1",
        "fu_death_date": "[fu_vital] = '2'",
        "fu_cod": "[fu_vital] = '2'",
    }
    return dictionary_csv(FIELDS, LABELS, notes, branching, identifiers=("record_id",))


def readme(site: SiteInfo) -> str:
    return render_template(
        "registry_README.md", site_id=site.site_id, records=RECORDS, dictionary=DICTIONARY
    )


def sheet_of(export: Export, table: str) -> tuple[Sheet, str]:
    """The rendered sheet and the source_file of the rows of a CDM table."""
    form = {
        "patients": "enrolment",
        "follow_up": "fu_status",
        "car_t_infusions": "cart_infusion",
        "disease_assessments": "d28_response",
        "progression_events": "progression",
        "salvage_treatments": "salvage",
        "transplants": "transplant",
    }[table]
    source = f"{RECORDS}#{form}" if form in REPEATING else RECORDS
    return export.sheet(RECORDS), source
