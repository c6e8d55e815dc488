"""The statistics of `benchmarks/study.py`: paired differences, their test and interval,
Holm's correction and the seed count a power calculation asks for.

Every comparison of the study is paired: two variants trained from the same seed's
shared start (`sgma_keras.workflow.fork`), so their difference per seed is one
observation and the seeds are the sample. The test is the two-sided paired t-test on
those differences; its 95% interval is the t interval of their mean.
"""

import math

import numpy as np
from scipy import stats


def paired(a, b):
    """Differences `a[s] - b[s]` over the seeds both dicts {seed: value} have, in
    seed order (a seed missing on either side or valued None is left out)."""
    seeds = sorted(s for s in a if s in b and a[s] is not None and b[s] is not None)
    return seeds, np.array([a[s] - b[s] for s in seeds], dtype=float)


def paired_test(differences, level=0.95):
    """Mean, SD, n, the `level` t interval of the mean and the two-sided p-value.

    With n < 2 nothing is estimable: interval and p are None. All-equal differences
    (SD 0) give a zero-width interval and p = 0 (a nonzero mean) or 1.
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else None,
           "sd": float(d.std(ddof=1)) if n > 1 else None, "ci": None, "p": None}
    if n < 2:
        return out
    if out["sd"] == 0:
        out["ci"] = (out["mean"], out["mean"])
        out["p"] = 0.0 if out["mean"] != 0 else 1.0
        return out
    half = stats.t.ppf(0.5 + level / 2, n - 1) * out["sd"] / math.sqrt(n)
    out["ci"] = (out["mean"] - half, out["mean"] + half)
    out["p"] = float(stats.ttest_1samp(d, 0.0).pvalue)
    return out


def holm(pvalues):
    """Holm's step-down adjusted p-values (same order; None stays None).

    Adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)) with the p-values
    sorted ascending, m the number of tests with a p-value: the family-wise error is
    at most alpha when every hypothesis whose adjusted p is under alpha is rejected.
    """
    index = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(index)
    adjusted = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(index, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def power(n, sd, delta, alpha):
    """Power of the two-sided paired t-test at n seeds to detect a true mean
    difference `delta` when the differences' SD is `sd` (noncentral t)."""
    if n < 2:
        return 0.0
    if sd == 0:
        return 1.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = delta / (sd / math.sqrt(n))
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(sd, delta, alpha, target=0.8, most=200):
    """The smallest seed count whose power reaches `target` (None above `most`)."""
    for n in range(2, most + 1):
        if power(n, sd, delta, alpha) >= target:
            return n
    return None


def verdict(test, adjusted_p, alpha=0.05):
    """"holds" (the first variant better), "reversed" or "not shown"."""
    if adjusted_p is None or test["mean"] is None:
        return "not measured"
    if adjusted_p < alpha:
        return "holds" if test["mean"] > 0 else "reversed"
    return "not shown"
