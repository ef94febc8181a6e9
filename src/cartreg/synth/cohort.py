"""The truth cohort: a seeded, vectorized simulation of adults with B-ALL given CD19 CAR T.

Every patient is drawn at once as numpy arrays (no per-patient Python loop), so a million
patients take seconds. The result is the seven CDM tables with full CDM columns, which the site
renderers then turn into realistic exports. Calibration targets (founding study, Wudhikarn et al.
Blood 2021, and the 420-patient multicenter phenotype analysis) are listed in
:mod:`cartreg.synth.summary`; the knobs that reach them are :class:`CohortParams`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from cartreg.cdm import CDM, load_cdm
from cartreg.cdm.schema import polars_dtype

LAYOUTS: tuple[str, ...] = ("redcap", "excel", "ehr", "deid")
_SITE_PREFIX = {"redcap": "REDCAP", "excel": "EXCEL", "ehr": "EHR", "deid": "DEID"}
# Registry-style layouts of the second sample cohort (cartreg.synth.render.registry_style).
_SITE_PREFIX |= {"registry": "REGISTRY", "classeur": "CLASSEUR", "jsondeid": "JSON"}
# Long and linked layouts (cartreg.synth.render.eav, cartreg.synth.render.fhir).
_SITE_PREFIX |= {"eav": "EAV", "fhir": "FHIR"}
_EPOCH = date(1970, 1, 1)

Arr = np.ndarray


def day_number(value: date) -> int:
    """Days since 1970-01-01 (the integer form of a polars Date)."""
    return (value - _EPOCH).days


@dataclass(frozen=True)
class SiteInfo:
    """One simulated centre: registry id, export layout and the folder its export goes to."""

    site_id: str
    layout: str

    @property
    def folder(self) -> str:
        return self.site_id.lower()


@dataclass(frozen=True)
class CohortParams:
    """Calibration knobs. Defaults reproduce the published figures (see docs/sample-data.md)."""

    data_cut: date = date(2025, 6, 30)
    first_infusion: date = date(2016, 1, 1)
    p_high_burden: float = 0.55
    p_cr_low: float = 0.92
    p_cr_high: float = 0.76
    p_early_death: float = 0.03
    p_relapse_low: float = 0.36
    p_relapse_high: float = 0.62
    relapse_median_days: float = 270.0
    relapse_sigma: float = 0.7
    p_consolidative_hct: float = 0.22
    p_salvage: float = 0.82
    p_cr_antibody: float = 0.60
    p_cr_other: float = 0.33
    pps_median_days: float = 175.0
    # Phenotype of a progression: CD19_POS, CD19_DIM_PARTIAL, CD19_NEG, LINEAGE_SWITCH, UNKNOWN.
    phenotype_probs: tuple[float, float, float, float, float] = (0.475, 0.05, 0.345, 0.035, 0.095)
    site_weights: tuple[float, ...] = field(default=(1.2, 1.0, 1.0, 0.8))


@dataclass
class Cohort:
    """The truth: CDM tables keyed by table name, and the sites that hold the patients."""

    tables: dict[str, pl.DataFrame]
    sites: list[SiteInfo]
    params: CohortParams
    seed: int
    # cross-site duplicates planted in ``tables`` (patient_key_a original, patient_key_b copy)
    duplicates: pl.DataFrame | None = None

    def site_tables(self, site_id: str) -> dict[str, pl.DataFrame]:
        return {
            name: frame.filter(pl.col("site_id") == site_id) for name, frame in self.tables.items()
        }


def make_sites(n_sites: int, layouts: tuple[str, ...] = LAYOUTS) -> list[SiteInfo]:
    """Sites cycle through the layouts; ids are ``<LAYOUT>_<letter>`` (A, B, … then AA, AB …)."""
    sites = []
    for i in range(n_sites):
        letters = ""
        k = i
        while True:
            letters = chr(ord("A") + k % 26) + letters
            k = k // 26 - 1
            if k < 0:
                break
        layout = layouts[i % len(layouts)]
        sites.append(SiteInfo(f"{_SITE_PREFIX[layout]}_{letters}", layout))
    return sites


def _pick(rng: np.random.Generator, n: int, codes: list[str], probs: list[float]) -> Arr:
    p = np.asarray(probs, dtype=float)
    return np.asarray(codes, dtype=object)[rng.choice(len(codes), size=n, p=p / p.sum())]


def _frame(columns: dict[str, Arr]) -> pl.DataFrame:
    """A frame from numpy arrays; object arrays (strings with None) become String columns."""
    series = []
    for name, values in columns.items():
        arr = np.asarray(values)
        if arr.dtype == object or arr.dtype.kind == "U":
            series.append(pl.Series(name, arr.tolist(), dtype=pl.String))
        else:
            series.append(pl.Series(name, arr))
    return pl.DataFrame(series)


def _or_none(cond: Arr, values: Arr | str) -> Arr:
    """Object array: ``values`` where ``cond``, None elsewhere (a nullable string column)."""
    out = np.full(cond.shape, None, dtype=object)
    out[cond] = values[cond] if isinstance(values, np.ndarray) else values
    return out


def _dates(days: Arr) -> pl.Series:
    return pl.Series(np.asarray(days, dtype=np.float64)).cast(pl.Int32).cast(pl.Date)


def _opt_dates(days: Arr) -> pl.Series:
    """Days with NaN as missing → a nullable Date series."""
    series = pl.Series(np.asarray(days, dtype=np.float64))
    return series.fill_nan(None).cast(pl.Int32).cast(pl.Date)


def conform(frame: pl.DataFrame, table: str, cdm: CDM) -> pl.DataFrame:
    """Add the CDM columns a frame lacks (null) and order and type columns as the CDM says."""
    spec = cdm.table(table)
    exprs = []
    for col in spec.columns:
        dtype = polars_dtype(col)
        if col.name in frame.columns:
            exprs.append(pl.col(col.name).cast(dtype))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(col.name))
    return frame.select(exprs)


def _local_ids() -> pl.Expr:
    """Local study ids in each layout's own style (REDCap record ids are plain numbers).

    Reads the frame columns ``_layout`` and ``_num``; ``copy_patient`` in defects.py must
    agree with these formats.
    """
    num = pl.col("_num").cast(pl.String)
    return (
        pl.when(pl.col("_layout").is_in(["redcap", "registry"]))
        .then(num)
        .when(pl.col("_layout") == "classeur")
        .then(pl.concat_str(pl.lit("FR"), num.str.zfill(4)))
        .when(pl.col("_layout") == "excel")
        .then(pl.concat_str(pl.lit("P"), num.str.zfill(3)))
        .when(pl.col("_layout") == "ehr")
        .then(pl.concat_str(pl.lit("CT"), num.str.zfill(5)))
        .otherwise(pl.concat_str(pl.lit("D"), num.str.zfill(4)))
    )


def _assign_ids(frame: pl.DataFrame, id_col: str, abbr: str, keys: pl.Series) -> pl.DataFrame:
    """``<patient_key>-<ABBR><k>``, k 1-based per patient by day offset then source order."""
    frame = frame.with_row_index("_src").sort(["_pid", "_sort_day", "_src"])
    frame = frame.with_columns(
        (pl.int_range(pl.len()).over("_pid") + 1).alias("_k"),
        keys.gather(frame["_pid"]).alias("patient_key"),
    )
    return frame.with_columns(
        pl.concat_str(
            pl.col("patient_key"), pl.lit(f"-{abbr}"), pl.col("_k").cast(pl.String)
        ).alias(id_col)
    )


CHUNK_SIZE = 50_000


def simulate_cohort(
    n_patients: int,
    n_sites: int = 4,
    seed: int = 2021,
    *,
    params: CohortParams | None = None,
    layouts: tuple[str, ...] = LAYOUTS,
    cdm: CDM | None = None,
    duplicate_rate: float = 0.0,
) -> Cohort:
    """Simulate the truth cohort: ``n_patients`` spread over ``n_sites`` centres, in memory.

    For large cohorts use :func:`iter_cohort_chunks`, which bounds memory; its first chunk is
    this function's result for ``min(n_patients, chunk_size)`` patients. ``duplicate_rate``
    reports that share of the patients a second time at another site (see
    :mod:`cartreg.synth.duplicates`).
    """
    cohort = _simulate(n_patients, n_sites, np.random.default_rng(seed), seed, params, layouts, cdm)
    return _with_duplicates(cohort, duplicate_rate, [seed, 0], np.zeros(n_sites, dtype=np.int64))


def _with_duplicates(cohort: Cohort, rate: float, stream: list[int], offsets: Arr) -> Cohort:
    """Plant cross-site duplicates from their own random stream, so that a cohort without them
    is unchanged, and each site's new local ids follow its last one."""
    from cartreg.synth.duplicates import empty_pairs, plant_duplicates

    if rate <= 0:
        cohort.duplicates = empty_pairs()
        return cohort
    counts = cohort.tables["patients"]["site_id"].value_counts()
    per_site = dict(zip(counts["site_id"].to_list(), counts["count"].to_list(), strict=True))
    next_number = {
        s.site_id: int(offsets[i]) + per_site.get(s.site_id, 0) + 1
        for i, s in enumerate(cohort.sites)
    }
    tables, pairs = plant_duplicates(
        cohort.tables,
        [s.site_id for s in cohort.sites],
        [s.layout for s in cohort.sites],
        next_number,
        rate,
        np.random.default_rng([*stream, 0xD0B]),
    )
    cohort.tables, cohort.duplicates = tables, pairs
    return cohort


def iter_cohort_chunks(
    n_patients: int,
    n_sites: int = 4,
    seed: int = 2021,
    *,
    chunk_size: int = CHUNK_SIZE,
    params: CohortParams | None = None,
    layouts: tuple[str, ...] = LAYOUTS,
    cdm: CDM | None = None,
    duplicate_rate: float = 0.0,
) -> Iterator[Cohort]:
    """The cohort in chunks of ``chunk_size`` patients, each with its own seeded stream.

    Local patient numbers and truth ``source_row`` continue across chunks, so writing the chunks
    one after another gives one consistent cohort.
    """
    cdm = cdm or load_cdm()
    offsets = np.zeros(n_sites, dtype=np.int64)
    rows: dict[str, int] = {}
    done = 0
    chunk = 0
    while done < n_patients:
        size = min(chunk_size, n_patients - done)
        rng = np.random.default_rng(seed if chunk == 0 else [seed, chunk])
        cohort = _simulate(size, n_sites, rng, seed, params, layouts, cdm, offsets=offsets)
        cohort = _with_duplicates(cohort, duplicate_rate, [seed, chunk], offsets)
        for name, frame in cohort.tables.items():
            start = rows.get(name, 0)
            if start:
                cohort.tables[name] = frame.with_columns(pl.col("source_row") + start)
            rows[name] = start + frame.height
        counts = cohort.tables["patients"]["site_id"].value_counts()
        per_site = dict(zip(counts["site_id"].to_list(), counts["count"].to_list(), strict=True))
        offsets = offsets + np.asarray([per_site.get(s.site_id, 0) for s in cohort.sites])
        if chunk == 0:
            # one local number per site for the patient the first chunk's defects copy to it
            # (``render_sites``): it must not be the next chunk's first patient
            offsets = offsets + 1
        done += size
        chunk += 1
        yield cohort


def _simulate(
    n_patients: int,
    n_sites: int,
    rng: np.random.Generator,
    seed: int,
    params: CohortParams | None,
    layouts: tuple[str, ...],
    cdm: CDM | None,
    *,
    offsets: Arr | None = None,
) -> Cohort:
    p = params or CohortParams()
    cdm = cdm or load_cdm()
    n = n_patients
    sites = make_sites(n_sites, layouts)
    weights = np.resize(np.asarray(p.site_weights, dtype=float), n_sites)
    site_idx = np.sort(rng.choice(n_sites, size=n, p=weights / weights.sum()))
    local_no = np.arange(n) - np.searchsorted(site_idx, site_idx) + 1
    if offsets is not None:
        local_no = local_no + offsets[site_idx]
    site_ids = np.asarray([s.site_id for s in sites], dtype=object)[site_idx]
    site_layout = np.asarray([s.layout for s in sites], dtype=object)[site_idx]
    cut = day_number(p.data_cut)

    # ---- baseline ----
    start = day_number(p.first_infusion)
    inf = np.floor(start + (cut - 120 - start) * rng.beta(1.5, 1.0, n))
    drawn_age = np.clip(rng.normal(44.0, 14.5, n), 18.3, 79.8)
    birth = inf - np.round(drawn_age * 365.25) - rng.integers(0, 120, n)
    age: Arr = np.floor((inf - birth) / 365.25 * 10) / 10
    sex = _pick(rng, n, ["M", "F"], [0.56, 0.44])
    dx = inf - 90 - np.round(rng.gamma(2.0, 330.0, n))
    ph = _pick(
        rng, n, ["BCR_ABL1_POS", "BCR_ABL1_NEG", "PH_LIKE", "UNKNOWN"], [0.26, 0.6, 0.1, 0.04]
    )
    kmt2a = _pick(rng, n, ["Y", "N", "UNKNOWN"], [0.08, 0.87, 0.05])
    cyto = np.where(
        (ph == "BCR_ABL1_POS") | (kmt2a == "Y") | (ph == "PH_LIKE"),
        "HIGH",
        _pick(rng, n, ["STANDARD", "HIGH", "UNKNOWN"], [0.55, 0.3, 0.15]),
    ).astype(object)
    n_prior = np.clip(rng.poisson(1.6, n) + 1, 1, 9)
    prior_hct = rng.random(n) < 0.32
    prior_blin = rng.random(n) < 0.3
    blin_resp = _or_none(
        prior_blin,
        _pick(rng, n, ["RESPONDER", "NONRESPONDER", "NOT_EVALUABLE"], [0.45, 0.5, 0.05]),
    )
    prior_ino = rng.random(n) < 0.25
    prior_hct_day = np.where(
        prior_hct, np.floor(dx + (inf - dx) * rng.uniform(0.35, 0.8, n)), np.nan
    )

    # ---- index infusion: product by era and age ----
    tisa_ok = day_number(date(2017, 8, 30))
    brexu_ok = day_number(date(2021, 10, 1))
    obe_ok = day_number(date(2024, 11, 8))
    u = rng.random(n)
    trial_product = _pick(rng, n, ["msk_19_28z", "other_cd19_car_t", "hucart19"], [0.55, 0.3, 0.15])
    young = age <= 25
    # Era: 19-28z and other constructs in trials throughout; tisa-cel (labelled up to age 25)
    # from 2017-08-30; brexu-cel for adults from 2021-10-01; obe-cel only from 2024-11-08.
    product = trial_product.copy()
    product[(inf >= tisa_ok) & young & (u < 0.7)] = "tisagenlecleucel"
    era_brexu = inf >= brexu_ok
    product[era_brexu & (u < 0.72)] = "brexucabtagene_autoleucel"
    product[era_brexu & young & (u >= 0.72) & (u < 0.85)] = "tisagenlecleucel"
    era_obe = inf >= obe_ok
    product[era_obe & (u < 0.4)] = "obecabtagene_autoleucel"
    product[era_obe & (u >= 0.4) & (u < 0.85)] = "brexucabtagene_autoleucel"
    commercial = np.isin(
        product, ["tisagenlecleucel", "brexucabtagene_autoleucel", "obecabtagene_autoleucel"]
    )
    setting = np.where(commercial, "COMMERCIAL", "CLINICAL_TRIAL").astype(object)
    trial_ids = {
        "msk_19_28z": "NCT01044069",
        "hucart19": "NCT02374333",
        "other_cd19_car_t": "NCT02030847",
    }
    trial_id = np.full(n, None, dtype=object)
    for code, nct in trial_ids.items():
        trial_id[product == code] = nct
    per_kg = np.isin(
        product, ["brexucabtagene_autoleucel", "msk_19_28z", "hucart19", "other_cd19_car_t"]
    )
    dose_value = np.select(
        [
            product == "brexucabtagene_autoleucel",
            product == "msk_19_28z",
            product == "tisagenlecleucel",
            product == "obecabtagene_autoleucel",
        ],
        [
            np.full(n, 1.0e6),
            np.where(rng.random(n) < 0.6, 1.0e6, 3.0e6),
            np.round(rng.uniform(0.5, 2.5, n), 1) * 1.0e8,
            np.full(n, 4.1e8),
        ],
        default=np.where(rng.random(n) < 0.5, 1.0e6, 2.0e6),
    )
    dose_unit = np.where(per_kg, "CAR_POS_CELLS_PER_KG", "CAR_POS_CELLS_TOTAL").astype(object)
    ld = _pick(rng, n, ["FLU_CY", "CY_ONLY", "BENDAMUSTINE", "OTHER"], [0.85, 0.08, 0.04, 0.03])
    bridging = _pick(rng, n, ["Y", "N"], [0.7, 0.3])

    # ---- disease burden at infusion ----
    high = rng.random(n) < p.p_high_burden
    emd_only = high & (rng.random(n) < 0.15)
    marrow_high = high & ~emd_only
    pre_blast = np.where(
        marrow_high, np.round(rng.uniform(5.0, 95.0, n), 0), np.round(rng.uniform(0.0, 4.9, n), 1)
    )
    pre_lt = ~marrow_high & (rng.random(n) < 0.2)
    pre_blast = np.where(pre_lt, 1.0, pre_blast)
    pre_emd = np.where(emd_only | (marrow_high & (rng.random(n) < 0.12)), "Y", "N").astype(object)
    pre_cns = np.where(
        (pre_emd == "Y") & (rng.random(n) < 0.3),
        "CNS3",
        _pick(rng, n, ["CNS1", "CNS2"], [0.94, 0.06]),
    ).astype(object)
    pre_mrd = np.where(
        marrow_high,
        np.round(np.minimum(1.0, pre_blast / 100 * rng.uniform(0.8, 1.2, n)), 4),
        np.round(10 ** rng.uniform(-4.5, -1.4, n), 6),
    )
    pre_mrd = np.where(rng.random(n) < 0.1, np.nan, pre_mrd)
    burden = np.where(high, "HIGH", "LOW").astype(object)
    cd19_pre = _pick(rng, n, ["POS", "DIM_PARTIAL", "UNKNOWN"], [0.93, 0.05, 0.02])

    # ---- response to CAR T ----
    early_death = rng.random(n) < p.p_early_death
    d28 = 28 + rng.integers(-4, 6, n)
    p_cr = np.where(high, p.p_cr_high, p.p_cr_low) - np.where(blin_resp == "NONRESPONDER", 0.1, 0.0)
    cr = ~early_death & (rng.random(n) < p_cr)
    refractory = ~early_death & ~cr
    cri = cr & (rng.random(n) < 0.25)
    inf_abs = inf  # absolute day of the index infusion; all *_day below are offsets from it

    # consolidative HCT and relapse among responders
    cons_hct = cr & (rng.random(n) < p.p_consolidative_hct)
    cons_day = np.where(cons_hct, rng.integers(60, 121, n), np.nan)
    p_rel = np.where(high, p.p_relapse_high, p.p_relapse_low) * np.where(cons_hct, 0.5, 1.0)
    relapse = cr & (rng.random(n) < p_rel)
    rel_day = np.where(
        relapse,
        d28
        + np.maximum(
            14, np.round(rng.lognormal(np.log(p.relapse_median_days), p.relapse_sigma, n))
        ),
        np.nan,
    )
    # a relapse drawn before the planned HCT means the HCT never happened
    cons_hct = cons_hct & ~(relapse & (rel_day <= cons_day))
    cons_day = np.where(cons_hct, cons_day, np.nan)

    # non-relapse mortality (competing with relapse)
    nrm = np.where(
        cons_hct & (rng.random(n) < 0.15),
        cons_day + rng.integers(20, 300, n),
        np.where(
            cr & ~cons_hct & (rng.random(n) < 0.05), rng.integers(40, 900, n).astype(float), np.nan
        ),
    )
    nrm = np.where(early_death, rng.integers(5, 24, n).astype(float), nrm)
    prog_day = np.where(refractory, d28.astype(float), rel_day)
    prog_day = np.where(
        np.isfinite(nrm) & (nrm <= np.nan_to_num(prog_day, nan=np.inf)), np.nan, prog_day
    )
    progressed = np.isfinite(prog_day)

    # ---- progression attributes ----
    pheno_codes = ["CD19_POS", "CD19_DIM_PARTIAL", "CD19_NEG", "LINEAGE_SWITCH", "UNKNOWN"]
    pheno = _pick(rng, n, pheno_codes, list(p.phenotype_probs))
    pheno = np.where((kmt2a == "Y") & (rng.random(n) < 0.25), "LINEAGE_SWITCH", pheno).astype(
        object
    )
    prog_site = _pick(
        rng,
        n,
        ["BM_ONLY", "BM_PLUS_EMD", "ISOLATED_CNS", "ISOLATED_EMD_OTHER"],
        [0.76, 0.1, 0.08, 0.06],
    )
    prog_site = np.where(
        refractory, np.where(pre_emd == "Y", "BM_PLUS_EMD", "BM_ONLY"), prog_site
    ).astype(object)
    isolated = np.isin(prog_site, ["ISOLATED_CNS", "ISOLATED_EMD_OTHER"])
    prog_blast = np.where(isolated, np.nan, np.round(rng.uniform(6.0, 92.0, n), 0))
    remission_dur = np.where(relapse, prog_day - d28, 0.0)

    # ---- salvage ----
    salv_start = prog_day + rng.integers(5, 31, n)
    cd19_ok = np.isin(pheno, ["CD19_POS", "UNKNOWN"])
    ls = pheno == "LINEAGE_SWITCH"
    agent_pos = _pick(
        rng,
        n,
        [
            "blinatumomab",
            "inotuzumab_ozogamicin",
            "car_t_reinfusion",
            "new_cd19_car_t",
            "hyper_cvad",
            "flag_ida",
            "ino_mini",
            "venetoclax",
            "clinical_trial_other",
        ],
        [0.27, 0.17, 0.15, 0.05, 0.08, 0.09, 0.08, 0.06, 0.05],
    )
    agent_neg = _pick(
        rng,
        n,
        [
            "inotuzumab_ozogamicin",
            "cd22_car_t",
            "flag_ida",
            "hyper_cvad",
            "venetoclax",
            "clinical_trial_other",
        ],
        [0.36, 0.14, 0.18, 0.12, 0.1, 0.1],
    )
    agent_ls = _pick(rng, n, ["flag_ida", "venetoclax", "clinical_trial_other"], [0.55, 0.3, 0.15])
    agent = np.where(ls, agent_ls, np.where(cd19_ok, agent_pos, agent_neg)).astype(object)
    antibody = np.isin(agent, ["blinatumomab", "inotuzumab_ozogamicin", "ino_mini"])
    p_salv_cr = np.where(
        antibody,
        p.p_cr_antibody,
        np.where(np.isin(agent, ["new_cd19_car_t", "cd22_car_t"]), 0.5, p.p_cr_other),
    )
    salv_cr = rng.random(n) < p_salv_cr
    resp_day = salv_start + rng.integers(21, 43, n)

    # survival after progression: longer after a longer remission and after a salvage CR
    wants_salvage = progressed & (rng.random(n) < p.p_salvage)
    mult = (
        np.where(remission_dur >= 180, 1.8, 1.0)
        * np.where(refractory, 0.85, 1.0)
        * np.where(ls, 0.5, 1.0)
        * np.where(wants_salvage & salv_cr, 2.2, np.where(wants_salvage, 1.0, 0.45))
    )
    scale = p.pps_median_days * mult / np.log(2) ** (1 / 1.6)
    pps = np.maximum(3.0, np.round(scale * rng.weibull(1.6, n)))
    cured = wants_salvage & salv_cr & (rng.random(n) < 0.12)
    prog_death = np.where(progressed & ~cured, prog_day + pps, np.nan)
    death_day = np.where(progressed, prog_death, nrm)

    # salvage only counts if started before death; its response only if documented before death
    salvage = wants_salvage & (salv_start < np.nan_to_num(death_day, nan=np.inf))
    resp_ok = salvage & (resp_day < np.nan_to_num(death_day, nan=np.inf))
    salv_cr = salv_cr & resp_ok
    salv_hct = salv_cr & (rng.random(n) < 0.45)
    salv_hct_day = np.where(salv_hct, resp_day + rng.integers(20, 61, n), np.nan)
    salv_hct = salv_hct & (salv_hct_day < np.nan_to_num(death_day, nan=np.inf))
    salv_hct_day = np.where(salv_hct, salv_hct_day, np.nan)

    # pre-emptive reinfusion for early B-cell recovery in a few responders
    prevent = cr & ~cons_hct & (rng.random(n) < 0.04)
    prevent_day = np.where(prevent, rng.integers(90, 181, n), np.nan)
    prevent_limit = np.fmin(
        np.nan_to_num(prog_day, nan=np.inf), np.nan_to_num(death_day, nan=np.inf)
    )
    prevent = prevent & (prevent_day < prevent_limit)
    prevent_day = np.where(prevent, prevent_day, np.nan)

    # ---- administrative censoring at the data cut ----
    horizon = cut - inf_abs  # last day offset inside the data cut

    def inside(day: Arr) -> Arr:
        result: Arr = np.isfinite(day) & (day <= horizon)
        return result

    progressed = inside(prog_day)
    salvage = salvage & progressed & inside(salv_start)
    resp_ok = resp_ok & salvage & inside(resp_day)
    salv_cr = salv_cr & resp_ok
    salv_hct = salv_hct & resp_ok & inside(salv_hct_day)
    cons_hct = cons_hct & inside(cons_day)
    prevent = prevent & inside(prevent_day)
    dead = inside(death_day)

    # ---- assessments ----
    sched = np.array([90, 180, 270, 365, 545, 730, 1095, 1460, 1825, 2190, 2555, 2920, 3285])
    jitter = rng.integers(-10, 11, (n, sched.size))
    grid = sched[None, :] + jitter
    stop = np.fmin(np.where(progressed, prog_day, np.inf), np.where(dead, death_day, np.inf))
    stop = np.fmin(stop, horizon - 1)
    fu_mask = cr[:, None] & (grid < stop[:, None])
    fu_pid, fu_j = np.nonzero(fu_mask)
    fu_day = grid[fu_pid, fu_j]
    n_fu = fu_pid.size

    base_pid = np.nonzero(~early_death)[0]
    rel_pid = np.nonzero(progressed & relapse)[0]

    anc_cr = rng.integers(1100, 6500, n).astype(float)
    plt_cr = rng.integers(105, 420, n).astype(float) * 1000
    anc_cri = rng.integers(200, 950, n).astype(float)
    plt_cri = rng.integers(15, 95, n).astype(float) * 1000
    d28_blast = np.where(
        cr, np.round(rng.uniform(0.0, 3.5, n), 1), np.round(rng.uniform(6.0, 90.0, n), 0)
    )
    d28_lt = cr & (rng.random(n) < 0.25)
    d28_blast = np.where(d28_lt, 1.0, d28_blast)
    d28_mrd_neg = cr & (rng.random(n) < 0.78)
    d28_mrd = np.where(
        d28_mrd_neg,
        np.nan,
        np.where(cr, np.round(10 ** rng.uniform(-3.9, -2.2, n), 6), np.round(d28_blast / 100, 4)),
    )
    mrd_method = _pick(rng, n, ["FLOW", "NGS_IG_TR"], [0.75, 0.25])

    asm_parts = []
    asm_parts.append(
        _frame(
            {
                "_pid": base_pid,
                "_day": d28[base_pid].astype(np.int64),
                "timepoint_label": np.full(base_pid.size, "D28", dtype=object),
                "specimen": np.full(base_pid.size, "BONE_MARROW", dtype=object),
                "bm_blast_pct": d28_blast[base_pid],
                "bm_blast_qualifier": _or_none(d28_lt[base_pid], "LT"),
                "anc_per_ul": np.where(cri, anc_cri, np.where(cr, anc_cr, anc_cri))[base_pid],
                "platelets_per_ul": np.where(cri, plt_cri, np.where(cr, plt_cr, plt_cri))[base_pid],
                "mrd_value": d28_mrd[base_pid],
                "mrd_method": mrd_method[base_pid],
                "mrd_status": np.where(d28_mrd_neg, "NEG", "POS")[base_pid].astype(object),
                "emd_present": np.where(refractory & (pre_emd == "Y"), "Y", "N")[base_pid].astype(
                    object
                ),
                "cd19_status": _or_none(refractory, cd19_pre)[base_pid],
                "response": np.where(cri, "CRi", np.where(cr, "CR", "NR"))[base_pid].astype(object),
                "_order": np.zeros(base_pid.size, dtype=np.int64),
            },
        )
    )
    labels = np.array(
        ["M3", "M6", "M9", "M12", "M18", "M24", "M36", "M48", "M60", "M72", "M84", "M96", "M108"],
        dtype=object,
    )
    fu_neg = rng.random(n_fu) < 0.93
    asm_parts.append(
        _frame(
            {
                "_pid": fu_pid,
                "_day": fu_day.astype(np.int64),
                "timepoint_label": labels[fu_j],
                "specimen": np.full(n_fu, "BONE_MARROW", dtype=object),
                "bm_blast_pct": np.round(rng.uniform(0.0, 2.0, n_fu), 1),
                "bm_blast_qualifier": np.full(n_fu, None, dtype=object),
                "anc_per_ul": rng.integers(1200, 6000, n_fu).astype(float),
                "platelets_per_ul": rng.integers(110, 400, n_fu).astype(float) * 1000,
                "mrd_value": np.where(
                    fu_neg, np.nan, np.round(10 ** rng.uniform(-3.9, -2.5, n_fu), 6)
                ),
                "mrd_method": mrd_method[fu_pid],
                "mrd_status": np.where(fu_neg, "NEG", "POS").astype(object),
                "emd_present": np.full(n_fu, "N", dtype=object),
                "cd19_status": np.full(n_fu, None, dtype=object),
                "response": np.full(n_fu, "CR", dtype=object),
                "_order": np.ones(n_fu, dtype=np.int64),
            },
        )
    )
    pheno_to_cd19 = {
        "CD19_POS": "POS",
        "CD19_DIM_PARTIAL": "DIM_PARTIAL",
        "CD19_NEG": "NEG",
        "LINEAGE_SWITCH": "NEG",
        "UNKNOWN": "UNKNOWN",
    }
    cd19_rel = (
        np.vectorize(pheno_to_cd19.get, otypes=[object])(pheno) if n else np.array([], dtype=object)
    )
    specimen_rel = np.select(
        [prog_site == "ISOLATED_CNS", prog_site == "ISOLATED_EMD_OTHER"],
        ["CSF", "EXTRAMEDULLARY_TISSUE"],
        "BONE_MARROW",
    ).astype(object)
    asm_parts.append(
        _frame(
            {
                "_pid": rel_pid,
                "_day": prog_day[rel_pid].astype(np.int64),
                "timepoint_label": np.full(rel_pid.size, "Relapse", dtype=object),
                "specimen": specimen_rel[rel_pid],
                "bm_blast_pct": prog_blast[rel_pid],
                "bm_blast_qualifier": np.full(rel_pid.size, None, dtype=object),
                "anc_per_ul": rng.integers(300, 4000, rel_pid.size).astype(float),
                "platelets_per_ul": rng.integers(20, 250, rel_pid.size).astype(float) * 1000,
                "mrd_value": np.where(
                    isolated[rel_pid], np.nan, np.round(prog_blast[rel_pid] / 100, 4)
                ),
                "mrd_method": _or_none(~isolated[rel_pid], "FLOW"),
                "mrd_status": _or_none(~isolated[rel_pid], "POS"),
                "emd_present": np.where(prog_site[rel_pid] == "BM_ONLY", "N", "Y").astype(object),
                "cd19_status": cd19_rel[rel_pid],
                "response": np.full(rel_pid.size, "RELAPSE", dtype=object),
                "_order": np.full(rel_pid.size, 2, dtype=np.int64),
            },
        )
    )
    asm = pl.concat(asm_parts, how="vertical_relaxed").with_columns(
        pl.col("bm_blast_pct").fill_nan(None), pl.col("mrd_value").fill_nan(None)
    )

    # ---- patient keys ----
    ids = _frame({"_layout": site_layout, "_num": local_no, "site_id": site_ids})
    keys = ids.select(pl.concat_str(pl.col("site_id"), pl.lit("-"), _local_ids()).alias("k"))["k"]
    site_series = pl.Series(site_ids, dtype=pl.String)
    inf_series = _dates(inf_abs)

    def finish(frame: pl.DataFrame, table: str, date_cols: dict[str, str]) -> pl.DataFrame:
        """Attach lineage, dates from day offsets, and CDM column order."""
        exprs: list[pl.Series] = [site_series.gather(frame["_pid"]).alias("site_id")]
        for date_col, day_col in date_cols.items():
            if day_col in frame.columns:
                offset = frame[day_col].cast(pl.Int64) * 86_400_000
                dates = inf_series.gather(frame["_pid"]) + offset.cast(pl.Duration("ms"))
                exprs.append(dates.alias(date_col))
            else:
                exprs.append(pl.Series(date_col, [None] * frame.height, dtype=pl.Date))
        frame = frame.with_columns(exprs)
        prec = [
            pl.when(pl.col(c).is_not_null()).then(pl.lit("DAY")).alias(f"{c}_precision")
            for c in date_cols
            if f"{c}_precision" not in frame.columns
        ]
        frame = frame.with_columns(prec).with_columns(
            pl.lit("truth").alias("source_file"),
            (pl.int_range(pl.len()) + 1).alias("source_row"),
        )
        frame = conform(frame, table, cdm)
        return frame.with_columns(
            pl.when(pl.col(c.sibling_of).is_not_null() & pl.col(c.name).is_null())
            .then(pl.lit("DAY"))
            .otherwise(pl.col(c.name))
            .alias(c.name)
            for c in cdm.table(table).columns
            if c.role == "precision" and c.sibling_of is not None
        )

    # assessments
    asm = (
        asm.rename({"_day": "assessment_day"})
        .with_columns(pl.col("assessment_day").alias("_sort_day"))
        .sort(["_pid", "_sort_day", "_order"])
    )
    asm = _assign_ids(asm, "assessment_id", "A", keys)
    assessments = finish(asm, "disease_assessments", {"assessment_date": "assessment_day"})
    # the time point is free text "as the site labels it": the German workbook says Tag/Monat
    excel_sites = [s.site_id for s in sites if s.layout == "excel"]
    assessments = assessments.with_columns(
        pl.when(pl.col("site_id").is_in(excel_sites))
        .then(
            pl.col("timepoint_label")
            .str.replace("^D", "Tag ")
            .str.replace("^M", "Monat ")
            .str.replace("^Relapse$", "Rezidiv")
        )
        .otherwise(pl.col("timepoint_label"))
        .alias("timepoint_label")
    )

    # ---- patients ----
    all_pid = np.arange(n)
    dx_month = (site_layout == "ehr") & (rng.random(n) < 0.3)
    pat = _frame(
        {
            "_pid": all_pid,
            "sex": sex,
            "birth_year": (_dates(birth).dt.year()).to_numpy(),
            "age_at_index_years": age,
            "diagnosis_day": (dx - inf_abs).astype(np.int64),
            "_dx_month": dx_month,
            "diagnosis_icd10": np.where(rng.random(n) < 0.5, "C91.0", "C91.00").astype(object),
            "ph_status": ph,
            "kmt2a_rearranged": kmt2a,
            "cytogenetic_risk": cyto,
            "n_prior_lines": n_prior,
            "prior_allohct": np.where(prior_hct, "Y", "N").astype(object),
            "prior_blinatumomab": np.where(prior_blin, "Y", "N").astype(object),
            "prior_blinatumomab_response": blin_resp,
            "prior_inotuzumab": np.where(prior_ino, "Y", "N").astype(object),
        },
    )
    pat = pat.with_columns(keys.alias("patient_key"))
    pat = finish(pat, "patients", {"diagnosis_date": "diagnosis_day"}).with_columns(
        pl.Series("_dx_month", dx_month)
    )
    # EHR sites know some diagnosis dates only to the month: stored as the 1st, precision MONTH
    pat = (
        pat.with_columns(
            pl.when(pl.col("_dx_month"))
            .then(pl.col("diagnosis_date").dt.truncate("1mo"))
            .otherwise(pl.col("diagnosis_date"))
            .alias("diagnosis_date"),
            pl.when(pl.col("_dx_month"))
            .then(pl.lit("MONTH"))
            .otherwise(pl.lit("DAY"))
            .alias("diagnosis_date_precision"),
        )
        .with_columns(
            (pl.col("diagnosis_date") - pl.Series(inf_series))
            .dt.total_days()
            .alias("diagnosis_day")
        )
        .drop("_dx_month")
    )

    # ---- infusions ----
    reinf_salv = salvage & (agent == "car_t_reinfusion")
    idx_frame = _frame(
        {
            "_pid": all_pid,
            "infusion_day": np.zeros(n, dtype=np.int64),
            "is_index_infusion": np.ones(n, dtype=bool),
            "is_reinfusion": np.zeros(n, dtype=bool),
            "reinfusion_reason": np.full(n, None, dtype=object),
            "pre_bm_blast_pct": pre_blast,
            "pre_bm_blast_qualifier": _or_none(pre_lt, "LT"),
            "pre_mrd_value": pre_mrd,
            "pre_emd_present": pre_emd,
            "pre_cns_status": pre_cns,
            "disease_burden": burden,
            "cd19_status_pre": cd19_pre,
            "lymphodepletion_regimen": ld,
            "bridging_therapy": bridging,
        },
    )
    re_pid = np.concatenate([np.nonzero(prevent)[0], np.nonzero(reinf_salv)[0]])
    re_day = np.concatenate([prevent_day[prevent], salv_start[reinf_salv]]).astype(np.int64)
    re_reason = np.concatenate(
        [
            np.full(int(prevent.sum()), "B_CELL_RECOVERY", dtype=object),
            np.where(refractory[reinf_salv], "NONRESPONSE", "MORPHOLOGIC_RELAPSE").astype(object),
        ]
    )
    re_frame = _frame(
        {
            "_pid": re_pid,
            "infusion_day": re_day,
            "is_index_infusion": np.zeros(re_pid.size, dtype=bool),
            "is_reinfusion": np.ones(re_pid.size, dtype=bool),
            "reinfusion_reason": re_reason,
            "lymphodepletion_regimen": np.full(re_pid.size, "FLU_CY", dtype=object),
            "bridging_therapy": np.full(re_pid.size, "N", dtype=object),
        },
    )
    infs = pl.concat([idx_frame, re_frame], how="diagonal_relaxed")
    per_patient = _frame(
        {
            "product": product,
            "setting": setting,
            "trial_id": trial_id,
            "dose_value": dose_value,
            "dose_unit": dose_unit,
        }
    )
    infs = infs.with_columns(
        *[per_patient[c].gather(infs["_pid"]) for c in per_patient.columns],
        pl.col("pre_bm_blast_pct").fill_nan(None),
        pl.col("pre_mrd_value").fill_nan(None),
        pl.col("infusion_day").alias("_sort_day"),
    )
    infs = _assign_ids(infs, "infusion_id", "INF", keys).with_columns(
        pl.col("_k").alias("infusion_number")
    )
    infusions = finish(infs, "car_t_infusions", {"infusion_date": "infusion_day"}).with_columns(
        pl.col("infusion_date").dt.year().alias("infusion_year"),
        # an unspecified construct keeps the name the site gave it (rule CV-003)
        pl.when(pl.col("product") == "other_cd19_car_t")
        .then(pl.lit("CD19 CAR T (academic construct)"))
        .alias("product_raw"),
    )

    # ---- progression events ----
    prog_pid = np.nonzero(progressed)[0]
    prog = _frame(
        {
            "_pid": prog_pid,
            "progression_day": prog_day[prog_pid].astype(np.int64),
            "event_seq": np.ones(prog_pid.size, dtype=np.int64),
            "event_type": np.where(
                refractory[prog_pid], "REFRACTORY_NONRESPONSE", "RELAPSE_AFTER_CR"
            ).astype(object),
            "site": prog_site[prog_pid],
            "antigen_phenotype": pheno[prog_pid],
            "bm_blast_pct_at_event": np.where(refractory, d28_blast, prog_blast)[prog_pid],
            "remission_day": np.where(relapse[prog_pid], d28[prog_pid].astype(float), np.nan),
        },
    ).with_columns(
        pl.col("bm_blast_pct_at_event").fill_nan(None),
        pl.col("remission_day").fill_nan(None).cast(pl.Int64),
        pl.col("progression_day").alias("_sort_day"),
    )
    prog = prog.with_columns(keys.gather(prog["_pid"]).alias("patient_key")).with_columns(
        pl.concat_str(
            pl.col("patient_key"), pl.lit("-P"), pl.col("event_seq").cast(pl.String)
        ).alias("progression_id")
    )
    progressions = finish(
        prog,
        "progression_events",
        {"progression_date": "progression_day", "remission_date": "remission_day"},
    )

    # ---- salvage lines (one row per agent) ----
    s_pid = np.nonzero(salvage)[0]
    a1 = np.where(agent[s_pid] == "ino_mini", "inotuzumab_ozogamicin", agent[s_pid]).astype(object)
    two = (agent[s_pid] == "ino_mini") | (
        (ph[s_pid] == "BCR_ABL1_POS") & np.isin(a1, ["blinatumomab", "hyper_cvad", "flag_ida"])
    )
    a2 = np.where(agent[s_pid] == "ino_mini", "mini_hcvd", "ponatinib").astype(object)
    sal_pid = np.concatenate([s_pid, s_pid[two]])
    sal_agent = np.concatenate([a1, a2[two]])
    sal_resp = np.where(
        salv_cr,
        np.where(rng.random(n) < 0.8, "CR", "CRi"),
        np.where(rng.random(n) < 0.5, "NR", "PD"),
    )
    sal_resp = np.where(resp_ok, sal_resp, "NOT_EVALUATED").astype(object)
    sal = (
        _frame(
            {
                "_pid": sal_pid,
                "start_day": salv_start[sal_pid].astype(np.int64),
                "line_number": np.ones(sal_pid.size, dtype=np.int64),
                "agent": sal_agent,
                "best_response": sal_resp[sal_pid],
                "best_response_day": np.where(resp_ok[sal_pid], resp_day[sal_pid], np.nan),
                "_order": np.concatenate([np.zeros(s_pid.size), np.ones(int(two.sum()))]).astype(
                    np.int64
                ),
            },
        )
        .with_columns(
            pl.col("best_response_day").fill_nan(None).cast(pl.Int64),
            pl.col("start_day").alias("_sort_day"),
        )
        .sort(["_pid", "_sort_day", "_order"])
    )
    sal = _assign_ids(sal, "salvage_id", "S", keys).with_columns(
        pl.concat_str(pl.col("patient_key"), pl.lit("-P1")).alias("progression_id"),
        pl.col("agent").replace_strict(_agent_categories(cdm), default="OTHER").alias("category"),
    )
    salvages = finish(
        sal,
        "salvage_treatments",
        {"start_date": "start_day", "best_response_date": "best_response_day"},
    )

    # ---- transplants ----
    pre_pid = np.nonzero(prior_hct)[0]
    c_pid = np.nonzero(cons_hct)[0]
    h_pid = np.nonzero(salv_hct)[0]
    donors = _pick(rng, n, ["MSD", "MUD", "MMUD", "HAPLO", "CORD"], [0.25, 0.4, 0.1, 0.2, 0.05])
    hct = _frame(
        {
            "_pid": np.concatenate([pre_pid, c_pid, h_pid]),
            "hct_day": np.concatenate(
                [prior_hct_day[pre_pid] - inf_abs[pre_pid], cons_day[c_pid], salv_hct_day[h_pid]]
            ).astype(np.int64),
            "hct_type": np.full(pre_pid.size + c_pid.size + h_pid.size, "ALLOGENEIC", dtype=object),
            "donor_type": np.concatenate(
                [
                    donors[pre_pid],
                    _pick(rng, c_pid.size, ["MSD", "MUD", "HAPLO"], [0.3, 0.45, 0.25]),
                    donors[h_pid],
                ]
            ),
            "intent": np.concatenate(
                [
                    np.full(pre_pid.size, "PRIOR_TO_INDEX"),
                    np.full(c_pid.size, "CONSOLIDATION"),
                    np.full(h_pid.size, "SALVAGE"),
                ]
            ).astype(object),
            "disease_status_at_hct": np.concatenate(
                [
                    _pick(
                        rng,
                        pre_pid.size,
                        ["CR_MRD_NEG", "CR_MRD_POS", "ACTIVE_DISEASE"],
                        [0.6, 0.3, 0.1],
                    ),
                    np.where(d28_mrd_neg[c_pid], "CR_MRD_NEG", "CR_MRD_POS").astype(object),
                    _pick(rng, h_pid.size, ["CR_MRD_NEG", "CR_MRD_POS"], [0.65, 0.35]),
                ]
            ),
        },
    ).with_columns(pl.col("hct_day").alias("_sort_day"))
    hct = _assign_ids(hct, "hct_id", "H", keys)
    transplants = finish(hct, "transplants", {"hct_date": "hct_day"})

    # ---- follow-up ----
    last_event = np.zeros(n)
    for frame, day_cols in (
        (assessments, ["assessment_day"]),
        (infusions, ["infusion_day"]),
        (progressions, ["progression_day"]),
        (salvages, ["start_day", "best_response_day"]),
        (transplants, ["hct_day"]),
    ):
        if frame.height == 0:
            continue
        pid = _pid_of(frame, keys)
        for col in day_cols:
            vals = frame[col].fill_null(-(10**6)).to_numpy().astype(float)
            np.maximum.at(last_event, pid, vals)
    lc_alive = np.maximum(horizon - rng.integers(0, 76, n), last_event)
    last_contact = np.where(dead, death_day, lc_alive)
    cause = np.where(
        progressed,
        _pick(rng, n, ["PRIMARY_DISEASE", "INFECTION", "OTHER_TOXICITY"], [0.82, 0.12, 0.06]),
        np.where(
            early_death,
            _pick(rng, n, ["CRS", "ICANS", "INFECTION", "HLH_IEC_HS"], [0.3, 0.25, 0.3, 0.15]),
            np.where(
                cons_hct,
                _pick(rng, n, ["GVHD", "INFECTION"], [0.55, 0.45]),
                _pick(rng, n, ["INFECTION", "OTHER", "SECONDARY_MALIGNANCY"], [0.6, 0.25, 0.15]),
            ),
        ),
    ).astype(object)
    fu = _frame(
        {
            "_pid": all_pid,
            "last_contact_day": last_contact.astype(np.int64),
            "vital_status": np.where(dead, "DEAD", "ALIVE").astype(object),
            "death_day": np.where(dead, death_day, np.nan),
            "cause_of_death": _or_none(dead, cause),
        },
    ).with_columns(
        pl.col("death_day").fill_nan(None).cast(pl.Int64),
        keys.alias("patient_key"),
        pl.lit(p.data_cut).alias("data_cut_date"),
    )
    follow_up = finish(
        fu, "follow_up", {"last_contact_date": "last_contact_day", "death_date": "death_day"}
    )

    tables = {
        "patients": pat.pipe(conform, "patients", cdm),
        "car_t_infusions": infusions,
        "disease_assessments": assessments,
        "progression_events": progressions,
        "salvage_treatments": salvages,
        "transplants": transplants,
        "follow_up": follow_up,
    }
    return Cohort(tables=tables, sites=sites, params=p, seed=seed)


def _pid_of(frame: pl.DataFrame, keys: pl.Series) -> Arr:
    lookup = pl.DataFrame({"patient_key": keys, "_pid": np.arange(keys.len())})
    return (
        frame.select("patient_key")
        .join(lookup, on="patient_key", how="left", maintain_order="left")["_pid"]
        .to_numpy()
    )


def _agent_categories(cdm: CDM) -> dict[str, str]:
    """Agent code → salvage category, from the salvage_agents vocabulary attributes."""
    return {
        term.code: str(term.attributes["category"])
        for term in cdm.vocabularies["salvage_agents"].terms
        if "category" in term.attributes
    }
