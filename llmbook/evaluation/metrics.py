"""Evaluation metrics for chapter 6, written from their definitions.

* Classification: :func:`confusion_matrix`, :func:`classification_report` (accuracy,
  precision, recall, F1 per class and macro-averaged).
* Generation: :func:`bleu` (corpus BLEU, numerically equal to ``sacrebleu.corpus_bleu`` with
  the same tokenisation and smoothing), :func:`rouge` / :func:`rouge_corpus` (ROUGE-1/2/L at
  character or word level, equal to Google's ``rouge-score`` package given the same
  tokeniser) and :func:`exact_match`.

The tests in ``tests/test_metrics.py`` compare every function with its reference package.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmbook.text.chinese import is_punct

__all__ = [
    "accuracy",
    "confusion_matrix",
    "classification_report",
    "ClassificationReport",
    "bleu",
    "BLEUResult",
    "tokenize_for_bleu",
    "rouge",
    "rouge_corpus",
    "RougeScore",
    "rouge_tokenize",
    "exact_match",
    "ngrams",
    "lcs_length",
]


# --------------------------------------------------------------------------- classification


def _check_pair(y_true: Sequence[int], y_pred: Sequence[int]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; "
            "pass one prediction per gold label"
        )
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one example")


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of positions where ``y_pred`` equals ``y_true``."""
    _check_pair(y_true, y_pred)
    return sum(int(a == b) for a, b in zip(y_true, y_pred)) / len(y_true)


def confusion_matrix(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None
) -> list[list[int]]:
    """Counts ``m[i][j]`` of examples with gold ``labels[i]`` predicted as ``labels[j]``.

    ``labels`` defaults to the sorted union of the labels seen (same as scikit-learn).
    """
    _check_pair(y_true, y_pred)
    if labels is None:
        labels = sorted(set(y_true) | set(y_pred))
    index = {lab: i for i, lab in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred):
        if t not in index or p not in index:
            raise ValueError(
                f"label {t if t not in index else p!r} is not in labels={list(labels)}; "
                "add it to labels or leave labels=None"
            )
        m[index[t]][index[p]] += 1
    return m


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy plus per-class and macro-averaged precision, recall and F1.

    For class :math:`c`: :math:`P_c = TP_c/(TP_c+FP_c)`, :math:`R_c = TP_c/(TP_c+FN_c)`,
    :math:`F1_c = 2P_cR_c/(P_c+R_c)` (0 when undefined, like scikit-learn's
    ``zero_division=0``); macro scores are unweighted means over classes.
    """

    labels: tuple[int, ...]
    accuracy: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    matrix: tuple[tuple[int, ...], ...]

    @property
    def macro_precision(self) -> float:
        return sum(self.precision) / len(self.precision)

    @property
    def macro_recall(self) -> float:
        return sum(self.recall) / len(self.recall)

    @property
    def macro_f1(self) -> float:
        return sum(self.f1) / len(self.f1)

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        """Accuracy and macro P/R/F1, rounded (for tables)."""
        return {
            "accuracy": round(self.accuracy, digits),
            "precision": round(self.macro_precision, digits),
            "recall": round(self.macro_recall, digits),
            "f1": round(self.macro_f1, digits),
        }


def _safe_div(a: float, b: float) -> float:
    return a / b if b else 0.0


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None
) -> ClassificationReport:
    """Compute :class:`ClassificationReport` from gold and predicted labels."""
    if labels is None:
        labels = sorted(set(y_true) | set(y_pred))
    m = confusion_matrix(y_true, y_pred, labels)
    k = len(labels)
    tp = [m[i][i] for i in range(k)]
    col = [sum(m[r][i] for r in range(k)) for i in range(k)]
    row = [sum(m[i]) for i in range(k)]
    prec = [_safe_div(tp[i], col[i]) for i in range(k)]
    rec = [_safe_div(tp[i], row[i]) for i in range(k)]
    f1 = [_safe_div(2 * prec[i] * rec[i], prec[i] + rec[i]) for i in range(k)]
    return ClassificationReport(
        labels=tuple(labels),
        accuracy=sum(tp) / len(y_true),
        precision=tuple(prec),
        recall=tuple(rec),
        f1=tuple(f1),
        support=tuple(row),
        matrix=tuple(tuple(r) for r in m),
    )


# --------------------------------------------------------------------------- BLEU


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Multiset of the ``n``-grams of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def tokenize_for_bleu(text: str, tokenize: str = "none") -> list[str]:
    """Split ``text`` into BLEU tokens.

    ``"none"``: split on whitespace (use it for text that is already tokenised, e.g. pinyin
    syllables ``"chuang2 qian2"``); ``"char"``: every non-space character is a token (use it
    for Chinese).  These match sacrebleu's ``tokenize="none"`` and ``tokenize="char"``.
    """
    if tokenize == "none":
        return text.split()
    if tokenize == "char":
        return [c for c in text if not c.isspace()]
    raise ValueError(f"tokenize must be 'none' or 'char', got {tokenize!r}")


@dataclass(frozen=True)
class BLEUResult:
    """Corpus BLEU (0–100) with its sufficient statistics."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    sys_len: int
    ref_len: int

    def __float__(self) -> float:
        return self.score


def bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenize: str = "none",
    max_order: int = 4,
    smooth: str = "exp",
) -> BLEUResult:
    r"""Corpus-level BLEU :cite:`papineni2002bleu` on a 0–100 scale.

    .. math:: \mathrm{BLEU} = \mathrm{BP}\cdot\exp\Big(\frac1N\sum_{n=1}^N \log p_n\Big),\quad
              \mathrm{BP} = \min\big(1, e^{1-r/c}\big)

    where :math:`p_n` is the clipped n-gram precision summed over the corpus, :math:`c` the
    total hypothesis length and :math:`r` the total length of the reference closest in
    length to each hypothesis.  ``references`` is one string per hypothesis, or a list of
    reference strings per hypothesis.  ``smooth="exp"`` (sacrebleu's default, the
    mteval-v13a rule: the k-th zero precision becomes :math:`1/(2^k\,\text{total}_n)`) or
    ``"none"``.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; "
            "give one reference (or one list of references) per hypothesis"
        )
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none', got {smooth!r}")
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}")
    correct = [0] * max_order
    total = [0] * max_order
    sys_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        ref_list = [refs] if isinstance(refs, str) else list(refs)
        if not ref_list:
            raise ValueError("a hypothesis has an empty list of references; give at least one")
        h = tokenize_for_bleu(hyp, tokenize)
        rs = [tokenize_for_bleu(r, tokenize) for r in ref_list]
        sys_len += len(h)
        # closest reference length, ties broken towards the shorter one
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_order + 1):
            hyp_counts = ngrams(h, n)
            max_ref: Counter[tuple[str, ...]] = Counter()
            for r in rs:
                max_ref |= ngrams(r, n)
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in hyp_counts.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * max_order
    if not any(correct):
        return BLEUResult(0.0, tuple(precisions), bp, sys_len, ref_len)
    smooth_factor = 1.0
    for n in range(max_order):
        if total[n] == 0:
            break
        if correct[n] == 0:
            if smooth == "exp":
                smooth_factor *= 2
                precisions[n] = 100.0 / (smooth_factor * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    log_sum = sum(math.log(p) if p > 0 else -9999999999.0 for p in precisions)
    score = bp * math.exp(log_sum / max_order)
    return BLEUResult(score, tuple(precisions), bp, sys_len, ref_len)


# --------------------------------------------------------------------------- ROUGE


def rouge_tokenize(text: str, level: str = "char") -> list[str]:
    """Tokens for Chinese ROUGE.

    ``"char"``: every character except whitespace and punctuation; ``"word"``: jieba words,
    dropping whitespace and punctuation tokens.  (The English default of ``rouge-score``
    deletes every non-ASCII character, so Chinese needs one of these.)
    """
    if level == "char":
        return [c for c in text if not c.isspace() and not is_punct(c)]
    if level == "word":
        import jieba

        return [w for w in jieba.lcut(text) if w.strip() and not is_punct(w)]
    raise ValueError(f"level must be 'char' or 'word', got {level!r}")


@dataclass(frozen=True)
class RougeScore:
    """Precision, recall and F-measure of one ROUGE variant."""

    precision: float
    recall: float
    fmeasure: float


def _prf(overlap: float, n_pred: int, n_ref: int) -> RougeScore:
    p = overlap / n_pred if n_pred else 0.0
    r = overlap / n_ref if n_ref else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return RougeScore(p, r, f)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (O(|a|·|b|) DP)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge(
    prediction: str,
    reference: str,
    *,
    level: str = "char",
    tokenizer: Callable[[str], list[str]] | None = None,
) -> dict[str, RougeScore]:
    r"""ROUGE-1, ROUGE-2 and ROUGE-L :cite:`lin2004rouge` of one prediction.

    ROUGE-N recall is :math:`\frac{\sum_g \min(c_{pred}(g), c_{ref}(g))}{\sum_g c_{ref}(g)}`
    over n-grams :math:`g`; precision divides by the prediction's n-gram count instead.
    ROUGE-L uses the longest common subsequence in place of the overlap.  ``tokenizer``
    overrides ``level`` (see :func:`rouge_tokenize`).
    """
    tok = tokenizer or (lambda s: rouge_tokenize(s, level))
    pred, ref = tok(prediction), tok(reference)
    out: dict[str, RougeScore] = {}
    for n in (1, 2):
        pc, rc = ngrams(pred, n), ngrams(ref, n)
        overlap = sum(min(c, rc[g]) for g, c in pc.items())
        out[f"rouge{n}"] = _prf(overlap, sum(pc.values()), sum(rc.values()))
    out["rougeL"] = _prf(lcs_length(pred, ref), len(pred), len(ref))
    return out


def rouge_corpus(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    level: str = "char",
    tokenizer: Callable[[str], list[str]] | None = None,
) -> dict[str, RougeScore]:
    """Mean of :func:`rouge` over pairs (macro average, as ``rouge-score``'s aggregator's mid)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not predictions:
        raise ValueError("no predictions given; ROUGE needs at least one pair")
    scores = [
        rouge(p, r, level=level, tokenizer=tokenizer) for p, r in zip(predictions, references)
    ]
    out = {}
    for key in ("rouge1", "rouge2", "rougeL"):
        n = len(scores)
        out[key] = RougeScore(
            sum(s[key].precision for s in scores) / n,
            sum(s[key].recall for s in scores) / n,
            sum(s[key].fmeasure for s in scores) / n,
        )
    return out


# --------------------------------------------------------------------------- exact match


def exact_match(
    predictions: Sequence[str], references: Sequence[str], *, strip: bool = True
) -> float:
    """Fraction of predictions identical to their reference (after ``strip()`` by default)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not predictions:
        raise ValueError("no predictions given; exact match needs at least one pair")
    norm = (lambda s: s.strip()) if strip else (lambda s: s)
    return sum(norm(p) == norm(r) for p, r in zip(predictions, references)) / len(predictions)
