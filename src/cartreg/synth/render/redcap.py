"""REDCap layout: a flat raw export (coded values) with repeating instruments and a checkbox field.

Files: ``records.csv`` (the "CSV (raw data)" export: one base row per record with the
non-repeating ``baseline`` and ``follow_up`` forms, then one row per instance of each repeating
instrument) and ``data_dictionary.csv`` (the project's metadata export, which defines every
code). Lineage of a row is ``records.csv#<instrument>`` and its CSV line number.
"""

from __future__ import annotations

import csv
import io

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

RECORDS = "records.csv"
DICTIONARY = "data_dictionary.csv"

SEX = {"M": "1", "F": "2"}
PH = {"BCR_ABL1_POS": "1", "BCR_ABL1_NEG": "0", "PH_LIKE": "2", "UNKNOWN": "9"}
YNU = {"Y": "1", "N": "0", "UNKNOWN": "9"}
YN = {"Y": "1", "N": "0"}
CYTO = {"STANDARD": "1", "HIGH": "2", "UNKNOWN": "9"}
BLIN_RESP = {"RESPONDER": "1", "NONRESPONDER": "2", "NOT_EVALUABLE": "3"}
PRODUCT = {
    "tisagenlecleucel": "1",
    "brexucabtagene_autoleucel": "2",
    "obecabtagene_autoleucel": "3",
    "msk_19_28z": "4",
    "hucart19": "5",
    "other_cd19_car_t": "99",
}
SETTING = {"COMMERCIAL": "1", "CLINICAL_TRIAL": "2", "EXPANDED_ACCESS": "3"}
DOSE_UNIT = {"CAR_POS_CELLS_PER_KG": "1", "CAR_POS_CELLS_TOTAL": "2"}
LD = {"FLU_CY": "1", "CY_ONLY": "2", "BENDAMUSTINE": "3", "NONE": "4", "OTHER": "5"}
REINF = {
    "B_CELL_RECOVERY": "2",
    "MRD": "4",
    "MORPHOLOGIC_RELAPSE": "5",
    "NONRESPONSE": "6",
    "OTHER": "7",
}
CNS = {"CNS1": "1", "CNS2": "2", "CNS3": "3"}
BURDEN = {"HIGH": "1", "LOW": "2"}
CD19 = {"POS": "1", "DIM_PARTIAL": "2", "NEG": "3", "UNKNOWN": "9"}
SPECIMEN = {"BONE_MARROW": "1", "PERIPHERAL_BLOOD": "2", "CSF": "3", "EXTRAMEDULLARY_TISSUE": "4"}
MRD_METHOD = {"FLOW": "1", "NGS_IG_TR": "2"}
MRD_STATUS = {"NEG": "1", "POS": "2"}
RESPONSE = {"CR": "1", "CRi": "2", "NR": "3", "RELAPSE": "4", "NOT_EVALUATED": "5"}
PROG_TYPE = {"RELAPSE_AFTER_CR": "1", "REFRACTORY_NONRESPONSE": "2"}
PROG_SITE = {"BM_ONLY": "1", "BM_PLUS_EMD": "2", "ISOLATED_CNS": "3", "ISOLATED_EMD_OTHER": "4"}
PHENOTYPE = {
    "CD19_POS": "1",
    "CD19_DIM_PARTIAL": "2",
    "CD19_NEG": "3",
    "LINEAGE_SWITCH": "4",
    "UNKNOWN": "9",
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
SALV_RESP = {"CR": "1", "CRi": "2", "NR": "3", "PD": "4", "NOT_EVALUATED": "5"}
HCT_TYPE = {"ALLOGENEIC": "1", "AUTOLOGOUS": "2"}
DONOR = {"MSD": "1", "MUD": "2", "MMUD": "3", "HAPLO": "4", "CORD": "5"}
INTENT = {"PRIOR_TO_INDEX": "1", "CONSOLIDATION": "2", "SALVAGE": "3"}
HCT_STATUS = {"CR_MRD_NEG": "1", "CR_MRD_POS": "2", "ACTIVE_DISEASE": "3"}
VITAL = {"ALIVE": "1", "DEAD": "0"}
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

_LABELS: dict[str, dict[str, str]] = {
    "sex": {"1": "Male", "2": "Female"},
    "ph_status": {
        "1": "BCR::ABL1 positive",
        "0": "BCR::ABL1 negative",
        "2": "Ph-like",
        "9": "Unknown",
    },
    "kmt2a": {"1": "Yes", "0": "No", "9": "Unknown"},
    "cyto_risk": {"1": "Standard", "2": "High", "9": "Unknown"},
    "prior_blina_resp": {"1": "Responder", "2": "Non-responder", "3": "Not evaluable"},
    "inf_product": {
        "1": "Tisagenlecleucel (Kymriah)",
        "2": "Brexucabtagene autoleucel (Tecartus)",
        "3": "Obecabtagene autoleucel (Aucatzyl)",
        "4": "19-28z (MSK investigational)",
        "5": "huCART19 (investigational)",
        "99": "Other CD19 CAR T (specify)",
    },
    "inf_setting": {"1": "Commercial", "2": "Clinical trial", "3": "Expanded access"},
    "inf_dose_unit": {"1": "x10^6 CAR+ cells/kg", "2": "x10^6 CAR+ cells (total)"},
    "inf_ld": {
        "1": "Fludarabine/cyclophosphamide",
        "2": "Cyclophosphamide only",
        "3": "Bendamustine",
        "4": "None",
        "5": "Other",
    },
    "inf_reason": {
        "2": "B-cell recovery",
        "4": "MRD",
        "5": "Morphologic relapse",
        "6": "Non-response",
        "7": "Other",
    },
    "pre_cns": {"1": "CNS1", "2": "CNS2", "3": "CNS3"},
    "pre_burden": {"1": "High (>=5% marrow blasts or EMD)", "2": "Low (<5% blasts, no EMD)"},
    "pre_cd19": {"1": "Positive", "2": "Dim/partial", "3": "Negative", "9": "Unknown"},
    "asmt_specimen": {
        "1": "Bone marrow",
        "2": "Peripheral blood",
        "3": "CSF",
        "4": "Extramedullary tissue",
    },
    "asmt_mrd_method": {"1": "Flow cytometry", "2": "NGS (IG/TR)"},
    "asmt_mrd_status": {"1": "Negative", "2": "Positive"},
    "asmt_cd19": {"1": "Positive", "2": "Dim/partial", "3": "Negative", "9": "Unknown"},
    "asmt_response": {
        "1": "CR",
        "2": "CRi",
        "3": "No response",
        "4": "Relapse",
        "5": "Not evaluated",
    },
    "prog_type": {"1": "Relapse after CR/CRi", "2": "Refractory / no response"},
    "prog_site": {
        "1": "Marrow only",
        "2": "Marrow + extramedullary",
        "3": "Isolated CNS",
        "4": "Isolated other extramedullary",
    },
    "prog_cd19": {
        "1": "CD19 positive",
        "2": "CD19 dim/partial",
        "3": "CD19 negative",
        "4": "Lineage switch",
        "9": "Unknown",
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
        "4": "Progressive disease",
        "5": "Not evaluated",
    },
    "hct_type": {"1": "Allogeneic", "2": "Autologous"},
    "hct_donor": {
        "1": "Matched sibling",
        "2": "Matched unrelated",
        "3": "Mismatched unrelated",
        "4": "Haploidentical",
        "5": "Cord blood",
    },
    "hct_intent": {
        "1": "Prior to CAR T",
        "2": "Consolidation in remission after CAR T",
        "3": "Salvage after progression",
    },
    "hct_status": {"1": "CR, MRD negative", "2": "CR, MRD positive", "3": "Active disease"},
    "fu_vital": {"1": "Alive", "0": "Dead"},
    "fu_cod": {
        "1": "Leukemia",
        "2": "Infection",
        "3": "CRS",
        "4": "ICANS",
        "5": "GVHD",
        "6": "HLH / IEC-HS",
        "7": "Other toxicity",
        "8": "Secondary malignancy",
        "99": "Other",
    },
}

# (field, form, type, label, validation, identifier)
_FIELDS: list[tuple[str, str, str, str, str]] = [
    ("record_id", "baseline", "text", "Study ID", ""),
    ("sex", "baseline", "radio", "Sex", ""),
    ("yob", "baseline", "text", "Year of birth", "integer"),
    ("age_car_t", "baseline", "text", "Age at first CAR T infusion (years)", "number"),
    ("dx_date", "baseline", "text", "Date of B-ALL diagnosis", "date_ymd"),
    ("dx_icd10", "baseline", "text", "ICD-10 code of the diagnosis", ""),
    ("ph_status", "baseline", "radio", "Philadelphia chromosome / BCR::ABL1", ""),
    ("kmt2a", "baseline", "radio", "KMT2A rearrangement", ""),
    ("cyto_risk", "baseline", "radio", "Cytogenetic risk group", ""),
    ("prior_lines", "baseline", "text", "Number of prior lines of therapy", "integer"),
    ("prior_hct", "baseline", "yesno", "Allogeneic HCT before CAR T", ""),
    ("prior_blina", "baseline", "yesno", "Blinatumomab before CAR T", ""),
    ("prior_blina_resp", "baseline", "radio", "Response to prior blinatumomab", ""),
    ("prior_ino", "baseline", "yesno", "Inotuzumab before CAR T", ""),
    ("inf_no", "car_t_infusion", "text", "Infusion number", "integer"),
    ("inf_date", "car_t_infusion", "text", "Date of CAR T infusion", "date_ymd"),
    ("inf_product", "car_t_infusion", "dropdown", "CAR T product", ""),
    ("inf_product_oth", "car_t_infusion", "text", "Other product, specify", ""),
    ("inf_setting", "car_t_infusion", "radio", "Setting", ""),
    ("inf_nct", "car_t_infusion", "text", "ClinicalTrials.gov number", ""),
    ("inf_dose", "car_t_infusion", "text", "Dose (see unit)", "number"),
    ("inf_dose_unit", "car_t_infusion", "radio", "Dose unit", ""),
    ("inf_ld", "car_t_infusion", "dropdown", "Lymphodepletion", ""),
    ("inf_bridge", "car_t_infusion", "yesno", "Bridging therapy", ""),
    ("inf_reason", "car_t_infusion", "dropdown", "Reason for reinfusion", ""),
    ("pre_bm_blasts", "car_t_infusion", "text", "Marrow blasts before lymphodepletion (%)", ""),
    ("pre_mrd_pct", "car_t_infusion", "text", "MRD before lymphodepletion (%)", "number"),
    ("pre_emd", "car_t_infusion", "yesno", "Extramedullary disease before infusion", ""),
    ("pre_cns", "car_t_infusion", "radio", "CNS status before infusion", ""),
    ("pre_burden", "car_t_infusion", "radio", "Disease burden at infusion", ""),
    ("pre_cd19", "car_t_infusion", "radio", "CD19 on blasts before infusion", ""),
    ("asmt_date", "disease_assessment", "text", "Date of assessment", "date_ymd"),
    ("asmt_tp", "disease_assessment", "text", "Time point", ""),
    ("asmt_specimen", "disease_assessment", "dropdown", "Specimen", ""),
    ("asmt_blasts", "disease_assessment", "text", "Marrow blasts (%)", ""),
    ("asmt_anc", "disease_assessment", "text", "ANC (cells/uL)", "integer"),
    ("asmt_plt", "disease_assessment", "text", "Platelets (cells/uL)", "integer"),
    ("asmt_mrd_pct", "disease_assessment", "text", "MRD (%)", "number"),
    ("asmt_mrd_method", "disease_assessment", "radio", "MRD method", ""),
    ("asmt_mrd_status", "disease_assessment", "radio", "MRD status", ""),
    ("asmt_emd", "disease_assessment", "yesno", "Extramedullary disease", ""),
    ("asmt_cd19", "disease_assessment", "radio", "CD19 on blasts", ""),
    ("asmt_response", "disease_assessment", "dropdown", "Response", ""),
    ("prog_date", "progression", "text", "Date of progression", "date_ymd"),
    ("prog_type", "progression", "radio", "Type of progression", ""),
    ("prog_site", "progression", "radio", "Site of progression", ""),
    ("prog_cd19", "progression", "radio", "CD19 phenotype at progression", ""),
    ("prog_blasts", "progression", "text", "Marrow blasts at progression (%)", "number"),
    ("prog_cr_date", "progression", "text", "Date of the remission that ended", "date_ymd"),
    ("salv_start", "salvage", "text", "Start of salvage line", "date_ymd"),
    ("salv_agents", "salvage", "checkbox", "Agents in this line", ""),
    ("salv_resp", "salvage", "radio", "Best response to this line", ""),
    ("salv_resp_date", "salvage", "text", "Date of best response", "date_ymd"),
    ("hct_date", "transplant", "text", "Date of stem-cell infusion", "date_ymd"),
    ("hct_type", "transplant", "radio", "Type of HCT", ""),
    ("hct_donor", "transplant", "dropdown", "Donor", ""),
    ("hct_intent", "transplant", "radio", "Indication", ""),
    ("hct_status", "transplant", "radio", "Disease status at HCT", ""),
    ("fu_datacut", "follow_up", "text", "Data cut-off date", "date_ymd"),
    ("fu_last_contact", "follow_up", "text", "Date of last contact", "date_ymd"),
    ("fu_vital", "follow_up", "radio", "Vital status", ""),
    ("fu_death_date", "follow_up", "text", "Date of death", "date_ymd"),
    ("fu_cod", "follow_up", "dropdown", "Primary cause of death", ""),
]
FORMS = (
    "baseline",
    "car_t_infusion",
    "disease_assessment",
    "progression",
    "salvage",
    "transplant",
    "follow_up",
)
REPEATING = ("car_t_infusion", "disease_assessment", "progression", "salvage", "transplant")


def record_id(col: str = "patient_key") -> pl.Expr:
    return pl.col(col).str.split("-").list.last()


def _checkbox_columns() -> list[str]:
    return [f"salv_agents___{code}" for code in AGENTS.values()]


def columns() -> list[str]:
    cols = [
        "record_id",
        "redcap_repeat_instrument",
        "redcap_repeat_instance",
        "redcap_data_access_group",
    ]
    for form in FORMS:
        for name, f, _, _, _ in _FIELDS:
            if f != form or name == "record_id":
                continue
            cols.extend(_checkbox_columns() if name == "salv_agents" else [name])
        cols.append(f"{form}_complete")
    return cols


def build(site: SiteInfo, t: dict[str, pl.DataFrame]) -> Export:
    """Render a site's truth tables as a REDCap raw export and its data dictionary."""
    dag = site.site_id.lower()
    keys = t["patients"]["patient_key"]
    pat = t["patients"].join(t["follow_up"], on="patient_key", suffix="_fu")
    base = pat.select(
        pl.col("patient_key").alias(REF),
        pl.col("patient_key"),
        pl.lit(None, pl.String).alias("redcap_repeat_instrument"),
        pl.lit(None, pl.String).alias("redcap_repeat_instance"),
        coded("sex", SEX).alias("sex"),
        pl.col("birth_year").cast(pl.String).alias("yob"),
        num("age_at_index_years", 1).alias("age_car_t"),
        iso("diagnosis_date").alias("dx_date"),
        pl.col("diagnosis_icd10").alias("dx_icd10"),
        coded("ph_status", PH).alias("ph_status"),
        coded("kmt2a_rearranged", YNU).alias("kmt2a"),
        coded("cytogenetic_risk", CYTO).alias("cyto_risk"),
        pl.col("n_prior_lines").cast(pl.String).alias("prior_lines"),
        coded("prior_allohct", YN).alias("prior_hct"),
        coded("prior_blinatumomab", YN).alias("prior_blina"),
        coded("prior_blinatumomab_response", BLIN_RESP).alias("prior_blina_resp"),
        coded("prior_inotuzumab", YN).alias("prior_ino"),
        pl.lit("2").alias("baseline_complete"),
        iso("data_cut_date").alias("fu_datacut"),
        iso("last_contact_date").alias("fu_last_contact"),
        coded("vital_status", VITAL).alias("fu_vital"),
        iso("death_date").alias("fu_death_date"),
        coded("cause_of_death", COD).alias("fu_cod"),
        pl.lit("2").alias("follow_up_complete"),
        pl.lit(0).alias("_form"),
        pl.lit(0).alias("_inst"),
    )

    def repeating(
        frame: pl.DataFrame, form: str, id_col: str, exprs: list[pl.Expr]
    ) -> pl.DataFrame:
        return instrument_rows(frame, keys, form, id_col, exprs, FORMS.index(form))

    inf = repeating(
        t["car_t_infusions"],
        "car_t_infusion",
        "infusion_id",
        [
            pl.col("infusion_number").cast(pl.String).alias("inf_no"),
            iso("infusion_date").alias("inf_date"),
            coded("product", PRODUCT).alias("inf_product"),
            pl.when(pl.col("product") == "other_cd19_car_t")
            .then(pl.lit("CD19 CAR-T (academic)"))
            .alias("inf_product_oth"),
            coded("setting", SETTING).alias("inf_setting"),
            pl.col("trial_id").alias("inf_nct"),
            num(pl.col("dose_value") / 1e6, 2).alias("inf_dose"),
            coded("dose_unit", DOSE_UNIT).alias("inf_dose_unit"),
            coded("lymphodepletion_regimen", LD).alias("inf_ld"),
            coded("bridging_therapy", YN).alias("inf_bridge"),
            coded("reinfusion_reason", REINF).alias("inf_reason"),
            pl.when(pl.col("pre_bm_blast_qualifier") == "LT")
            .then(pl.concat_str(pl.lit("<"), num("pre_bm_blast_pct", 1)))
            .otherwise(num("pre_bm_blast_pct", 1))
            .alias("pre_bm_blasts"),
            pl.when(pl.col("is_index_infusion"))
            .then(pl.coalesce(num(pl.col("pre_mrd_value") * 100, 4), pl.lit("UNK")))
            .alias("pre_mrd_pct"),
            coded("pre_emd_present", YN).alias("pre_emd"),
            coded("pre_cns_status", CNS).alias("pre_cns"),
            coded("disease_burden", BURDEN).alias("pre_burden"),
            coded("cd19_status_pre", CD19).alias("pre_cd19"),
        ],
    )
    asm = repeating(
        t["disease_assessments"],
        "disease_assessment",
        "assessment_id",
        [
            iso("assessment_date").alias("asmt_date"),
            pl.col("timepoint_label").alias("asmt_tp"),
            coded("specimen", SPECIMEN).alias("asmt_specimen"),
            pl.when(pl.col("bm_blast_qualifier") == "LT")
            .then(pl.concat_str(pl.lit("<"), num("bm_blast_pct", 1)))
            .otherwise(num("bm_blast_pct", 1))
            .alias("asmt_blasts"),
            num("anc_per_ul", 0).alias("asmt_anc"),
            num("platelets_per_ul", 0).alias("asmt_plt"),
            num(pl.col("mrd_value") * 100, 4).alias("asmt_mrd_pct"),
            coded("mrd_method", MRD_METHOD).alias("asmt_mrd_method"),
            coded("mrd_status", MRD_STATUS).alias("asmt_mrd_status"),
            coded("emd_present", YN).alias("asmt_emd"),
            coded("cd19_status", CD19).alias("asmt_cd19"),
            coded("response", RESPONSE).alias("asmt_response"),
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
            num("bm_blast_pct_at_event", 1).alias("prog_blasts"),
            iso("remission_date").alias("prog_cr_date"),
        ],
    )
    # one instance per salvage line; a combination line ticks several checkboxes
    sal_rows = t["salvage_treatments"].with_columns(coded("agent", AGENTS).alias("_code"))
    lines = sal_rows.group_by(["patient_key", "line_number"], maintain_order=True).agg(
        pl.col("salvage_id").first(),
        pl.col("start_date").first(),
        pl.col("best_response").first(),
        pl.col("best_response_date").first(),
        pl.col("_code"),
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
                for code in AGENTS.values()
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
            coded("hct_type", HCT_TYPE).alias("hct_type"),
            coded("donor_type", DONOR).alias("hct_donor"),
            coded("intent", INTENT).alias("hct_intent"),
            coded("disease_status_at_hct", HCT_STATUS).alias("hct_status"),
        ],
    )
    flat = pl.concat([base, inf, asm, prog, sal, hct], how="diagonal_relaxed")
    flat = by_patient(flat.sort(["_form", "_inst"], maintain_order=True), keys)
    flat = flat.with_columns(
        record_id().alias("record_id"), pl.lit(dag).alias("redcap_data_access_group")
    ).select([*columns(), REF])
    return Export(
        site_id=site.site_id,
        layout="redcap",
        sheets=[Sheet(RECORDS, flat)],
        static_files={DICTIONARY: data_dictionary(), "README.md": readme(site)},
    )


def instrument_rows(
    frame: pl.DataFrame,
    keys: pl.Series,
    form: str,
    id_col: str,
    exprs: list[pl.Expr],
    form_index: int,
) -> pl.DataFrame:
    """Rows of a repeating instrument: instance 1, 2, … per record, in the site's patient order
    (``_form`` and ``_inst`` order the flat export; ``REF`` names the truth row)."""
    frame = by_patient(frame.with_row_index("_o"), keys).with_columns(
        (pl.int_range(pl.len()).over("patient_key") + 1).alias("_inst")
    )
    return frame.select(
        pl.col(id_col).alias(REF),
        pl.col("patient_key"),
        pl.lit(form).alias("redcap_repeat_instrument"),
        pl.col("_inst").cast(pl.String).alias("redcap_repeat_instance"),
        *exprs,
        pl.lit("2").alias(f"{form}_complete"),
        pl.lit(form_index).alias("_form"),
        pl.col("_inst"),
    )


def instrument_of(field_name: str) -> str:
    """The REDCap form a field belongs to (checkbox columns belong to their field's form)."""
    stem = field_name.split("___")[0]
    for name, form, _, _, _ in _FIELDS:
        if name == stem:
            return form
    raise KeyError(field_name)


def data_dictionary() -> str:
    """The project's data dictionary in REDCap's metadata CSV format."""
    notes = {
        "pre_bm_blasts": "Number; '<1' when the report says below 1%",
        "asmt_blasts": "Number; '<1' when the report says below 1%",
        "pre_mrd_pct": "Percent of cells (0.01 = 10^-4); UNK if not done",
        "asmt_mrd_pct": "Percent of cells (0.01 = 10^-4); blank when MRD negative",
        "inf_dose": "In millions (x10^6) of CAR+ cells, per kg or total as per unit",
        "yob": "Year only (no full birth date is collected)",
    }
    branching = {
        "prior_blina_resp": "[prior_blina] = '1'",
        "inf_product_oth": "[inf_product] = '99'",
        "inf_nct": "[inf_setting] = '2'",
        "inf_reason": "[inf_no] > 1",
        "prog_cr_date": "[prog_type] = '1'",
        "fu_death_date": "[fu_vital] = '0'",
        "fu_cod": "[fu_vital] = '0'",
    }
    return dictionary_csv(_FIELDS, _LABELS, notes, branching, identifiers=("record_id", "inf_date"))


def dictionary_csv(
    fields: list[tuple[str, str, str, str, str]],
    labels: dict[str, dict[str, str]],
    notes: dict[str, str],
    branching: dict[str, str],
    *,
    identifiers: tuple[str, ...],
) -> str:
    """A REDCap metadata CSV: one row per (field, form, type, label, validation)."""
    header = [
        "Variable / Field Name",
        "Form Name",
        "Section Header",
        "Field Type",
        "Field Label",
        "Choices, Calculations, OR Slider Labels",
        "Field Note",
        "Text Validation Type OR Show Slider Number",
        "Text Validation Min",
        "Text Validation Max",
        "Identifier?",
        "Branching Logic (Show field only if...)",
        "Required Field?",
        "Custom Alignment",
        "Question Number (surveys only)",
        "Matrix Group Name",
        "Matrix Ranking?",
        "Field Annotation",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for name, form, ftype, label, validation in fields:
        choices = ""
        if ftype in ("radio", "dropdown", "checkbox"):
            choices = " | ".join(f"{code}, {text}" for code, text in labels[name].items())
        writer.writerow(
            [
                name,
                form,
                "",
                ftype,
                label,
                choices,
                notes.get(name, ""),
                validation,
                "",
                "",
                "",
                branching.get(name, ""),
                "y" if name in identifiers else "",
                "",
                "",
                "",
                "",
                "",
            ]
        )
    return buf.getvalue()


def readme(site: SiteInfo) -> str:
    return render_template("redcap_README.md", site_id=site.site_id, dag=site.site_id.lower())
