"""French workbook layout: a registry kept by hand in Excel, with a long sheet of visits.

``registre_CAR-T.xlsx`` has three sheets: ``Patients`` (one row per patient), ``Perfusions``
(one row per CAR T infusion) and ``Visites``, one row per visit or event in time order: marrow
evaluations, the relapse itself, each salvage agent, transplants, the latest news and death.
The response to CAR T (the day-28 marrow) and the relapse are different rows, so the remission
date a relapse ends is never written. Dates are date cells, a quarter typed as text
``JJ/MM/AAAA``; numbers are text with a decimal comma; marrow blasts before lymphodepletion
are written ``<5`` whenever they were under 5%. No data cut-off column (the README gives it).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render.common import (
    REF,
    Export,
    Sheet,
    by_patient,
    coded,
    num,
    qualified,
    render_template,
    typed_as_text,
)
from cartreg.synth.render.site_truth import Tables, disease_status, restrict

WORKBOOK = "registre_CAR-T.xlsx"
PAT_ID = "N° patient"

OUI_NON = {"Y": "oui", "N": "non", "UNKNOWN": "inconnu"}
SEX = {"M": "H", "F": "F"}
PH = {
    "BCR_ABL1_POS": "positif",
    "BCR_ABL1_NEG": "négatif",
    "PH_LIKE": "Ph-like",
    "UNKNOWN": "inconnu",
}
CYTO = {"STANDARD": "standard", "HIGH": "haut risque", "UNKNOWN": "inconnu"}
BLIN = {
    "RESPONDER": "réponse",
    "NONRESPONDER": "pas de réponse",
    "NOT_EVALUABLE": "non évaluable",
}
PRODUCT = {
    "tisagenlecleucel": "Kymriah®",
    "brexucabtagene_autoleucel": "Tecartus®",
    "obecabtagene_autoleucel": "Aucatzyl®",
    "msk_19_28z": "19-28z (essai)",
    "hucart19": "huCART19 (essai)",
    "other_cd19_car_t": "CAR-T anti-CD19 académique (essai)",
}
SETTING = {
    "COMMERCIAL": "commercial",
    "CLINICAL_TRIAL": "essai clinique",
    "EXPANDED_ACCESS": "accès compassionnel",
}
DOSE_UNIT = {"CAR_POS_CELLS_PER_KG": "par kg", "CAR_POS_CELLS_TOTAL": "totale"}
LD = {
    "FLU_CY": "Flu/Cy",
    "CY_ONLY": "cyclophosphamide seul",
    "BENDAMUSTINE": "bendamustine",
    "NONE": "aucune",
    "OTHER": "autre",
}
REINF = {
    "B_CELL_RECOVERY": "réapparition des lymphocytes B",
    "MRD": "MRD",
    "MORPHOLOGIC_RELAPSE": "rechute morphologique",
    "NONRESPONSE": "non-réponse",
}
CNS = {"CNS1": "SNC1", "CNS2": "SNC2", "CNS3": "SNC3"}
CD19 = {"POS": "positif", "DIM_PARTIAL": "faible/partiel", "NEG": "négatif", "UNKNOWN": "inconnu"}
SPECIMEN = {
    "BONE_MARROW": "moelle",
    "PERIPHERAL_BLOOD": "sang",
    "CSF": "LCR",
    "EXTRAMEDULLARY_TISSUE": "biopsie extramédullaire",
}
MRD_METHOD = {"FLOW": "cytométrie", "NGS_IG_TR": "NGS"}
RESPONSE = {"CR": "RC", "CRi": "RCi", "NR": "échec", "RELAPSE": "rechute"}
PROG_TYPE = {"RELAPSE_AFTER_CR": "Rechute", "REFRACTORY_NONRESPONSE": "Réfractaire"}
PROG_SITE = {
    "BM_ONLY": "médullaire",
    "BM_PLUS_EMD": "médullaire et extramédullaire",
    "ISOLATED_CNS": "SNC isolée",
    "ISOLATED_EMD_OTHER": "extramédullaire isolée",
}
PHENO = {
    "CD19_POS": "CD19+",
    "CD19_DIM_PARTIAL": "CD19 faible",
    "CD19_NEG": "CD19-",
    "LINEAGE_SWITCH": "switch de lignée",
    "UNKNOWN": "non fait",
}
AGENT = {
    "blinatumomab": "Blincyto",
    "inotuzumab_ozogamicin": "Besponsa",
    "car_t_reinfusion": "réinjection CAR-T",
    "new_cd19_car_t": "nouveau CAR-T anti-CD19",
    "cd22_car_t": "CAR-T anti-CD22",
    "hyper_cvad": "hyper-CVAD",
    "flag_ida": "FLAG-Ida",
    "mini_hcvd": "mini-hyper-CVD",
    "venetoclax": "vénétoclax",
    "ponatinib": "ponatinib",
    "clinical_trial_other": "essai (autre)",
}
SALV_RESP = {
    "CR": "RC",
    "CRi": "RCi",
    "NR": "échec",
    "PD": "progression",
    "NOT_EVALUATED": "non évaluée",
}
DONOR = {
    "MSD": "géno-identique",
    "MUD": "phéno-identique 10/10",
    "MMUD": "phéno-identique 9/10",
    "HAPLO": "haplo-identique",
    "CORD": "sang placentaire",
}
INTENT = {
    "PRIOR_TO_INDEX": "avant CAR-T",
    "CONSOLIDATION": "consolidation",
    "SALVAGE": "rattrapage",
}
STATUS = {"PROGRESSION_FREE": "en rémission", "PROGRESSED": "rechute ou progression"}
COD = {
    "PRIMARY_DISEASE": "leucémie",
    "INFECTION": "infection",
    "CRS": "SRC",
    "ICANS": "ICANS",
    "GVHD": "GVH",
    "HLH_IEC_HS": "SAM/HLH",
    "OTHER_TOXICITY": "autre toxicité",
    "SECONDARY_MALIGNANCY": "second cancer",
    "OTHER": "autre",
}
TIMEPOINT = {"D28": "J28", "Relapse": "Rechute"}

VISIT_COLUMNS = (
    "Date",
    "Type",
    "Temps",
    "Prélèvement",
    "Blastes (%)",
    "MRD (%)",
    "Méthode MRD",
    "Réponse",
    "Site",
    "Phénotype CD19",
    "Ligne",
    "Traitement",
    "Meilleure réponse",
    "Date de réponse",
    "Donneur",
    "Indication",
    "Statut maladie",
    "Cause du décès",
)

EXPORTED: dict[str, set[str]] = {
    "patients": {"sex", "birth_year", "age_at_index_years", "diagnosis_date", "ph_status"}
    | {"kmt2a_rearranged", "cytogenetic_risk", "n_prior_lines", "prior_allohct"}
    | {"prior_blinatumomab", "prior_blinatumomab_response", "prior_inotuzumab"},
    "car_t_infusions": {"infusion_date", "product", "setting", "trial_id", "dose_value"}
    | {"dose_unit", "lymphodepletion_regimen", "bridging_therapy", "reinfusion_reason"}
    | {"pre_bm_blast_pct", "pre_bm_blast_qualifier", "pre_emd_present", "pre_cns_status"}
    | {"cd19_status_pre", "disease_burden"},
    "disease_assessments": {"assessment_date", "timepoint_label", "specimen", "bm_blast_pct"}
    | {"bm_blast_qualifier", "mrd_value", "mrd_method", "response"},
    "progression_events": {"progression_date", "event_type", "site", "antigen_phenotype"}
    | {"remission_date"},
    "salvage_treatments": {"start_date", "agent", "best_response", "best_response_date"},
    "transplants": {"hct_date", "hct_type", "donor_type", "intent"},
    "follow_up": {"data_cut_date", "last_contact_date", "vital_status", "death_date"}
    | {"cause_of_death", "disease_status", "disease_status_date"},
}


def _below_five(t: Tables) -> pl.DataFrame:
    """Infusions with fewer than 5% marrow blasts before lymphodepletion: written "<5"."""
    blasts = pl.col("pre_bm_blast_pct")
    return t["car_t_infusions"].with_columns(
        pl.when(blasts < 5).then(pl.lit(5.0)).otherwise(blasts).alias("pre_bm_blast_pct"),
        pl.when(blasts < 5)
        .then(pl.lit("LT"))
        .otherwise(pl.col("pre_bm_blast_qualifier"))
        .alias("pre_bm_blast_qualifier"),
    )


def known(t: Tables) -> Tables:
    """What a clean ingest of this workbook gives."""
    t = disease_status(t)
    t["car_t_infusions"] = _below_five(t)
    t["disease_assessments"] = t["disease_assessments"].with_columns(
        pl.col("timepoint_label").replace(TIMEPOINT)
    )
    return restrict(t, EXPORTED)


def local_id() -> pl.Expr:
    return pl.col("patient_key").str.split("-").list.last()


def _blasts(value: str, qualifier: str) -> pl.Expr:
    return qualified(value, qualifier, comma=True)


def _typed_text(frame: pl.DataFrame, col: str, rng: np.random.Generator) -> pl.Series:
    """A quarter of a date column's cells typed by hand as text ``JJ/MM/AAAA``."""
    return typed_as_text(frame, col, rng, 0.25, "%d/%m/%Y")


def _visits(t: Tables) -> pl.DataFrame:
    """The long Visites sheet: every event of a patient as one row, in time order."""
    empty = {c: pl.lit(None, dtype=pl.String) for c in VISIT_COLUMNS}
    empty |= {c: pl.lit(None, dtype=pl.Date) for c in ("Date", "Date de réponse")}
    empty["Ligne"] = pl.lit(None, dtype=pl.Int64)

    def rows(
        frame: pl.DataFrame, ref: str, kind: pl.Expr, order: int, **cols: pl.Expr
    ) -> pl.DataFrame:
        values = {**empty, **cols}
        return frame.select(
            pl.col("patient_key"),
            pl.col(ref).alias(REF),
            *[values[c].alias(c) if c != "Type" else kind.alias(c) for c in VISIT_COLUMNS],
            pl.lit(order).alias("_order"),
        )

    follow = disease_status(t)["follow_up"]
    parts = [
        rows(
            t["disease_assessments"],
            "assessment_id",
            pl.lit("Évaluation"),
            1,
            Date=pl.col("assessment_date"),
            Temps=pl.col("timepoint_label").replace(TIMEPOINT),
            **{
                "Prélèvement": coded("specimen", SPECIMEN),
                "Blastes (%)": _blasts("bm_blast_pct", "bm_blast_qualifier"),
                "MRD (%)": num(pl.col("mrd_value") * 100, 4, comma=True),
                "Méthode MRD": coded("mrd_method", MRD_METHOD),
                "Réponse": coded("response", RESPONSE),
            },
        ),
        rows(
            t["progression_events"],
            "progression_id",
            coded("event_type", PROG_TYPE),
            2,
            Date=pl.col("progression_date"),
            Site=coded("site", PROG_SITE),
            **{"Phénotype CD19": coded("antigen_phenotype", PHENO)},
        ),
        rows(
            t["salvage_treatments"],
            "salvage_id",
            pl.lit("Rattrapage"),
            3,
            Date=pl.col("start_date"),
            Ligne=pl.col("line_number"),
            Traitement=coded("agent", AGENT),
            **{
                "Meilleure réponse": coded("best_response", SALV_RESP),
                "Date de réponse": pl.col("best_response_date"),
            },
        ),
        rows(
            t["transplants"],
            "hct_id",
            pl.lit("Greffe"),
            4,
            Date=pl.col("hct_date"),
            Donneur=coded("donor_type", DONOR),
            Indication=coded("intent", INTENT),
        ),
        rows(
            follow,
            "patient_key",
            pl.when(pl.col("vital_status") == "DEAD")
            .then(pl.lit("Décès"))
            .otherwise(pl.lit("Dernières nouvelles")),
            5,
            Date=pl.coalesce("death_date", "last_contact_date"),
            **{
                "Statut maladie": coded("disease_status", STATUS),
                "Cause du décès": coded("cause_of_death", COD),
            },
        ),
    ]
    return pl.concat(parts, how="vertical_relaxed").sort(
        ["patient_key", "Date", "_order"], nulls_last=True, maintain_order=True
    )


def build(site: SiteInfo, t: Tables, *, seed: int = 0) -> Export:
    """Render a site's truth tables as the French workbook."""
    rng = np.random.default_rng(seed)
    keys = t["patients"]["patient_key"]

    def sheet(
        name: str, frame: pl.DataFrame, exprs: list[pl.Expr], ref: str, dates: list[str]
    ) -> Sheet:
        frame = by_patient(frame, keys)
        out = frame.select(local_id().alias(PAT_ID), *exprs, pl.col(ref).alias(REF))
        overrides = {d: _typed_text(out, d, rng) for d in dates}
        return Sheet(WORKBOOK, out, sheet=name, text_overrides=overrides)

    patients = sheet(
        "Patients",
        t["patients"],
        [
            coded("sex", SEX).alias("Sexe"),
            pl.col("birth_year").alias("Année de naissance"),
            pl.col("age_at_index_years").alias("Âge à la perfusion (ans)"),
            pl.col("diagnosis_date").alias("Date du diagnostic"),
            coded("ph_status", PH).alias("Chromosome Ph"),
            coded("kmt2a_rearranged", OUI_NON).alias("Réarrangement KMT2A"),
            coded("cytogenetic_risk", CYTO).alias("Risque cytogénétique"),
            pl.col("n_prior_lines").alias("Nombre de lignes antérieures"),
            coded("prior_allohct", OUI_NON).alias("Allogreffe antérieure"),
            coded("prior_blinatumomab", OUI_NON).alias("Blinatumomab antérieur"),
            coded("prior_blinatumomab_response", BLIN).alias("Réponse au blinatumomab"),
            coded("prior_inotuzumab", OUI_NON).alias("Inotuzumab antérieur"),
        ],
        "patient_key",
        ["Date du diagnostic"],
    )
    infusions = sheet(
        "Perfusions",
        _below_five(t),
        [
            pl.col("infusion_number").alias("N° perfusion"),
            pl.col("infusion_date").alias("Date de perfusion"),
            coded("product", PRODUCT).alias("Produit"),
            coded("setting", SETTING).alias("Cadre"),
            pl.col("trial_id").alias("N° essai"),
            num(pl.col("dose_value") / 1e6, 2, comma=True).alias("Dose (x10^6 cellules CAR+)"),
            coded("dose_unit", DOSE_UNIT).alias("Unité de dose"),
            coded("lymphodepletion_regimen", LD).alias("Lymphodéplétion"),
            coded("bridging_therapy", OUI_NON).alias("Bridge"),
            coded("reinfusion_reason", REINF).alias("Motif de réinjection"),
            _blasts("pre_bm_blast_pct", "pre_bm_blast_qualifier").alias(
                "Blastes médullaires avant LD (%)"
            ),
            coded("pre_emd_present", OUI_NON).alias("Atteinte extramédullaire"),
            coded("pre_cns_status", CNS).alias("Statut SNC"),
            coded("cd19_status_pre", CD19).alias("CD19 avant CAR-T"),
        ],
        "infusion_id",
        ["Date de perfusion"],
    )
    visits = by_patient(_visits(t), keys)
    visit_sheet = Sheet(
        WORKBOOK,
        visits.select(local_id().alias(PAT_ID), *VISIT_COLUMNS, REF),
        sheet="Visites",
    )
    visit_sheet.text_overrides = {
        d: _typed_text(visit_sheet.frame, d, rng) for d in ("Date", "Date de réponse")
    }
    return Export(
        site_id=site.site_id,
        layout="classeur",
        sheets=[patients, infusions, visit_sheet],
        static_files={"README.md": readme(site)},
    )


def readme(site: SiteInfo) -> str:
    return render_template("classeur_README.md", site_id=site.site_id, workbook=WORKBOOK)


def sheet_of(export: Export, table: str) -> tuple[Sheet, str]:
    """The rendered sheet and the source_file of the rows of a CDM table."""
    name = {"patients": "Patients", "car_t_infusions": "Perfusions"}.get(table, "Visites")
    sheet = export.sheet(WORKBOOK, name)
    return sheet, sheet.source_file
