"""Chat templates with role tokens, SFT loss masking, and the poem instruction set."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_gpt

from llmbook.data.poetry import Poem, poetry_split
from llmbook.evaluation.instructions import evaluate_tasks, respond
from llmbook.evaluation.poem_tasks import TASKS, PoemTask, poem_tasks, score_response
from llmbook.models.gpt import GPT, GPTConfig
from llmbook.text.chat import CHAT, ROLE_CHAT, ROLE_TOKENS, add_role_tokens
from llmbook.text.tokenizers import BPETokenizer, CharTokenizer
from llmbook.training.sft import sft_chat_example, sft_example, train_sft

POEM = Poem(
    1,
    "唐",
    "诗",
    "静夜思",
    "李白",
    ("床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"),
    "五言绝句",
)
TEXTS = [
    POEM.text,
    "写一首五言绝句，题为静夜思",
    "续写下一句，上句是",
    "这两句诗的作者是谁？",
    "为这首诗拟一个题目",
    "李白杜甫",
    "你是诗人<|>",
]


@pytest.fixture()
def chat_model() -> tuple[GPT, CharTokenizer]:
    gpt, tok = tiny_gpt(texts=TEXTS, block_size=64, n_layer=1, n_embd=16)
    return gpt, add_role_tokens(tok, gpt)


def test_role_tokens_are_single_ids_that_text_cannot_spell(chat_model) -> None:
    _, tok = chat_model
    ids = [tok.token_to_id(t) for t in ROLE_TOKENS]
    assert ids == list(range(tok.vocab_size - 4, tok.vocab_size))
    typed = tok.encode("<|assistant|>")  # a user typing the marker gets characters
    assert len(typed) == len("<|assistant|>") and not set(typed) & set(ids)
    assert tok.decode(ids + tok.encode("李白")) == "李白"  # decode drops role tokens
    assert tok.decode(ids, skip_special=False) == "".join(ROLE_TOKENS)


def test_encode_chat_masks_exactly_what_the_assistant_says(chat_model) -> None:
    _, tok = chat_model
    user, asst, end = (tok.token_to_id(t) for t in ("<|user|>", "<|assistant|>", "<|end|>"))
    msgs = [
        ("system", "你是诗人"),
        ("user", "静夜思"),
        ("assistant", "李白"),
        ("user", "杜甫"),
        ("assistant", "明月"),
    ]
    ids, mask = ROLE_CHAT.encode_chat(tok, msgs)
    said = [i for i, m in zip(ids, mask) if m]
    assert said == tok.encode("李白") + [end] + tok.encode("明月") + [end]
    assert ids[0] == tok.bos_id and ids.count(user) == 2 and ids.count(asst) == 2
    assert ids.count(end) == 5  # every turn is closed
    prompt = ROLE_CHAT.prompt_ids(tok, "静夜思", system="你是诗人")
    assert prompt == ids[: len(prompt)] and prompt[-1] == asst
    assert ROLE_CHAT.render("静夜思") == "<|user|>静夜思<|end|><|assistant|>"
    with pytest.raises(ValueError, match="role"):
        ROLE_CHAT.encode_chat(tok, [("robot", "你好")])
    with pytest.raises(ValueError, match="system"):
        ROLE_CHAT.encode_chat(tok, [("user", "好"), ("system", "你是诗人")])
    with pytest.raises(ValueError, match="at least one"):
        ROLE_CHAT.encode_chat(tok, [])


def test_plain_template_keeps_its_old_layout() -> None:
    _, tok = tiny_gpt(texts=TEXTS + ["问答\n"], block_size=64, n_layer=1, n_embd=16)
    ins, res = "写一首五言绝句，题为静夜思", POEM.text
    x, y = sft_example(tok, ins, res, 64)
    seq = [tok.bos_id] + tok.encode(CHAT.full(ins, res))
    assert x == seq[:-1]
    n_prompt = 1 + len(CHAT.render(ins))
    assert y == [-100] * (n_prompt - 1) + seq[n_prompt:]


def test_role_template_needs_the_role_tokens() -> None:
    _, tok = tiny_gpt(texts=TEXTS, block_size=64, n_layer=1, n_embd=16)
    with pytest.raises(ValueError, match="add_role_tokens"):
        ROLE_CHAT.prompt_ids(tok, "静夜思")
    bpe = BPETokenizer.train(TEXTS * 3, vocab_size=300)
    with pytest.raises(TypeError, match="vocabulary tokenizers"):
        add_role_tokens(bpe)  # type: ignore[arg-type]


def test_add_role_tokens_grows_the_model_without_changing_old_logits() -> None:
    gpt, tok = tiny_gpt(texts=TEXTS, block_size=64, n_layer=1, n_embd=16)
    x = torch.tensor([tok.encode(POEM.text)])
    before = gpt(x)[0]
    grown = add_role_tokens(tok, gpt)
    assert grown.vocab_size == tok.vocab_size + 4 == gpt.config.vocab_size
    assert grown.itos[: tok.vocab_size] == tok.itos
    after = gpt(x)[0]
    torch.testing.assert_close(after[..., : tok.vocab_size], before)
    new_rows = gpt.wte.weight[tok.vocab_size :]
    torch.testing.assert_close(new_rows, gpt.wte.weight[: tok.vocab_size].mean(0).expand(4, -1))
    assert gpt.lm_head.weight is gpt.wte.weight
    assert add_role_tokens(grown).vocab_size == grown.vocab_size  # not added twice
    with pytest.raises(ValueError, match="does not match"):
        add_role_tokens(tok, gpt)  # the model has already grown


def test_resize_untied_and_refuses_to_shrink() -> None:
    torch.manual_seed(0)
    gpt = GPT(
        GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, tie_weights=False)
    )
    head = gpt.lm_head.weight.detach().clone()
    gpt.resize_token_embeddings(22)
    assert gpt.lm_head.weight.shape == (22, 8) and gpt.wte.weight.shape == (22, 8)
    torch.testing.assert_close(gpt.lm_head.weight[:20], head)
    assert gpt(torch.tensor([[21, 3]]))[0].shape == (1, 2, 22)
    with pytest.raises(ValueError, match="shrinking"):
        gpt.resize_token_embeddings(10)


def test_prompt_tokens_contribute_zero_gradient(chat_model) -> None:
    gpt, tok = chat_model
    msgs = [("system", "你是诗人"), ("user", "静夜思"), ("assistant", "李白")]
    x, y = sft_chat_example(tok, msgs, 64, ROLE_CHAT)
    xt, yt = torch.tensor([x]), torch.tensor([y])
    gpt.train()
    logits = gpt.lm_head(gpt.hidden_states(xt))
    logits.retain_grad()
    loss = torch.nn.functional.cross_entropy(logits[0], yt[0], ignore_index=-100)
    loss.backward()
    grad = logits.grad[0].abs().sum(-1)  # type: ignore[union-attr]
    answer = yt[0] != -100
    assert answer.sum() == len("李白") + 1  # the answer and its end marker
    assert torch.all(grad[~answer] == 0) and torch.all(grad[answer] > 0)
    # the model's own loss is the same masked mean
    torch.testing.assert_close(gpt(xt, yt)[1], loss)
    with pytest.raises(ValueError, match="exceeds block_size"):
        sft_chat_example(tok, msgs, 5, ROLE_CHAT)


def test_sft_with_role_tokens_trains_and_answers(chat_model) -> None:
    gpt, tok = chat_model
    pairs = [("静夜思", "李白"), ("续写下一句，上句是床前明月光", "疑是地上霜")]
    losses = train_sft(
        gpt, tok, pairs * 4, steps=60, batch_size=4, lr=1e-2, template=ROLE_CHAT, progress=False
    )
    assert losses[-1] < losses[0] / 3
    out = respond(gpt, tok, [p[0] for p in pairs], template=ROLE_CHAT, max_new_tokens=8)
    assert out == [p[1] for p in pairs]


def test_poem_tasks_build_four_tasks_from_each_poem() -> None:
    tasks = poem_tasks([POEM], seed=0)
    assert [t.task for t in tasks] == list(TASKS)
    write, cont, author, title = tasks
    assert write.pair == ("写一首五言绝句，题为静夜思", POEM.text)
    assert cont.instruction.startswith("续写下一句，上句是")
    upper = cont.instruction.removeprefix("续写下一句，上句是")
    assert (upper, cont.response) in {("床前明月光", "疑是地上霜"), ("举头望明月", "低头思故乡")}
    assert author.response == "李白" and author.instruction.startswith("床前明月光，疑是地上霜。")
    assert title.response == "静夜思" and title.instruction.startswith(POEM.text)
    with pytest.raises(ValueError, match="unknown task"):
        poem_tasks([POEM], tasks=["翻译"])
    with pytest.raises(ValueError, match="no usable quatrain"):
        poem_tasks([Poem(2, "唐", "诗", "", "", ("床前明月光。",), "其他")])


def test_tasks_of_a_poem_split_are_held_out() -> None:
    chars = "春夏秋冬风花雪月山水云天日星江河"
    poems = [
        Poem(
            i,
            "唐",
            "诗",
            f"题{i}",
            "李白",
            (f"{a}{b}明月光，疑是霜。", "举头望明月，低头思故乡。"),
            "五言绝句",
        )
        for i, (a, b) in enumerate((a, b) for a in chars for b in chars)
    ]
    split = poetry_split(poems, valid=0.2, test=0.2)
    train = {t.poem.id for t in poem_tasks(split["train"])}
    test = {t.poem.id for t in poem_tasks(split["test"])}
    assert train and test and not train & test


@pytest.mark.parametrize(
    ("task", "output", "want"),
    [
        ("写诗", POEM.text, (True, True, None)),  # uses 思 of the title
        ("写诗", "床前明月光，疑是地上霜。", (False, False, None)),
        ("续写", "{answer}", (True, None, True)),
        ("续写", "明月几时有", (True, True, False)),
        ("续写", "明月", (False, True, False)),
        ("作者", "李白", (True, None, True)),
        ("作者", "杜甫", (True, None, False)),
        ("作者", "床前明月光，", (False, None, False)),
        ("题目", "静夜思", (True, True, True)),
        ("题目", "秋", (True, False, False)),
    ],
)
def test_score_response(task: str, output: str, want: tuple) -> None:
    (t,) = [x for x in poem_tasks([POEM]) if x.task == task]
    if output == "{answer}":
        output = t.response
    got = score_response(t, output)
    on_topic = want[1]
    if task == "续写" and on_topic is None:  # the reference shares characters or not
        on_topic = got.on_topic
    assert (got.format_ok, got.on_topic, got.exact) == (want[0], on_topic, want[2])
    assert score_response(t, output, frozenset({"王维"})).format_ok == (
        want[0] if task != "作者" else False
    )


def test_evaluate_tasks_reports_rates_per_task(chat_model) -> None:
    gpt, tok = chat_model
    tasks = poem_tasks([POEM])
    ev = evaluate_tasks(gpt, tok, tasks, template=ROLE_CHAT, max_new_tokens=6)
    assert len(ev.outputs) == len(ev.scores) == 4 and set(ev.rates) == set(TASKS)
    assert ev.rates["写诗"]["exact"] is None and ev.rates["作者"]["on_topic"] is None
    assert all(0 <= v <= 1 for r in ev.rates.values() for v in r.values() if v is not None)
    with pytest.raises(ValueError, match="no task"):
        evaluate_tasks(gpt, tok, [], template=ROLE_CHAT)
    assert isinstance(tasks[0], PoemTask)
