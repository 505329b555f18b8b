"""Binary traits: pooled logistic regression by federated Newton-Raphson rounds.

Logistic regression has no fixed sufficient statistics, but each Newton step only needs sums
over samples at the current coefficients: per variant the score ``U = X'(y - p)`` and the
information ``H = X'WX`` (``W = diag(p(1 - p))``) with ``X = [C, g]``. So every round the centre
sends the current coefficients (one row of k + 1 numbers per variant), each site returns its
``U`` and ``H`` (optionally masked exactly as in :mod:`snakemake_fedgen.exact.secure`, under a
fresh round id per iteration), and the centre adds them and takes the step
``beta += H^-1 U``. At convergence ``se = sqrt((H^-1)_gg)``, ``z = beta / se``, two-sided normal
p, as ``plink2 --glm no-firth`` reports.

Phenotypes use plink2's case/control coding: 1 = control, 2 = case; 0, -9 and NA are missing.
Missing dosages are mean-imputed at the site as in linear exact mode.

This module holds the site step (:func:`site_terms`), the centre step (:func:`newton_step`)
and an in-process driver (:func:`fit_federated`) used by tests and demos. Running the rounds as
TES tasks through a workflow is not done yet (see the docs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from snakemake_executor_plugin_fedgen.errors import (
    ConfigError,
    EgressRefused,
    SecureAggregationError,
)

from snakemake_fedgen.exact.aggregates import (
    _count_psam_rows,
    _load_model_data,
    build_design,
    read_variant_table,
    variant_keys,
)

__all__ = ["LogisticFit", "LogisticSite", "fit_federated", "newton_step", "site_terms"]

_CHUNK = 256


@dataclass
class LogisticSite:
    """A site's model data; lives at the site only (never sent anywhere)."""

    site: str
    sites: tuple[str, ...]
    columns: tuple[str, ...]
    y: np.ndarray  # (n,) 0/1
    c: np.ndarray  # (n, k)
    pgen: Path
    raw_ct: int
    keep: np.ndarray  # sorted sample indices into the .pgen
    variants: dict[str, np.ndarray]
    passes: np.ndarray  # (m,) bool: the variant passes this site's MAC guard

    @classmethod
    def load(
        cls,
        pfile: Path | str,
        pheno: Path,
        *,
        pheno_name: str,
        site: str,
        sites: Sequence[str],
        covar: Path | None = None,
        covar_names: Sequence[str] = (),
        site_covar_names: Sequence[str] = (),
        min_n: int = 50,
        min_mac: float = 10.0,
    ) -> LogisticSite:
        """Load phenotype, covariates and the MAC guard for a site's fileset."""
        import pgenlib

        sites = tuple(sites)
        if site not in sites:
            raise ConfigError(f"site {site!r} is not in the site order {','.join(sites)}")
        prefix = str(pfile)
        psam = Path(prefix + ".psam")
        keep, y, cov = _load_model_data(
            psam,
            Path(pheno),
            pheno_name=pheno_name,
            covar=covar,
            covar_names=[*covar_names, *site_covar_names],
        )
        bad = ~np.isin(y, (0.0, 1.0, 2.0))
        if bad.any():
            raise ConfigError(
                f"phenotype {pheno_name!r} in {pheno}: value {y[bad][0]!r} is not a "
                "case/control code (1 = control, 2 = case, 0/-9/NA = missing)"
            )
        cases = y != 0.0
        keep, y, cov = keep[cases], y[cases] - 1.0, cov[cases]
        if len(keep) < min_n:
            raise EgressRefused(f"site {site}: only {len(keep)} samples, below min_n={min_n}")
        columns, c = build_design(
            cov, covariates=covar_names, site_covariates=site_covar_names, site=site, sites=sites
        )
        variants = read_variant_table(Path(prefix + ".pvar"))
        raw_ct = _count_psam_rows(psam)
        data = cls(
            site=site,
            sites=sites,
            columns=columns,
            y=y,
            c=c,
            pgen=Path(prefix + ".pgen"),
            raw_ct=raw_ct,
            keep=keep,
            variants=variants,
            passes=np.zeros(len(variants["pos"]), dtype=bool),
        )
        m = len(variants["pos"])
        ac = np.empty(m)
        reader = pgenlib.PgenReader(bytes(data.pgen), raw_sample_ct=raw_ct, sample_subset=keep)
        try:
            for start, dos in data._chunks(reader, m):
                ac[start : start + len(dos)] = dos.sum(axis=1)
        finally:
            reader.close()
        n = len(keep)
        data.passes = np.minimum(ac, 2.0 * n - ac) >= min_mac
        return data

    def _chunks(self, reader, m: int):
        buf = np.empty((_CHUNK, len(self.keep)))
        for start in range(0, m, _CHUNK):
            end = min(start + _CHUNK, m)
            dos = buf[: end - start]
            reader.read_dosages_range(start, end, dos)
            missing = dos < 0
            if missing.any():
                counts = dos.shape[1] - missing.sum(axis=1)
                sums = np.where(missing, 0.0, dos).sum(axis=1)
                means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
                dos[missing] = np.broadcast_to(means[:, None], dos.shape)[missing]
            yield start, dos


def _n_terms(k: int) -> int:
    kk = k + 1
    return 1 + kk + kk * (kk + 1) // 2 + 1


def site_terms(site: LogisticSite, beta: np.ndarray) -> np.ndarray:
    """One site's Newton terms at ``beta`` for every variant (runs at the site).

    Parameters
    ----------
    site : LogisticSite
    beta : ndarray, shape (m, k + 1)
        Current coefficients per variant (covariate columns, then the dosage).

    Returns
    -------
    ndarray, shape (m, 1 + (k+1) + (k+1)(k+2)/2 + 1)
        Per variant: ``present`` (1 if the variant passes this site's guard, else the row is
        zero), the score ``U``, the upper triangle of ``H`` row by row, the log-likelihood.
    """
    return _site_pass(site, beta)[0]


def _site_pass(site: LogisticSite, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One read of the site's dosages at ``beta``: :func:`site_terms`, each variant's dosage
    sum, and which variants' linear predictor exceeds :data:`MAX_LINEAR_PREDICTOR` for some
    person (:func:`site_round_terms` sends no terms for those)."""
    import pgenlib
    from scipy.special import expit

    k = len(site.columns)
    m = len(site.passes)
    out = np.zeros((m, _n_terms(k)))
    ac = np.zeros(m)
    steep = np.zeros(m, dtype=bool)
    iu = np.triu_indices(k + 1)
    reader = pgenlib.PgenReader(
        bytes(site.pgen), raw_sample_ct=site.raw_ct, sample_subset=site.keep
    )
    y, c = site.y, site.c
    try:
        for start, g in site._chunks(reader, m):
            b = beta[start : start + len(g)]
            eta = b[:, :k] @ c.T + b[:, k : k + 1] * g
            steep[start : start + len(g)] = np.abs(eta).max(axis=1) > MAX_LINEAR_PREDICTOR
            ac[start : start + len(g)] = g.sum(axis=1)
            p = expit(eta)
            r = y[None, :] - p
            w = p * (1.0 - p)
            h = np.empty((len(g), k + 1, k + 1))
            h[:, :k, :k] = np.einsum("vn,na,nb->vab", w, c, c, optimize=True)
            h[:, :k, k] = (w * g) @ c
            h[:, k, :k] = h[:, :k, k]
            h[:, k, k] = np.einsum("vn,vn->v", w, g * g)
            rows = out[start : start + len(g)]
            rows[:, 0] = 1.0
            rows[:, 1 : 1 + k] = r @ c
            rows[:, 1 + k] = np.einsum("vn,vn->v", r, g)
            rows[:, 2 + k : -1] = h[:, iu[0], iu[1]]
            rows[:, -1] = (y[None, :] * eta - np.logaddexp(0.0, eta)).sum(axis=1)
    finally:
        reader.close()
    out[~site.passes] = 0.0
    return out, ac, steep


def newton_step(total: np.ndarray, beta: np.ndarray, *, n_sites: int):
    """Centre: one Newton-Raphson step from summed terms.

    Returns
    -------
    (new_beta, step, cov_gg, usable)
        ``step`` is ``H^-1 U`` (m, k+1); ``cov_gg`` the dosage diagonal of ``H^-1``;
        ``usable`` marks variants present at every site with a non-singular ``H``.
    """
    kk = beta.shape[1]
    usable = np.rint(total[:, 0]) == n_sites
    u = total[:, 1 : 1 + kk]
    h = np.zeros((len(total), kk, kk))
    iu = np.triu_indices(kk)
    h[:, iu[0], iu[1]] = total[:, 1 + kk : -1]
    h = h + np.triu(h, 1).transpose(0, 2, 1)
    h[~usable] = np.eye(kk)
    u = np.where(usable[:, None], u, 0.0)
    try:
        step = np.linalg.solve(h, u[:, :, None])[:, :, 0]
        cov_gg = np.linalg.inv(h)[:, -1, -1]
    except np.linalg.LinAlgError:
        step = np.full_like(u, np.nan)
        cov_gg = np.full(len(u), np.nan)
        for i in range(len(u)):
            try:
                step[i] = np.linalg.solve(h[i], u[i])
                cov_gg[i] = np.linalg.inv(h[i])[-1, -1]
            except np.linalg.LinAlgError:
                usable[i] = False
    return beta + step, step, cov_gg, usable


@dataclass
class LogisticFit:
    """Pooled logistic results per variant (NaN where not usable or not converged)."""

    variants: dict[str, np.ndarray]
    n: int
    beta: np.ndarray
    se: np.ndarray
    z: np.ndarray
    p: np.ndarray
    iterations: int
    converged: np.ndarray


def fit_federated(
    sites: Sequence[LogisticSite],
    *,
    keys: Mapping[str, object] | None = None,
    public_keys: Mapping[str, str] | None = None,
    round_id: str = "logistic",
    max_iter: int = 25,
    tol: float = 1e-10,
    frac_bits: int = 40,
) -> LogisticFit:
    """Run federated Newton-Raphson in-process (each site's step sees only its own data).

    With ``keys`` (site -> X25519 private key) and ``public_keys`` every round's site terms are
    masked (:func:`~snakemake_fedgen.exact.secure.mask_vector`) under round id
    ``{round_id}.it{t}`` and the driver only ever adds masked vectors, like the centre would.
    """
    from scipy import stats

    from snakemake_fedgen.exact import secure

    first = sites[0]
    for s in sites:
        if s.columns != first.columns or not np.array_equal(
            s.variants["pos"], first.variants["pos"]
        ):
            raise ConfigError(
                f"site {s.site}: columns or variant list differ from site {first.site}"
            )
    k = len(first.columns)
    m = len(first.passes)
    participants = tuple(x for x in first.sites if x in {s.site for s in sites})
    if keys is not None and len(participants) < secure.MIN_PARTICIPANTS:
        raise SecureAggregationError("secure logistic rounds need at least three sites")
    beta = np.zeros((m, k + 1))
    done = np.zeros(m, dtype=bool)
    cov_gg = np.full(m, np.nan)
    usable = np.zeros(m, dtype=bool)
    it = 0
    for it in range(1, max_iter + 1):
        if keys is None:
            total = sum(site_terms(s, beta) for s in sites)
        else:
            words = None
            context = f"logistic\0{','.join(first.columns)}\0{m}"
            for s in sites:
                masked = secure.mask_vector(
                    secure.encode(site_terms(s, beta).ravel(), frac_bits),
                    private_key=keys[s.site],
                    public_keys=public_keys or {},
                    site=s.site,
                    participants=participants,
                    round_id=f"{round_id}.it{it}",
                    context=context,
                )
                words = masked if words is None else secure.ring_add(words, masked)
            total = secure.decode(words, frac_bits).reshape(m, _n_terms(k))
        new_beta, step, cov_gg, usable = newton_step(total, beta, n_sites=len(sites))
        # Freeze converged variants: their terms at the final beta gave cov_gg.
        moving = ~done
        beta[moving] = new_beta[moving]
        done |= ~usable | (
            np.abs(step).max(axis=1) < tol * np.maximum(1.0, np.abs(beta).max(axis=1))
        )
        if done.all():
            break
    converged = done & usable
    n = sum(len(s.y) for s in sites)
    b = np.where(converged, beta[:, -1], np.nan)
    se = np.sqrt(np.where(converged, cov_gg, np.nan))
    z = b / se
    p = np.exp(stats.norm.logsf(np.abs(z)) + math.log(2.0))
    return LogisticFit(
        variants=first.variants, n=n, beta=b, se=se, z=z, p=p, iterations=it, converged=converged
    )


# -- the rounds as files: the coordinator's state, a site's terms, the centre's step ----------

#: Format of the coordinator's round state (sent to every site as a task input).
STATE_FORMAT = "fedgen-logit-state/1"
#: ``kind`` of a site's per-variant Newton terms (``fedgen-sums/1``, airlock kind ``sums``).
TERMS_KIND = "exact-logit-terms"
#: A site answers no terms for a variant whose linear predictor at the state's coefficients
#: exceeds this at any of its people (probability within e^-30 of 0 or 1). An honest fit never
#: gets there (plink2 --glm stops at separation); a coordinator choosing coefficients so that
#: the curve jumps between two people would (it could then read one person's phenotype from
#: the difference of two rounds), and must make the linear predictor that steep to do it.
MAX_LINEAR_PREDICTOR = 30.0


def term_names(k: int) -> list[str]:
    """Names of the per-variant terms :func:`site_terms` returns for ``k`` covariate columns."""
    iu = np.triu_indices(k + 1)
    return [
        "p",
        *(f"u{j}" for j in range(k + 1)),
        *(f"h{a}_{b}" for a, b in zip(iu[0], iu[1], strict=True)),
        "ll",
    ]


def _state_digest(state: Mapping[str, object]) -> str:
    import hashlib
    import json

    body = {k: v for k, v in state.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def init_state(
    *, round_id: str, sites: Sequence[str], max_iter: int = 25, tol: float = 1e-10
) -> dict:
    """The state before the first round: every coefficient zero on the sites' shared layout."""
    if max_iter < 1:
        raise ConfigError(f"max_iter must be at least 1; got {max_iter}")
    state: dict = {
        "format": STATE_FORMAT,
        "round": round_id,
        "iteration": 0,
        "sites": list(sites),
        "max_iter": int(max_iter),
        "tol": float(tol),
        "columns": None,
        "variants": None,
        "beta": None,
        "done": None,
        "usable": None,
        "cov_gg": None,
        "n": None,
        "n_cases": None,
        "stopped": False,
    }
    state["digest"] = _state_digest(state)
    return state


def write_state(state: Mapping[str, object], path: Path) -> None:
    """Write a round state as JSON, atomically (coefficients as exact float repr)."""
    import json

    from snakemake_executor_plugin_fedgen.fileio import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(path)) as f:
        json.dump(state, f)
        f.write("\n")


def read_state(path: Path) -> dict:
    """Read a round state and check its format and digest (a changed state is refused)."""
    import json

    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable {STATE_FORMAT} file ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not a {STATE_FORMAT} file (format key missing or different)")
    if state.get("digest") != _state_digest(state):
        raise ConfigError(f"{path}: the state's digest does not match its content")
    return state


def _state_beta(state: Mapping[str, object], m: int, kk: int) -> np.ndarray:
    if state["beta"] is None:
        return np.zeros((m, kk))
    beta = np.asarray(state["beta"], dtype=np.float64).reshape(m, kk)
    if not np.isfinite(beta).all():
        raise ConfigError("the state holds non-finite coefficients")
    return beta


def site_round_terms(
    site: LogisticSite,
    state: Mapping[str, object],
    layout: Mapping[str, np.ndarray],
):
    """A site's upload for the round after ``state``: its Newton terms on the shared layout.

    ``layout`` is the public variant list every site lays its terms out on (the reference
    panel's); the site's variants not on it are left out, the layout's variants the site lacks
    (or withholds by its MAC guard, or refuses by :data:`MAX_LINEAR_PREDICTOR`) get zero rows.

    Returns
    -------
    (SiteSums, dict)
        The plain sums (entries ``n``, ``n_cases``, then ``v<row>.<term>`` with ``term`` from
        :func:`term_names` plus ``ac``, the dosage sum) and counts of what was left out.
    """
    from snakemake_fedgen.exact.sums import SiteSums

    keys = variant_keys(layout)
    k = len(site.columns)
    kk = k + 1
    if state.get("sites") and list(state["sites"]) != list(site.sites):
        raise ConfigError(
            f"site {site.site}: the state's sites {','.join(state['sites'])} differ from the "
            f"site order {','.join(site.sites)}"
        )
    if state["variants"] is not None and list(state["variants"]) != keys:
        raise ConfigError(
            f"site {site.site}: the state's variant layout ({len(state['variants'])} variants) "
            f"is not this site's panel variant list ({len(keys)} variants)"
        )
    if state["columns"] is not None and tuple(state["columns"]) != site.columns:
        raise ConfigError(
            f"site {site.site}: the state's columns {','.join(state['columns'])} differ from "
            f"this site's design {','.join(site.columns)}"
        )
    if state.get("stopped"):
        raise ConfigError(f"round {state['round']}: the state is final; no further round runs")
    beta = _state_beta(state, len(keys), kk)
    index = {key: i for i, key in enumerate(keys)}
    mine = variant_keys(site.variants)
    at = np.array([index.get(key, -1) for key in mine], dtype=np.int64)
    on_layout = at >= 0
    site_beta = np.zeros((len(mine), kk))
    site_beta[on_layout] = beta[at[on_layout]]
    terms, ac, steep = _site_pass(site, site_beta)
    names_t = term_names(k)
    width = len(names_t) + 1
    table = np.zeros((len(keys), width))
    keep = on_layout & site.passes
    sent = keep & ~steep
    table[at[sent], : len(names_t)] = terms[sent]
    table[at[sent], -1] = ac[sent]
    names = ["n", "n_cases"]
    for i in range(len(keys)):
        names.extend(f"v{i}.{t}" for t in (*names_t, "ac"))
    values = np.concatenate([[float(len(site.y)), float(site.y.sum())], table.ravel()])
    iteration = int(state["iteration"]) + 1
    sums = SiteSums(
        site=site.site,
        round_id=f"{state['round']}.it{iteration}",
        kind=TERMS_KIND,
        names=tuple(names),
        values=values,
        meta={
            "state": str(state["digest"]),
            "iteration": str(iteration),
            "design": _design_digest(site.columns),
        },
        rows=tuple(keys),
    )
    counts = {
        "layout": len(keys),
        "site_variants": len(mine),
        "not_on_layout": int((~on_layout).sum()),
        "withheld_mac": int((on_layout & ~site.passes).sum()),
        "refused_steep": int((keep & steep).sum()),
        "sent": int(sent.sum()),
    }
    return sums, counts


def _design_digest(columns: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\0".join(columns).encode()).hexdigest()[:16]


def centre_step(state: Mapping[str, object], uploads: Sequence) -> dict:
    """The centre: add one round's uploads (all sites, plain or masked) and step every variant.

    Variants whose step is below ``tol`` (relative to their coefficients), or that are not usable
    (absent at a site, singular), are frozen; the state is ``stopped`` when every variant is
    frozen or ``max_iter`` rounds have run.

    Raises
    ------
    SecureAggregationError, ConfigError
        Uploads of another round or state, a missing site, a changed layout.
    """
    from snakemake_fedgen.exact.sums import add_sums

    designs = {up.meta.get("design") for up in uploads}
    if len(designs) > 1:
        raise SecureAggregationError(
            "the sites' uploads were computed with different design columns (covariates, "
            "site order): check that every site runs the same configuration"
        )
    total = add_sums(list(uploads))
    iteration = int(state["iteration"]) + 1
    if total.round_id != f"{state['round']}.it{iteration}" or total.kind != TERMS_KIND:
        raise SecureAggregationError(
            f"the uploads are of round {total.round_id} ({total.kind}); the state expects "
            f"round {state['round']}.it{iteration}"
        )
    if total.meta.get("state") != state["digest"]:
        raise SecureAggregationError(
            f"round {total.round_id}: the uploads were computed from another state "
            f"({total.meta.get('state')}, expected {state['digest']})"
        )
    sites = list(state["sites"])
    summed = sorted(total.meta.get("sites_summed", "").split(","))
    if summed != sorted(sites):
        raise SecureAggregationError(
            f"round {total.round_id}: uploads from {','.join(summed)}; every site of the state "
            f"({','.join(sites)}) must send one"
        )
    keys = list(total.rows)
    if state["variants"] is not None and list(state["variants"]) != keys:
        raise SecureAggregationError(f"round {total.round_id}: the uploads' layout changed")
    m = len(keys)
    assert total.values is not None
    width = (len(total.values) - 2) // max(m, 1)
    kk = round((-3 + math.sqrt(9 + 8 * (width - 3))) / 2)
    if m == 0 or 2 + m * width != len(total.values) or kk * (kk + 1) // 2 + kk + 3 != width:
        raise SecureAggregationError(
            f"round {total.round_id}: {len(total.values)} entries do not lay out {m} variants"
        )
    table = total.values[2:].reshape(m, width)
    beta = _state_beta(state, m, kk)
    done = np.zeros(m, dtype=bool) if state["done"] is None else np.asarray(state["done"])
    new_beta, step, cov_gg, usable = newton_step(table[:, :-1], beta, n_sites=len(sites))
    moving = ~done
    beta[moving] = new_beta[moving]
    done = (
        done
        | ~usable
        | (
            np.abs(step).max(axis=1)
            < float(state["tol"]) * np.maximum(1.0, np.abs(beta).max(axis=1))
        )
    )
    if not np.isfinite(beta).all():
        bad = ~np.isfinite(beta).all(axis=1)
        beta[bad] = 0.0
        usable = usable & ~bad
        done = done | bad
    stopped = bool(done.all()) or iteration >= int(state["max_iter"])
    n = float(total.values[0])
    new: dict = {
        **{k: v for k, v in state.items() if k != "digest"},
        "iteration": iteration,
        "variants": keys,
        "beta": [float(x) for x in beta.ravel()],
        "done": [bool(x) for x in done],
        "usable": [bool(x) for x in usable],
        "cov_gg": [float(x) if np.isfinite(x) else None for x in cov_gg],
        "ac": [float(x) for x in table[:, -1]],
        "n": round(n),
        "n_cases": round(float(total.values[1])),
        "stopped": stopped,
    }
    new["digest"] = _state_digest(new)
    return new


def state_result(state: Mapping[str, object]):
    """The pooled per-variant results of a final state, and counts of what was not solved.

    Returns
    -------
    (PooledResult, dict)
        ``t`` holds the Wald z; counts ``seen``, ``solved``, ``not_usable`` (absent at a site,
        withheld, refused or singular) and ``not_converged``.
    """
    from scipy import stats

    from snakemake_fedgen.exact.solve import PooledResult

    if not state.get("stopped"):
        raise ConfigError(
            f"round {state['round']}: iteration {state['iteration']} is not final; run the "
            "rounds until the state says stopped"
        )
    keys = list(state["variants"] or [])
    m = len(keys)
    kk = len(state["beta"]) // max(m, 1)
    beta = _state_beta(state, m, kk)
    usable = np.asarray(state["usable"], dtype=bool)
    done = np.asarray(state["done"], dtype=bool)
    cov = np.array([np.nan if v is None else v for v in state["cov_gg"]], dtype=np.float64)
    converged = usable & done
    b = np.where(converged, beta[:, -1], np.nan)
    se = np.sqrt(np.where(converged & (cov > 0), cov, np.nan))
    z = b / se
    logp = stats.norm.logsf(np.abs(z)) + math.log(2.0)
    parts = [key.split(":") for key in keys]
    n = int(state["n"])
    result = PooledResult(
        chrom=np.array([p[0] for p in parts], dtype=object),
        pos=np.array([int(p[1]) for p in parts], dtype=np.int64),
        vid=np.array(keys, dtype=object),
        ref=np.array([p[2] for p in parts], dtype=object),
        alt=np.array([p[3] for p in parts], dtype=object),
        n=n,
        df=0,
        alt_freq=np.asarray(state["ac"], dtype=np.float64) / (2.0 * n),
        beta=b,
        se=se,
        t=z,
        p=np.exp(logp),
        neg_log10_p=-logp / math.log(10.0),
        columns_used=tuple(state.get("columns") or ()),
    )
    solved = int(np.count_nonzero(np.isfinite(b) & np.isfinite(se)))
    counts = {
        "seen": m,
        "solved": solved,
        "not_usable": int((~usable).sum()),
        "not_converged": int((usable & ~done).sum()),
    }
    return result, counts
