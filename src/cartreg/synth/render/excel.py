"""Excel layout: a German-language workbook kept by hand, one sheet per topic.

Dates are day-first (``TT.MM.JJJJ``): most are real date cells, some were typed as text. Lab
values are text with a decimal comma (``12,5``) and ``<1``-style qualifiers. Lineage of a row
is ``<file>#<sheet>`` and its spreadsheet row number (header = row 1).
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

WORKBOOK = "CAR-T_Register_Export.xlsx"
MAX_ROWS = 1_048_575  # Excel's row limit minus the header

JA_NEIN = {"Y": "ja", "N": "nein", "UNKNOWN": "unbekannt"}
SEX = {"M": "m", "F": "w"}
PH = {
    "BCR_ABL1_POS": "positiv",
    "BCR_ABL1_NEG": "negativ",
    "PH_LIKE": "Ph-like",
    "UNKNOWN": "unbekannt",
}
CYTO = {"STANDARD": "Standard", "HIGH": "Hochrisiko", "UNKNOWN": "unbekannt"}
BLIN = {
    "RESPONDER": "Ansprechen",
    "NONRESPONDER": "kein Ansprechen",
    "NOT_EVALUABLE": "nicht beurteilbar",
}
PRODUCT = {
    "tisagenlecleucel": "Kymriah",
    "brexucabtagene_autoleucel": "Tecartus",
    "obecabtagene_autoleucel": "Aucatzyl",
    "msk_19_28z": "19-28z (Studie)",
    "hucart19": "huCART19 (Studie)",
    "other_cd19_car_t": "CD19-CAR-T (Studie)",
}
SETTING = {"COMMERCIAL": "kommerziell", "CLINICAL_TRIAL": "Studie", "EXPANDED_ACCESS": "Härtefall"}
DOSE_UNIT = {
    "CAR_POS_CELLS_PER_KG": "x10^6 CAR+ Zellen/kg",
    "CAR_POS_CELLS_TOTAL": "x10^6 CAR+ Zellen gesamt",
}
LD = {
    "FLU_CY": "Flu/Cy",
    "CY_ONLY": "Cyclophosphamid",
    "BENDAMUSTINE": "Bendamustin",
    "NONE": "keine",
    "OTHER": "andere",
}
REINF = {
    "B_CELL_RECOVERY": "B-Zell-Recovery",
    "MRD": "MRD",
    "MORPHOLOGIC_RELAPSE": "Rezidiv",
    "NONRESPONSE": "kein Ansprechen",
    "OTHER": "andere",
}
CNS = {"CNS1": "ZNS1", "CNS2": "ZNS2", "CNS3": "ZNS3"}
BURDEN = {"HIGH": "hoch", "LOW": "niedrig"}
CD19 = {
    "POS": "positiv",
    "DIM_PARTIAL": "schwach/partiell",
    "NEG": "negativ",
    "UNKNOWN": "unbekannt",
}
SPECIMEN = {
    "BONE_MARROW": "Knochenmark",
    "PERIPHERAL_BLOOD": "peripheres Blut",
    "CSF": "Liquor",
    "EXTRAMEDULLARY_TISSUE": "extramedullär",
}
MRD_METHOD = {"FLOW": "Durchflusszytometrie", "NGS_IG_TR": "NGS"}
MRD_STATUS = {"NEG": "negativ", "POS": "positiv"}
RESPONSE = {
    "CR": "CR",
    "CRi": "CRi",
    "NR": "keine Remission",
    "RELAPSE": "Rezidiv",
    "NOT_EVALUATED": "nicht beurteilbar",
}
PROG_TYPE = {"RELAPSE_AFTER_CR": "Rezidiv nach CR", "REFRACTORY_NONRESPONSE": "refraktär"}
PROG_SITE = {
    "BM_ONLY": "Knochenmark",
    "BM_PLUS_EMD": "Knochenmark + extramedullär",
    "ISOLATED_CNS": "isoliert ZNS",
    "ISOLATED_EMD_OTHER": "isoliert extramedullär",
}
PHENO = {
    "CD19_POS": "CD19+",
    "CD19_DIM_PARTIAL": "CD19 schwach",
    "CD19_NEG": "CD19-",
    "LINEAGE_SWITCH": "Linienwechsel",
    "UNKNOWN": "unbekannt",
}
AGENT = {
    "blinatumomab": "Blinatumomab",
    "inotuzumab_ozogamicin": "Inotuzumab",
    "car_t_reinfusion": "CAR-T-Reinfusion",
    "new_cd19_car_t": "neues CD19-CAR-T",
    "cd22_car_t": "CD22-CAR-T",
    "hyper_cvad": "Hyper-CVAD",
    "flag_ida": "FLAG-Ida",
    "mini_hcvd": "Mini-Hyper-CVD",
    "venetoclax": "Venetoclax",
    "ponatinib": "Ponatinib",
    "clinical_trial_other": "Studie",
}
SALV_RESP = {
    "CR": "CR",
    "CRi": "CRi",
    "NR": "kein Ansprechen",
    "PD": "Progress",
    "NOT_EVALUATED": "nicht beurteilbar",
}
HCT_TYPE = {"ALLOGENEIC": "allogen", "AUTOLOGOUS": "autolog"}
DONOR = {
    "MSD": "Geschwister",
    "MUD": "Fremdspender",
    "MMUD": "Fremdspender (mismatch)",
    "HAPLO": "haploident",
    "CORD": "Nabelschnurblut",
}
INTENT = {"PRIOR_TO_INDEX": "vor CAR-T", "CONSOLIDATION": "Konsolidierung", "SALVAGE": "Salvage"}
HCT_STATUS = {
    "CR_MRD_NEG": "CR MRD-negativ",
    "CR_MRD_POS": "CR MRD-positiv",
    "ACTIVE_DISEASE": "aktive Erkrankung",
}
VITAL = {"ALIVE": "lebt", "DEAD": "verstorben"}
COD = {
    "PRIMARY_DISEASE": "Leukämie",
    "INFECTION": "Infektion",
    "CRS": "CRS",
    "ICANS": "ICANS",
    "GVHD": "GvHD",
    "HLH_IEC_HS": "HLH",
    "OTHER_TOXICITY": "andere Toxizität",
    "SECONDARY_MALIGNANCY": "Zweitmalignom",
    "OTHER": "sonstige",
}

PAT_ID = "Pat.-Nr."


def local_id() -> pl.Expr:
    return pl.col("patient_key").str.split("-").list.slice(1).list.join("-")


def _blasts(value: str, qualifier: str) -> pl.Expr:
    return qualified(value, qualifier, comma=True)


def build(site: SiteInfo, t: dict[str, pl.DataFrame], *, seed: int = 0) -> Export:
    """Render a site's truth tables as a German workbook."""
    rng = np.random.default_rng(seed)
    keys = t["patients"]["patient_key"]

    def sheet(
        name: str, frame: pl.DataFrame, exprs: list[pl.Expr], ref: str, dates: list[str]
    ) -> Sheet:
        frame = by_patient(frame, keys)
        out = frame.select(local_id().alias(PAT_ID), *exprs, pl.col(ref).alias(REF))
        # a quarter of the dates were typed by hand as text TT.MM.JJJJ
        overrides = {d: typed_as_text(out, d, rng, 0.25, "%d.%m.%Y") for d in dates}
        if out.height > MAX_ROWS:
            from cartreg.errors import InputError

            raise InputError(
                f"sheet {name} would have {out.height} rows, more than Excel allows",
                hint="use fewer patients per site or leave the excel layout out (--layouts)",
            )
        return Sheet(WORKBOOK, out, sheet=name, text_overrides=overrides)

    pat = sheet(
        "Patienten",
        t["patients"],
        [
            coded("sex", SEX).alias("Geschlecht"),
            pl.col("birth_year").alias("Geburtsjahr"),
            pl.col("age_at_index_years").alias("Alter bei CAR-T (Jahre)"),
            pl.col("diagnosis_date").alias("Erstdiagnose"),
            pl.col("diagnosis_icd10").alias("ICD-10"),
            coded("ph_status", PH).alias("Ph/BCR-ABL1"),
            coded("kmt2a_rearranged", JA_NEIN).alias("KMT2A-Rearrangement"),
            coded("cytogenetic_risk", CYTO).alias("Zytogenetik"),
            pl.col("n_prior_lines").alias("Anzahl Vortherapien"),
            coded("prior_allohct", JA_NEIN).alias("allo-SZT vor CAR-T"),
            coded("prior_blinatumomab", JA_NEIN).alias("Blinatumomab vor CAR-T"),
            coded("prior_blinatumomab_response", BLIN).alias("Ansprechen Blinatumomab"),
            coded("prior_inotuzumab", JA_NEIN).alias("Inotuzumab vor CAR-T"),
        ],
        "patient_key",
        ["Erstdiagnose"],
    )
    inf = sheet(
        "CAR-T",
        t["car_t_infusions"],
        [
            pl.col("infusion_number").alias("Gabe Nr."),
            pl.col("infusion_date").alias("Datum CAR-T-Gabe"),
            coded("product", PRODUCT).alias("Produkt"),
            coded("setting", SETTING).alias("Rahmen"),
            pl.col("trial_id").alias("Studien-Nr."),
            num(pl.col("dose_value") / 1e6, 2, comma=True).alias("Dosis"),
            coded("dose_unit", DOSE_UNIT).alias("Einheit Dosis"),
            coded("lymphodepletion_regimen", LD).alias("Lymphodepletion"),
            coded("bridging_therapy", JA_NEIN).alias("Bridging"),
            coded("reinfusion_reason", REINF).alias("Grund Reinfusion"),
            _blasts("pre_bm_blast_pct", "pre_bm_blast_qualifier").alias("KM-Blasten vor LD (%)"),
            num(pl.col("pre_mrd_value") * 100, 4, comma=True).alias("MRD vor LD (%)"),
            coded("pre_emd_present", JA_NEIN).alias("EMD vor CAR-T"),
            coded("pre_cns_status", CNS).alias("ZNS-Status"),
            coded("disease_burden", BURDEN).alias("Krankheitslast"),
            coded("cd19_status_pre", CD19).alias("CD19 vor CAR-T"),
        ],
        "infusion_id",
        ["Datum CAR-T-Gabe"],
    )
    asm = sheet(
        "Verlauf",
        t["disease_assessments"],
        [
            pl.col("assessment_date").alias("Datum"),
            pl.col("timepoint_label").alias("Zeitpunkt"),
            coded("specimen", SPECIMEN).alias("Material"),
            _blasts("bm_blast_pct", "bm_blast_qualifier").alias("KM-Blasten (%)"),
            pl.col("anc_per_ul").cast(pl.Int64).alias("Neutrophile (/µl)"),
            pl.col("platelets_per_ul").cast(pl.Int64).alias("Thrombozyten (/µl)"),
            num(pl.col("mrd_value") * 100, 4, comma=True).alias("MRD (%)"),
            coded("mrd_method", MRD_METHOD).alias("MRD-Methode"),
            coded("mrd_status", MRD_STATUS).alias("MRD-Status"),
            coded("emd_present", JA_NEIN).alias("EMD"),
            coded("cd19_status", CD19).alias("CD19"),
            coded("response", RESPONSE).alias("Remissionsstatus"),
        ],
        "assessment_id",
        ["Datum"],
    )
    prog = sheet(
        "Progress",
        t["progression_events"],
        [
            pl.col("event_seq").alias("Ereignis Nr."),
            pl.col("progression_date").alias("Datum Progress"),
            coded("event_type", PROG_TYPE).alias("Art"),
            coded("site", PROG_SITE).alias("Lokalisation"),
            coded("antigen_phenotype", PHENO).alias("CD19-Phänotyp"),
            num("bm_blast_pct_at_event", 1, comma=True).alias("KM-Blasten (%)"),
            pl.col("remission_date").alias("Datum Remission"),
        ],
        "progression_id",
        ["Datum Progress", "Datum Remission"],
    )
    sal = sheet(
        "Salvage",
        t["salvage_treatments"],
        [
            pl.col("line_number").alias("Linie"),
            pl.col("start_date").alias("Beginn"),
            coded("agent", AGENT).alias("Substanz"),
            coded("best_response", SALV_RESP).alias("Bestes Ansprechen"),
            pl.col("best_response_date").alias("Datum Ansprechen"),
        ],
        "salvage_id",
        ["Beginn", "Datum Ansprechen"],
    )
    hct = sheet(
        "SZT",
        t["transplants"],
        [
            pl.col("hct_date").alias("Datum SZT"),
            coded("hct_type", HCT_TYPE).alias("Art"),
            coded("donor_type", DONOR).alias("Spender"),
            coded("intent", INTENT).alias("Indikation"),
            coded("disease_status_at_hct", HCT_STATUS).alias("Status bei SZT"),
        ],
        "hct_id",
        ["Datum SZT"],
    )
    fu = sheet(
        "Follow-up",
        t["follow_up"],
        [
            pl.col("data_cut_date").alias("Stichtag"),
            pl.col("last_contact_date").alias("Letzter Kontakt"),
            coded("vital_status", VITAL).alias("Status"),
            pl.col("death_date").alias("Todesdatum"),
            coded("cause_of_death", COD).alias("Todesursache"),
        ],
        "patient_key",
        ["Letzter Kontakt", "Todesdatum"],
    )
    return Export(
        site_id=site.site_id,
        layout="excel",
        sheets=[pat, inf, asm, prog, sal, hct, fu],
        static_files={"README.md": readme(site)},
    )


def readme(site: SiteInfo) -> str:
    return render_template("excel_README.md", site_id=site.site_id, workbook=WORKBOOK)
