"""Clinical risk factors and an incident cardiovascular event for every simulated person.

Drawn after, and independently of, everything else (own random streams), so genotypes, ``qt``,
``bt`` and every earlier output stay byte-identical for a seed. Per person at site ``s``, with
``a = (age - 50) / 10``, ``m = [sex == 1]`` (male), ``z1, z2 ~ N(0, 1)`` independent::

    ldl      = 3.4 + LDL_SHIFT[s] + 0.15 a + 0.85 z1                      (mmol/L, 2 decimals)
    sbp      = 130 + SBP_SHIFT[s] + 5 a + 3 m + 16 (0.2 z1 + sqrt(1 - 0.2^2) z2)   (mmHg, whole)
    smoking  ~ Bernoulli(expit(logit(SMOKING[s]) + 0.35 m - 0.25 a))      (current smoker, 0/1)
    diabetes ~ Bernoulli(expit(DIABETES[s] + 0.45 a + 0.30 m))            (0/1)

(LDL clipped to 0.5-9 mmol/L, SBP to 80-230 mmHg), so LDL and SBP both rise with age and
correlate beyond it (residual correlation 0.2), smoking falls with age and diabetes rises.

The 10-year incident cardiovascular event (``cvd``, plink2 coding 1 = no event, 2 = event) is
logistic in a linear predictor ``eta`` (coefficients :data:`LOG_ODDS`, on the scale of
published risk scores such as SCORE2 and the pooled cohort equations)::

    eta = INTERCEPT[s] + 0.65 (age - 60)/10 + 0.45 m + 0.22 (ldl - 3.4) + 0.18 (sbp - 130)/10
          + 0.65 smoking + 0.60 diabetes + G
    G   = sum_causal gamma_j (d_j - 2 p_j) + sum_polygenic delta_k (d_k - 2 p_k)
    P(cvd = 2) = expit(eta)

``d`` are true ALT-allele counts, ``p`` the reference panel's ALT frequencies, ``gamma_j =
0.5 * beta_j`` for the three causal variants of ``qt`` and ``delta_k`` the polygenic
background: :data:`N_POLYGENIC` common array markers that are in the reference panel (so a
score from typed or imputed dosages captures them), effects drawn N(0, 1) and scaled so that
their score has variance :data:`POLYGENIC_VARIANCE` in the panel (log-odds SD 0.4, an odds
ratio of about 1.5 per SD, like published coronary-disease scores).

Follow-up (``cvd_followup_years``): people without an event are censored at
:data:`CENSOR_YEARS` (administrative censoring, no loss to follow-up). An event's time comes
from the Weibull proportional-hazards model with the same predictor, ``S(t) = exp(-(t/10)^1.5
exp(eta))``, conditioned on the event happening by 10 years (inverse CDF of a uniform draw on
``(0, F(10))``); for low risks ``F(10) = 1 - exp(-exp(eta))`` is close to ``expit(eta)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snakemake_fedgen.simulate.cohort import Cohort

#: Site shifts of the risk factors (A: European biobank, older; B: admixed hospital cohort;
#: C: African/Asian ancestry cohort with more diabetes and hypertension).
LDL_SHIFT = {"A": 0.10, "B": 0.0, "C": -0.15}
SBP_SHIFT = {"A": 0.0, "B": 2.0, "C": 4.0}
SMOKING = {"A": 0.14, "B": 0.19, "C": 0.22}
DIABETES = {"A": -3.15, "B": -2.85, "C": -2.45}
#: Site baseline risks (the event model's intercepts, log-odds at the reference values).
INTERCEPT = {"A": -2.5, "B": -2.1, "C": -1.9}
#: Per-unit log-odds of the event: (column, centre, unit, coefficient).
LOG_ODDS: dict[str, tuple[str, float, float, float]] = {
    "age": ("age", 60.0, 10.0, 0.65),
    "male": ("sex", 0.0, 1.0, 0.45),
    "ldl": ("ldl", 3.4, 1.0, 0.22),
    "sbp": ("sbp", 130.0, 10.0, 0.18),
    "smoking": ("smoking", 0.0, 1.0, 0.65),
    "diabetes": ("diabetes", 0.0, 1.0, 0.60),
}
CAUSAL_LOG_ODDS_SCALE = 0.5
N_POLYGENIC = 300
POLYGENIC_VARIANCE = 0.16
POLYGENIC_MIN_MAF = 0.05
CENSOR_YEARS = 10.0
WEIBULL_SHAPE = 1.5
WEIBULL_SCALE_YEARS = 10.0
LDL_SBP_CORRELATION = 0.2


def expit(x: np.ndarray | float) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def logit(p: float) -> float:
    """``log(p / (1 - p))``."""
    return float(np.log(p / (1.0 - p)))


@dataclass(frozen=True)
class GeneticEffect:
    """A variant's per-ALT-allele log-odds on the CVD event, centred at ``2 * panel_freq``."""

    row: int
    log_odds: float
    panel_freq: float  # ALT frequency in the reference panel, 6 decimals


def genetic_log_odds(cohort: Cohort, effects: list[GeneticEffect]) -> np.ndarray:
    """``(n,)`` sum of ``log_odds * (alt_count - 2 * panel_freq)`` over ``effects``."""
    where = np.searchsorted(cohort.rows, [e.row for e in effects])
    h = cohort.haps[where]
    d = (h[:, 0::2] + h[:, 1::2]).astype(float)  # (n_effects, n) true ALT counts
    beta = np.array([e.log_odds for e in effects])
    centre = 2 * np.array([e.panel_freq for e in effects])
    return beta @ (d - centre[:, None])


@dataclass
class SiteClinical:
    """Per-person clinical data of one site (VCF column order), all ``(n,)`` arrays."""

    ldl: np.ndarray  # mmol/L, 2 decimals
    sbp: np.ndarray  # mmHg, whole numbers (float)
    smoking: np.ndarray  # 0/1
    diabetes: np.ndarray  # 0/1
    genetic: np.ndarray  # G, the genetic log-odds
    eta: np.ndarray  # the event's linear predictor
    cvd: np.ndarray  # 1 = no event, 2 = event
    followup: np.ndarray  # years, 2 decimals

    def copy_person(self, i: int, j: int) -> None:
        """Give person ``i`` person ``j``'s values (a duplicate sample is the same person)."""
        for name in ("ldl", "sbp", "smoking", "diabetes", "genetic", "eta", "cvd", "followup"):
            arr = getattr(self, name)
            arr[i] = arr[j]


def design(
    *,
    age: np.ndarray,
    sex: np.ndarray,
    ldl: np.ndarray,
    sbp: np.ndarray,
    smoking: np.ndarray,
    diabetes: np.ndarray,
) -> np.ndarray:
    """The event model's centred, scaled features, ``(n, 6)`` in :data:`LOG_ODDS` order."""
    values = {"age": age, "sex": (sex == 1).astype(float), "ldl": ldl, "sbp": sbp}
    values |= {"smoking": np.asarray(smoking, float), "diabetes": np.asarray(diabetes, float)}
    return np.column_stack(
        [(values[col] - centre) / unit for col, centre, unit, _ in LOG_ODDS.values()]
    )


def simulate_clinical(
    site: str,
    *,
    age: np.ndarray,
    sex: np.ndarray,
    genetic: np.ndarray,
    rng: np.random.Generator,
) -> SiteClinical:
    """Draw the risk factors, the 10-year event and follow-up of ``n`` people at ``site``.

    Parameters
    ----------
    site
        Site name (a key of :data:`INTERCEPT`).
    age, sex
        ``(n,)`` baseline age in years and plink2 sex (1 = male, 2 = female).
    genetic
        ``(n,)`` genetic log-odds ``G`` (see the module doc).
    rng
        The site's clinical random stream (six ``(n,)`` draws, in a fixed order).
    """
    n = age.size
    a = (age - 50.0) / 10.0
    male = (sex == 1).astype(float)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    u_smoke, u_diab, u_event, v_time = (rng.random(n) for _ in range(4))
    rho = LDL_SBP_CORRELATION
    ldl = np.clip(3.4 + LDL_SHIFT[site] + 0.15 * a + 0.85 * z1, 0.5, 9.0).round(2)
    sbp_noise = 16.0 * (rho * z1 + np.sqrt(1 - rho**2) * z2)
    sbp = np.clip(130.0 + SBP_SHIFT[site] + 5.0 * a + 3.0 * male + sbp_noise, 80, 230).round()
    smoking = (u_smoke < expit(logit(SMOKING[site]) + 0.35 * male - 0.25 * a)).astype(np.int8)
    diabetes = (u_diab < expit(DIABETES[site] + 0.45 * a + 0.30 * male)).astype(np.int8)
    x = design(age=age, sex=sex, ldl=ldl, sbp=sbp, smoking=smoking, diabetes=diabetes)
    coef = np.array([c for *_, c in LOG_ODDS.values()])
    eta = INTERCEPT[site] + x @ coef + genetic
    event = u_event < expit(eta)
    # Weibull PH time, conditioned on falling within the follow-up: inverse CDF on (0, F(10)).
    hazard = np.exp(eta)
    f10 = -np.expm1(-((CENSOR_YEARS / WEIBULL_SCALE_YEARS) ** WEIBULL_SHAPE) * hazard)
    t = WEIBULL_SCALE_YEARS * (-np.log1p(-v_time * f10) / hazard) ** (1 / WEIBULL_SHAPE)
    followup = np.where(event, np.clip(t.round(2), 0.01, CENSOR_YEARS), CENSOR_YEARS)
    return SiteClinical(
        ldl=ldl,
        sbp=sbp,
        smoking=smoking,
        diabetes=diabetes,
        genetic=np.asarray(genetic, float),
        eta=eta,
        cvd=np.where(event, 2, 1).astype(np.int8),
        followup=followup,
    )


def polygenic_effects(freq: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Per-ALT log-odds of the polygenic background: N(0, 1) draws scaled so that
    ``sum(delta^2 * 2 p (1 - p)) = POLYGENIC_VARIANCE``, rounded to 6 decimals (as written)."""
    raw = rng.standard_normal(freq.size)
    scale = np.sqrt(POLYGENIC_VARIANCE / np.sum(raw**2 * 2 * freq * (1 - freq)))
    return (raw * scale).round(6)
