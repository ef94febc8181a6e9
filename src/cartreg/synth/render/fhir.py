"""FHIR layout: an HL7 FHIR R4-style ``Bundle`` (``bundle.json``), as an EHR's FHIR export or a
research platform built on FHIR would send it. Written from the simulator's truth, not copied
from any hospital's export.

Resources, linked by references (``Patient/<id>``, ``Condition/<id>``):

* ``Patient``: id (the study number), a hospital MRN in ``identifier`` and a ``name`` (both
  must never reach the registry), ``gender``, ``birthDate`` as a year, ``deceasedDateTime`` or
  ``deceasedBoolean``;
* ``Condition``: the diagnosis (ICD-10, onset) and each progression after CAR T (``code.text``
  relapse or refractory);
* ``Procedure``: each CAR T infusion (``code.text`` the product) and each allogeneic transplant
  (intent in ``reasonCode``, donor in an extension);
* ``MedicationAdministration``: each salvage agent, ``reasonReference`` naming the progression;
* ``Observation``: Ph status; prior therapy; the age at the index infusion; the pre-infusion
  marrow (blasts, MRD, EMD) and the disease burden; each marrow after infusion (blasts with a
  ``<`` comparator, MRD with its method and interpretation, response); the CD19 phenotype at
  progression; the salvage's best response; the last contact; the cause of death.

The bundle's ``timestamp`` is the data cut. Lineage: an entry's 1-based position in the bundle.
"""

from __future__ import annotations

import polars as pl

from cartreg.synth.cohort import SiteInfo
from cartreg.synth.render.common import REF, Export, Sheet, by_patient, iso, render_template
from cartreg.synth.render.eav import labels, local_id, pre_infusion_date

BUNDLE = "bundle.json"
MAPPING_TEMPLATE = "fhir_mapping.yaml"
SYSTEM = "urn:cartreg:sim:code"
NOT_EVALUATED = "Not evaluated"
_FAMILY = ("Meier", "Rossi", "Garcia", "Dubois", "Smith", "Jansen", "Novak", "Silva")
_GIVEN = ("Anna", "Luca", "Maria", "Jean", "Sara", "Tomas", "Ines", "Karl")
_PROG = {"RELAPSE_AFTER_CR": "relapse", "REFRACTORY_NONRESPONSE": "refractory"}
_YES_NO = {"Y": "yes", "N": "no", "UNKNOWN": "unknown"}


def _ref(kind: str, id_col: str | pl.Expr) -> pl.Expr:
    expr = pl.col(id_col) if isinstance(id_col, str) else id_col
    return pl.struct(pl.concat_str(pl.lit(f"{kind}/"), expr).alias("reference"))


def _code(code: str, text: pl.Expr | None = None) -> pl.Expr:
    coding = pl.concat_list(pl.struct(system=pl.lit(SYSTEM), code=pl.lit(code)))
    if text is None:
        return pl.struct(coding=coding)
    return pl.struct(coding=coding, text=text)


def _entries(frame: pl.DataFrame, resource: pl.Expr, ref: str, date: str, tag: str) -> pl.DataFrame:
    """Bundle entries; ``_ref`` is ``<truth id>:<tag>`` so that each entry can be found."""
    return frame.select(
        pl.col("patient_key"),
        pl.col(date).alias("_date"),
        pl.struct(resource=resource).struct.json_encode().alias("_json"),
        pl.concat_str(pl.col(ref), pl.lit(f":{tag}")).alias(REF),
    ).filter(pl.col("_date").is_not_null())


def _observation(
    frame: pl.DataFrame,
    code: str,
    date: str,
    ref: str,
    *,
    text: pl.Expr | None = None,
    quantity: pl.Expr | None = None,
    **extra: pl.Expr,
) -> pl.DataFrame:
    """Observations of one code, with a coded (``text``) or numeric (``quantity``) value."""
    fields: dict[str, pl.Expr] = {
        "resourceType": pl.lit("Observation"),
        "id": pl.concat_str(pl.col(ref), pl.lit(f"-{code.lower()}")),
        "status": pl.lit("final"),
        "subject": _ref("Patient", local_id()),
        "code": _code(code),
        "effectiveDateTime": iso(date),
    }
    if text is not None:
        fields["valueCodeableConcept"] = pl.struct(text=text)
        frame = frame.filter(text.is_not_null())
    if quantity is not None:
        fields["valueQuantity"] = quantity
    fields |= extra
    return _entries(frame, pl.struct([e.alias(k) for k, e in fields.items()]), ref, date, code)


def _blasts(value: str, qualifier: str) -> pl.Expr:
    return pl.struct(
        value=pl.col(value),
        comparator=pl.when(pl.col(qualifier) == "LT").then(pl.lit("<")),
        unit=pl.lit("%"),
    )


def _coded(col: str, mapping: dict[str, str]) -> pl.Expr:
    return pl.col(col).replace_strict(mapping, default=None, return_dtype=pl.String)


def resources(t: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Every entry of the bundle (``_json``), in the site's patient order then by date."""
    pats, inf, asm = t["patients"], t["car_t_infusions"], t["disease_assessments"]
    prog, sal, hct, fu = (
        t["progression_events"],
        t["salvage_treatments"],
        t["transplants"],
        t["follow_up"],
    )
    index = inf.filter(pl.col("is_index_infusion")).with_columns(pre_infusion_date().alias("_pre"))
    method = asm.group_by("patient_key").agg(pl.col("mrd_method").drop_nulls().first())
    index = index.join(method, on="patient_key", how="left").with_columns(
        pl.col("mrd_method").fill_null("FLOW")
    )
    pats = pats.join(fu, on="patient_key").join(
        index.select("patient_key", "_pre"), on="patient_key", how="left"
    )
    h = pl.col("patient_key").hash(14)
    patient = pl.struct(
        resourceType=pl.lit("Patient"),
        id=local_id(),
        identifier=pl.concat_list(
            pl.struct(
                system=pl.lit("urn:oid:2.16.840.1.113883.3.9999.1"),
                value=(h % 9_000_000 + 1_000_000).cast(pl.String),
            )
        ),
        name=pl.concat_list(
            pl.struct(
                family=pl.lit(pl.Series(_FAMILY)).gather(h % len(_FAMILY)),
                given=pl.concat_list(pl.lit(pl.Series(_GIVEN)).gather(h // 8 % len(_GIVEN))),
            )
        ),
        gender=pl.col("sex").replace_strict({"M": "male", "F": "female"}, default="unknown"),
        birthDate=pl.col("birth_year").cast(pl.String),
        deceasedDateTime=iso("death_date"),
        deceasedBoolean=pl.when(pl.col("death_date").is_null()).then(pl.lit(False)),
    )
    diagnosis = pl.struct(
        resourceType=pl.lit("Condition"),
        id=pl.concat_str(local_id(), pl.lit("-dx")),
        subject=_ref("Patient", local_id()),
        category=pl.concat_list(_code("encounter-diagnosis")),
        code=pl.struct(
            coding=pl.concat_list(
                pl.struct(
                    system=pl.lit("http://hl7.org/fhir/sid/icd-10"), code=pl.col("diagnosis_icd10")
                )
            ),
            text=pl.lit("B-cell acute lymphoblastic leukemia"),
        ),
        onsetDateTime=iso("diagnosis_date"),
    )
    progression = pl.struct(
        resourceType=pl.lit("Condition"),
        id=pl.col("progression_id"),
        subject=_ref("Patient", local_id()),
        category=pl.concat_list(_code("problem-list-item")),
        code=_code("PROGRESSION", _coded("event_type", _PROG)),
        onsetDateTime=iso("progression_date"),
    )
    infusion = pl.struct(
        resourceType=pl.lit("Procedure"),
        id=pl.col("infusion_id"),
        status=pl.lit("completed"),
        subject=_ref("Patient", local_id()),
        code=_code("CAR_T", _coded("product", labels("car_t_products"))),
        performedDateTime=iso("infusion_date"),
    )
    transplant = pl.struct(
        resourceType=pl.lit("Procedure"),
        id=pl.col("hct_id"),
        status=pl.lit("completed"),
        subject=_ref("Patient", local_id()),
        code=_code("HCT", pl.col("hct_type").str.to_lowercase()),
        performedDateTime=iso("hct_date"),
        reasonCode=pl.concat_list(pl.struct(text=_coded("intent", labels("hct_intent")))),
        extension=pl.concat_list(
            pl.struct(
                url=pl.lit("urn:cartreg:sim:donor-type"),
                valueString=_coded("donor_type", labels("donor_type")),
            )
        ),
    )
    salvage = pl.struct(
        resourceType=pl.lit("MedicationAdministration"),
        id=pl.col("salvage_id"),
        status=pl.lit("completed"),
        subject=_ref("Patient", local_id()),
        medicationCodeableConcept=pl.struct(text=_coded("agent", labels("salvage_agents"))),
        effectivePeriod=pl.struct(start=iso("start_date")),
        reasonReference=pl.concat_list(_ref("Condition", "progression_id")),
    )
    lines = sal.group_by("patient_key", maintain_order=True).first()
    lines = lines.with_columns(
        pl.coalesce("best_response_date", "start_date").alias("_resp"),
    )
    resp, dead = labels("response"), fu.filter(pl.col("vital_status") == "DEAD")
    mrd_obs = {
        "method": pl.struct(text=pl.col("mrd_method")),
        "interpretation": pl.concat_list(
            pl.struct(coding=pl.concat_list(pl.struct(code=pl.col("mrd_status"))))
        ),
    }
    asm_mrd = asm.filter(pl.col("mrd_method").is_not_null())
    pre_mrd = index.filter(pl.col("pre_mrd_value").is_not_null())
    parts = [
        _entries(pats, patient, "patient_key", "diagnosis_date", "Patient"),
        _entries(pats, diagnosis, "patient_key", "diagnosis_date", "DIAGNOSIS"),
        _observation(
            pats,
            "PH",
            "diagnosis_date",
            "patient_key",
            text=_coded("ph_status", labels("ph_status")),
        ),
        _observation(
            pats,
            "PRIOR_LINES",
            "_pre",
            "patient_key",
            quantity=pl.struct(value=pl.col("n_prior_lines")),
        ),
        _observation(
            pats, "PRIOR_BLINA", "_pre", "patient_key", text=_coded("prior_blinatumomab", _YES_NO)
        ),
        _observation(
            pats, "PRIOR_INO", "_pre", "patient_key", text=_coded("prior_inotuzumab", _YES_NO)
        ),
        _observation(
            index,
            "BM_BLAST",
            "_pre",
            "infusion_id",
            quantity=_blasts("pre_bm_blast_pct", "pre_bm_blast_qualifier"),
        ),
        _observation(
            pre_mrd,
            "MRD",
            "_pre",
            "infusion_id",
            quantity=pl.struct(value=pl.col("pre_mrd_value") * 100, unit=pl.lit("%")),
            method=pl.struct(text=pl.col("mrd_method")),
        ),
        _observation(index, "EMD", "_pre", "infusion_id", text=_coded("pre_emd_present", _YES_NO)),
        _observation(
            index,
            "BURDEN",
            "infusion_date",
            "infusion_id",
            text=pl.col("disease_burden").str.to_lowercase(),
        ),
        _observation(
            index.join(t["patients"].select("patient_key", "age_at_index_years"), on="patient_key"),
            "AGE_AT_CART",
            "infusion_date",
            "infusion_id",
            quantity=pl.struct(value=pl.col("age_at_index_years"), unit=pl.lit("a")),
        ),
        _entries(inf, infusion, "infusion_id", "infusion_date", "CAR_T"),
        _observation(
            asm,
            "BM_BLAST",
            "assessment_date",
            "assessment_id",
            quantity=_blasts("bm_blast_pct", "bm_blast_qualifier"),
        ),
        _observation(
            asm_mrd,
            "MRD",
            "assessment_date",
            "assessment_id",
            quantity=pl.when(pl.col("mrd_value").is_not_null()).then(
                pl.struct(value=pl.col("mrd_value") * 100, unit=pl.lit("%"))
            ),
            **mrd_obs,
        ),
        _observation(
            asm, "RESPONSE", "assessment_date", "assessment_id", text=_coded("response", resp)
        ),
        _entries(prog, progression, "progression_id", "progression_date", "PROGRESSION"),
        _observation(
            prog,
            "CD19",
            "progression_date",
            "progression_id",
            text=_coded("antigen_phenotype", labels("antigen_phenotype")),
        ),
        _entries(sal, salvage, "salvage_id", "start_date", "SALVAGE"),
        _observation(
            lines, "SALVAGE_RESPONSE", "_resp", "salvage_id", text=_coded("best_response", resp)
        ),
        _entries(hct, transplant, "hct_id", "hct_date", "HCT"),
        _observation(
            dead,
            "CAUSE_OF_DEATH",
            "death_date",
            "patient_key",
            text=_coded("cause_of_death", labels("cause_of_death")),
        ),
        _observation(
            fu,
            "LAST_CONTACT",
            "last_contact_date",
            "patient_key",
            text=pl.col("vital_status").str.to_lowercase(),
        ),
    ]
    entries = pl.concat(parts, how="vertical_relaxed").sort("_date", maintain_order=True)
    return by_patient(entries, t["patients"]["patient_key"]).drop("patient_key", "_date")


def build(site: SiteInfo, t: dict[str, pl.DataFrame]) -> Export:
    """Render a site's truth tables as one FHIR bundle."""
    cut = t["follow_up"]["data_cut_date"]
    stamp = f"{cut[0].isoformat()}T23:59:59Z" if cut.len() else ""
    envelope = (
        '{"resourceType": "Bundle", "type": "collection", '
        f'"timestamp": "{stamp}", "entry": [\n@RECORDS@\n]}}\n'
    )
    return Export(
        site_id=site.site_id,
        layout="fhir",
        sheets=[Sheet(BUNDLE, resources(t), header_rows=0, envelope=envelope)],
        static_files={"README.md": readme(site)},
    )


def readme(site: SiteInfo) -> str:
    return render_template("fhir_README.md", site_id=site.site_id)


def mapping(site: SiteInfo) -> str:
    """The hand-written mapping of this layout, for this site."""
    return render_template(MAPPING_TEMPLATE, site_id=site.site_id)
