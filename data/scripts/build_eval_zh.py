"""Write data/eval/analogies_zh.txt from the hand-written word pairs below.

Every analogy question ``a b c d`` ("a is to b as c is to d") is formed from two pairs
(a, b) and (c, d) of the same category, in both orders, so a category with k pairs gives
k(k-1) questions.  The pairs were chosen by the book's authors from words that occur in
the People's Daily corpus of January 1998 (the corpus chapter 2 trains on).  The file
uses the ``: category`` / ``a b c d`` format of word2vec's questions-words.txt, which
gensim's ``KeyedVectors.evaluate_word_analogies`` also reads.

Usage: python data/scripts/build_eval_zh.py && make manifest
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

PAIRS: dict[str, list[tuple[str, str]]] = {
    # capital city -> country (names as People's Daily wrote them in 1998, e.g. 汉城)
    "capital-country": [
        ("北京", "中国"), ("东京", "日本"), ("华盛顿", "美国"), ("莫斯科", "俄罗斯"),
        ("伦敦", "英国"), ("巴黎", "法国"), ("汉城", "韩国"), ("新德里", "印度"),
        ("开罗", "埃及"), ("曼谷", "泰国"), ("河内", "越南"), ("平壤", "朝鲜"),
    ],
    # province -> provincial capital
    "province-capital": [
        ("广东", "广州"), ("湖北", "武汉"), ("湖南", "长沙"), ("四川", "成都"),
        ("浙江", "杭州"), ("江苏", "南京"), ("山东", "济南"), ("河南", "郑州"),
        ("河北", "石家庄"), ("陕西", "西安"), ("辽宁", "沈阳"), ("云南", "昆明"),
    ],
    # city -> the province it lies in
    "city-province": [
        ("深圳", "广东"), ("青岛", "山东"), ("大连", "辽宁"), ("厦门", "福建"),
        ("苏州", "江苏"), ("宁波", "浙江"),
    ],
    # male -> female counterpart
    "male-female": [
        ("父亲", "母亲"), ("儿子", "女儿"), ("丈夫", "妻子"), ("爷爷", "奶奶"),
        ("男人", "女人"), ("男子", "女子"), ("男性", "女性"), ("先生", "女士"),
        ("兄弟", "姐妹"), ("男排", "女排"),
    ],
    # word -> antonym
    "antonym": [
        ("上升", "下降"), ("增加", "减少"), ("提高", "降低"), ("扩大", "缩小"),
        ("进口", "出口"), ("成功", "失败"), ("支持", "反对"), ("收入", "支出"),
        ("城市", "农村"), ("积极", "消极"),
    ],
    # time expressions: present -> past (the closest thing Chinese has to tense pairs)
    "time-past": [
        ("今天", "昨天"), ("今年", "去年"), ("本月", "上月"), ("本周", "上周"),
        ("今晚", "昨晚"), ("本届", "上届"),
    ],
    # time expressions: present -> future
    "time-future": [
        ("今天", "明天"), ("今年", "明年"), ("本周", "下周"), ("本届", "下届"),
    ],
}


def questions() -> list[str]:
    lines = []
    for cat, pairs in PAIRS.items():
        lines.append(f": {cat}")
        for (a, b), (c, d) in permutations(pairs, 2):
            lines.append(f"{a} {b} {c} {d}")
    return lines


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "eval" / "analogies_zh.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(questions()) + "\n", encoding="utf-8")
    n = sum(1 for line in questions() if not line.startswith(":"))
    print(f"wrote {out} ({n} questions in {len(PAIRS)} categories)")


if __name__ == "__main__":
    main()
