"""De-identified JSON layout: one JSON document, a subject per array element, and one timeline.

``export_cart_registry.json`` is ``{"export": {...}, "subjects": [...]}``: the export block
names the data cut, each subject has its prior therapies as an **array of strings**, every
event (infusion, marrow, relapse, salvage line, transplant) as an element of one ``timeline``
array with a day offset from the first CAR T infusion and a type, and a status block (the
latest follow-up: vital status and whether any progression happened). No calendar dates, no
remission field, no disease burden. Lineage is the subject's 1-based position in the array.
"""

from __future__ import annotations

import json

import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render.common import REF, Export, Sheet, by_patient, render_template
from cartreg.synth.render.deid import sorted_struct as _struct
from cartreg.synth.render.site_truth import Tables, disease_status, restrict

DOCUMENT = "export_cart_registry.json"
RECORDS_KEY = "subjects"
EXPORT_BLOCK = {
    "generated": "2025-07-01",
    "data_cut": "2025-06-30",
    "time_origin": "first CD19 CAR T infusion = day 0",
    "deidentification": "HIPAA Safe Harbor: no dates, no identifiers",
}
PRIOR = {
    "prior_allohct": "allo-HSCT",
    "prior_blinatumomab": "blinatumomab",
    "prior_inotuzumab": "inotuzumab ozogamicin",
}
PRODUCT = {
    "tisagenlecleucel": "tisagenlecleucel",
    "brexucabtagene_autoleucel": "brexucabtagene autoleucel",
    "obecabtagene_autoleucel": "obecabtagene autoleucel",
    "msk_19_28z": "19-28z",
    "hucart19": "huCART19",
    "other_cd19_car_t": "CD19 CAR T (academic)",
}
PH = {"BCR_ABL1_POS": "positive", "BCR_ABL1_NEG": "negative", "PH_LIKE": "Ph-like"}
PH |= {"UNKNOWN": "unknown"}
YNU = {"Y": "yes", "N": "no", "UNKNOWN": "unknown"}
SPECIMEN = {
    "BONE_MARROW": "bone marrow",
    "PERIPHERAL_BLOOD": "blood",
    "CSF": "CSF",
    "EXTRAMEDULLARY_TISSUE": "extramedullary",
}
KIND = {"RELAPSE_AFTER_CR": "relapse", "REFRACTORY_NONRESPONSE": "refractory"}
SITE = {
    "BM_ONLY": "marrow",
    "BM_PLUS_EMD": "marrow + extramedullary",
    "ISOLATED_CNS": "CNS only",
    "ISOLATED_EMD_OTHER": "extramedullary only",
}
CD19 = {
    "CD19_POS": "positive",
    "CD19_DIM_PARTIAL": "dim",
    "CD19_NEG": "negative",
    "LINEAGE_SWITCH": "lineage switch",
    "UNKNOWN": "not tested",
}
AGENT = {
    "blinatumomab": "blinatumomab",
    "inotuzumab_ozogamicin": "inotuzumab",
    "car_t_reinfusion": "CAR T reinfusion",
    "new_cd19_car_t": "new CD19 CAR T",
    "cd22_car_t": "CD22 CAR T",
    "hyper_cvad": "hyper-CVAD",
    "flag_ida": "FLAG-IDA",
    "mini_hcvd": "mini-hyper-CVD",
    "venetoclax": "venetoclax",
    "ponatinib": "ponatinib",
    "clinical_trial_other": "trial (other)",
}

EXPORTED: dict[str, set[str]] = {
    "patients": {"sex", "birth_year", "age_at_index_years", "diagnosis_date", "ph_status"}
    | {"kmt2a_rearranged", "n_prior_lines", "prior_allohct", "prior_blinatumomab"}
    | {"prior_inotuzumab"},
    "car_t_infusions": {"infusion_date", "product", "setting", "trial_id", "bridging_therapy"}
    | {"reinfusion_reason", "pre_bm_blast_pct", "pre_bm_blast_qualifier", "pre_emd_present"}
    | {"disease_burden"},
    "disease_assessments": {"assessment_date", "timepoint_label", "specimen", "bm_blast_pct"}
    | {"bm_blast_qualifier", "mrd_value", "mrd_method", "response"},
    "progression_events": {"progression_date", "event_type", "site", "antigen_phenotype"}
    | {"remission_date"},
    "salvage_treatments": {"start_date", "agent", "best_response", "best_response_date"},
    "transplants": {"hct_date", "hct_type", "donor_type", "intent"},
    "follow_up": {"data_cut_date", "last_contact_date", "vital_status", "death_date"}
    | {"cause_of_death", "disease_status", "disease_status_date"},
}


def known(t: Tables) -> Tables:
    """What a clean ingest of this export gives (the age is reported in whole years)."""
    t = disease_status(t)
    t["patients"] = t["patients"].with_columns(pl.col("age_at_index_years").floor())
    return restrict(t, EXPORTED)


def _blasts(value: str, qualifier: str) -> pl.Expr:
    text = pl.col(value).round(1).cast(pl.String).str.replace(r"\.0$", "")
    return pl.when(pl.col(qualifier) == "LT").then(pl.concat_str(pl.lit("<"), text)).otherwise(text)


def _events(t: Tables) -> pl.DataFrame:
    """Every event of every patient as one timeline element (all elements share one shape)."""
    text, whole, flag = pl.String(), pl.Int64(), pl.Boolean()
    shape: dict[str, pl.DataType] = {
        "day": whole,
        "event": text,
        "year": whole,
        "product": text,
        "setting": text,
        "trial": text,
        "bridging": flag,
        "reason": text,
        "marrow_blasts_before": text,
        "emd_before": flag,
        "timepoint": text,
        "specimen": text,
        "blasts": text,
        "mrd": pl.Float64(),
        "mrd_method": text,
        "response": text,
        "kind": text,
        "site": text,
        "cd19": text,
        "line": whole,
        "agents": pl.List(pl.String),
        "best_response": text,
        "best_response_day": whole,
        "donor": text,
        "intent": text,
    }

    def events(frame: pl.DataFrame, order: int, **fields: pl.Expr) -> pl.DataFrame:
        element = _struct(
            **{k: fields.get(k, pl.lit(None)).cast(dtype) for k, dtype in shape.items()}
        )
        return frame.select(
            "patient_key",
            pl.col("day").alias("_day"),
            pl.lit(order).alias("_o"),
            element.alias("e"),
        )

    yes = {"Y": True, "N": False}
    infusions = t["car_t_infusions"].rename({"infusion_day": "day"})
    assessments = t["disease_assessments"].rename({"assessment_day": "day"})
    progressions = t["progression_events"].rename({"progression_day": "day"})
    lines = (
        t["salvage_treatments"]
        .group_by(["patient_key", "line_number"], maintain_order=True)
        .agg(
            pl.col("start_day").first().alias("day"),
            pl.col("agent").replace(AGENT),
            pl.col("best_response").first(),
            pl.col("best_response_day").first(),
        )
    )
    transplants = t["transplants"].rename({"hct_day": "day"})
    parts = [
        events(
            infusions,
            0,
            day=pl.col("day"),
            event=pl.lit("cart_infusion"),
            year=pl.col("infusion_year"),
            product=pl.col("product").replace(PRODUCT),
            setting=pl.col("setting").str.to_lowercase().str.replace("_", " "),
            trial=pl.col("trial_id"),
            bridging=pl.col("bridging_therapy").replace_strict(yes, default=None),
            reason=pl.col("reinfusion_reason").str.to_lowercase().str.replace_all("_", " "),
            marrow_blasts_before=_blasts("pre_bm_blast_pct", "pre_bm_blast_qualifier"),
            emd_before=pl.col("pre_emd_present").replace_strict(yes, default=None),
        ),
        events(
            assessments,
            1,
            day=pl.col("day"),
            event=pl.lit("marrow"),
            timepoint=pl.col("timepoint_label"),
            specimen=pl.col("specimen").replace(SPECIMEN),
            blasts=_blasts("bm_blast_pct", "bm_blast_qualifier"),
            mrd=pl.col("mrd_value"),
            mrd_method=pl.col("mrd_method").replace({"FLOW": "flow", "NGS_IG_TR": "NGS"}),
            response=pl.col("response"),
        ),
        events(
            progressions,
            2,
            day=pl.col("day"),
            event=pl.lit("progression"),
            kind=pl.col("event_type").replace(KIND),
            site=pl.col("site").replace(SITE),
            cd19=pl.col("antigen_phenotype").replace(CD19),
        ),
        events(
            lines,
            3,
            day=pl.col("day"),
            event=pl.lit("salvage"),
            line=pl.col("line_number"),
            agents=pl.col("agent"),
            best_response=pl.col("best_response"),
            best_response_day=pl.col("best_response_day"),
        ),
        events(
            transplants,
            4,
            day=pl.col("day"),
            event=pl.lit("allo_hct"),
            donor=pl.col("donor_type"),
            intent=pl.col("intent").str.to_lowercase(),
        ),
    ]
    return (
        pl.concat(parts)
        .sort(["patient_key", "_day", "_o"], nulls_last=True, maintain_order=True)
        .group_by("patient_key", maintain_order=True)
        .agg(pl.col("e").alias("timeline"))
    )


def build(site: SiteInfo, t: Tables) -> Export:
    """Render a site's truth tables as the JSON document."""
    keys = t["patients"]["patient_key"]
    follow = disease_status(t)["follow_up"]
    prior = [pl.when(pl.col(c) == "Y").then(pl.lit(name)) for c, name in PRIOR.items()]
    pat = (
        t["patients"]
        .join(follow, on="patient_key", suffix="_fu")
        .join(_events(t), on="patient_key", how="left")
    )
    record = _struct(
        subject_id=pl.col("patient_key").str.split("-").list.last(),
        sex=pl.col("sex"),
        year_of_birth=pl.col("birth_year"),
        age_at_cart_years=pl.col("age_at_index_years").floor().cast(pl.Int64),
        diagnosis=_struct(
            day=pl.col("diagnosis_day"),
            ph=pl.col("ph_status").replace(PH),
            kmt2a=pl.col("kmt2a_rearranged").replace(YNU),
        ),
        prior_lines=pl.col("n_prior_lines"),
        prior_therapies=pl.concat_list(prior).list.drop_nulls(),
        timeline=pl.col("timeline"),
        status=_struct(
            as_of_day=pl.col("last_contact_day"),
            vital=pl.col("vital_status").str.to_lowercase(),
            progression_since_cart=pl.col("disease_status") == "PROGRESSED",
            death_day=pl.col("death_day"),
            cause_of_death=pl.col("cause_of_death").str.to_lowercase().str.replace_all("_", " "),
        ),
    )
    lines = by_patient(pat, keys).select(
        record.struct.json_encode().alias("_json"), pl.col("patient_key").alias(REF)
    )
    envelope = (
        '{"export": '
        + json.dumps(EXPORT_BLOCK, sort_keys=True)
        + f', "{RECORDS_KEY}": [\n@RECORDS@\n]}}\n'
    )
    return Export(
        site_id=site.site_id,
        layout="jsondeid",
        sheets=[Sheet(DOCUMENT, lines, header_rows=0, envelope=envelope)],
        static_files={"README.md": readme(site)},
    )


def readme(site: SiteInfo) -> str:
    return render_template("jsondeid_README.md", site_id=site.site_id, document=DOCUMENT)


def sheet_of(export: Export, table: str) -> tuple[Sheet, str]:
    """Every table's rows come from the subject's element: its 1-based position."""
    return export.sheet(DOCUMENT), DOCUMENT
