import math

import numpy as np
import pytest
import torch
from conftest import tiny_gpt

from llmbook.evaluation.privacy import (
    candidate_log_probs,
    deduplicate,
    evaluate_canaries,
    exposure,
    insert_canaries,
    make_canaries,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_insert_and_deduplicate():
    texts = ["床前明月光", "疑是地上霜", "举头望明月"]
    can = make_canaries(["甲的密码是", "乙的密码是"], [3, 1], length=4, seed=1)
    assert all(len(c.secret) == 4 and c.secret.isdigit() for c in can)
    out = insert_canaries(texts, can)
    assert len(out) == 3 + 4 and out.count(can[0].text) == 3
    assert [t for t in out if t in texts] == texts  # order of the corpus kept
    d = deduplicate(out)
    assert d.count(can[0].text) == 1 and len(d) == 5
    assert deduplicate(["a  b", "a b", "ａ b"]) == ["a  b"]  # whitespace and NFKC


def test_exposure_definition():
    lp = np.log(np.array([0.5, 0.3, 0.1, 0.1]))
    assert exposure(lp, 0) == (2.0, 1)
    assert exposure(lp, 1) == (1.0, 2)
    assert exposure(lp, 3)[1] == 3  # ties share the better rank
    with pytest.raises(IndexError):
        exposure(lp, 4)


@pytest.fixture(scope="module")
def tiny():
    return tiny_gpt(texts=["0123456789密码是甲乙\n"])


def test_candidate_log_probs_match_brute_force(tiny):
    model, tok = tiny
    lp = candidate_log_probs(model, tok, "甲密码是", length=3, alphabet="0123456789")
    assert lp.shape == (1000,)
    assert np.exp(lp).sum() <= 1.0 + 1e-9
    for index in (0, 7, 123, 999):
        cand = f"{index:03d}"
        ids = tok.encode("甲密码是" + cand, add_bos=True)
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids[:-1]]))
        logp = torch.log_softmax(logits[0].double(), -1)
        direct = sum(float(logp[len(ids) - 4 + j, ids[len(ids) - 3 + j]]) for j in range(3))
        assert lp[index] == pytest.approx(direct, abs=1e-5)


def test_memorised_canary_has_maximal_exposure(tiny):
    model, tok = tiny
    can = make_canaries(["甲密码是"], [50], length=3, seed=0)
    ids = torch.tensor([tok.encode(can[0].text + "\n", add_bos=True)])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    rep = evaluate_canaries(model, tok, can)[0]
    assert rep.rank == 1 and rep.extracted
    assert rep.exposure == pytest.approx(math.log2(1000))


def test_unknown_characters_are_reported(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="does not know"):
        candidate_log_probs(model, tok, "丙的密码", length=2)
    with pytest.raises(ValueError, match="one count per prefix"):
        make_canaries(["a"], [1, 2])
