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
    import pgenlib
    from scipy.special import expit

    k = len(site.columns)
    m = len(site.passes)
    out = np.zeros((m, _n_terms(k)))
    iu = np.triu_indices(k + 1)
    reader = pgenlib.PgenReader(
        bytes(site.pgen), raw_sample_ct=site.raw_ct, sample_subset=site.keep
    )
    y, c = site.y, site.c
    try:
        for start, g in site._chunks(reader, m):
            b = beta[start : start + len(g)]
            eta = b[:, :k] @ c.T + b[:, k : k + 1] * g
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
    return out


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
