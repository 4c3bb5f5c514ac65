"""Generated bundled tasks: arithmetic word problems and reasoning questions, English and Chinese,
each answer computed and then checked a second, independent way.

Arithmetic: every problem records the expression its answer comes from; `check_arithmetic`
re-evaluates that expression with a small safe evaluator (exact fractions), and checks that every
number in the question appears in the expression and the answer is a whole positive number.
Reasoning (multiple choice): number sequences, day-of-week counting, ordering by height and the
largest of several numbers; `check_reasoning` solves each question again from its parameters.

`python -m workbench.evaluate.generated` rewrites assets/eval/{arithmetic,reasoning}_{en,zh}.jsonl
(the same seed always gives the same files; a test checks the files match).
"""

from __future__ import annotations

import ast
import json
import operator
import random
import re
from fractions import Fraction
from pathlib import Path

EVAL_DIR = Path(__file__).resolve().parents[2] / "assets" / "eval"
NAMES = {
    "en": ["Lena", "Omar", "Mei", "Tom", "Priya", "Jonas", "Ana", "Kenji"],
    "zh": ["小明", "小红", "李华", "王芳", "张伟", "刘洋", "陈静", "赵磊"],
}
# (English, Chinese, expression over a b c, how to draw a b c)
ARITHMETIC = [
    ("{n} has {a} apples and buys {b} more. How many apples does {n} have now?",
     "{n}有{a}个苹果，又买了{b}个。{n}现在一共有多少个苹果？", "a + b", "sum"),
    ("A shelf holds {a} books. {b} books are taken away. How many books are left on the shelf?",
     "书架上有{a}本书，拿走了{b}本。书架上还剩多少本书？", "a - b", "diff"),
    ("Each box holds {a} pencils. How many pencils are there in {b} boxes?",
     "每盒装{a}支铅笔，{b}盒一共有多少支铅笔？", "a * b", "mul"),
    ("{a} sweets are shared equally among {b} children. How many sweets does each child get?",
     "{a}颗糖平均分给{b}个小朋友，每个小朋友分到几颗？", "a / b", "div"),
    ("A ticket costs {a} yuan. {n} buys {b} tickets and pays with {c} yuan. How much change does {n} get?",
     "一张票{a}元。{n}买了{b}张票，付了{c}元。应该找回多少元？", "c - a * b", "change"),
    ("A train travels {a} km each hour for {b} hours, then {c} km more. How many km does it travel in total?",
     "一列火车每小时行驶{a}千米，行驶了{b}小时后又行驶了{c}千米。它一共行驶了多少千米？", "a * b + c", "muladd"),
    ("A class has {a} students and {b} of them are boys. How many girls are in the class?",
     "一个班有{a}名学生，其中男生{b}名。女生有多少名？", "a - b", "diff"),
    ("A rectangle is {a} cm long and {b} cm wide. What is its perimeter in cm?",
     "一个长方形长{a}厘米，宽{b}厘米。它的周长是多少厘米？", "2 * (a + b)", "rect"),
    ("{n} saves {b} yuan every week. How many weeks does it take to save {a} yuan?",
     "{n}每周存{b}元，存够{a}元需要多少周？", "a / b", "div"),
    ("A farm has {a} chickens and {b} ducks. It sells {c} of the birds. How many birds are left?",
     "农场里有{a}只鸡和{b}只鸭，卖掉了{c}只。还剩多少只？", "a + b - c", "addsub"),
]  # fmt: skip
INSTRUCTION = {
    "en": '{question}\nWork it out step by step, then write the final number on the last line as "Answer: <number>".',
    "zh": "{question}\n请一步一步算出来，最后一行写“答案：<数字>”。",
}  # fmt: skip

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def safe_eval(expression: str, values: dict[str, int]) -> Fraction:
    """Evaluate + - * / and parentheses over named integers, exactly (no eval())."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.Name) and node.id in values:
            return Fraction(values[node.id])
        raise ValueError(f"unsupported expression part: {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval").body)


def _draw(rng: random.Random, how: str) -> dict[str, int]:
    if how == "sum":
        return {"a": rng.randint(3, 60), "b": rng.randint(2, 40), "c": 0}
    if how == "diff":
        a = rng.randint(20, 90)
        return {"a": a, "b": rng.randint(1, a - 1), "c": 0}
    if how == "mul":
        return {"a": rng.randint(3, 12), "b": rng.randint(2, 9), "c": 0}
    if how == "div":
        b, k = rng.randint(2, 9), rng.randint(2, 12)
        return {"a": b * k, "b": b, "c": 0}
    if how == "change":
        a, b = rng.randint(3, 20), rng.randint(2, 5)
        return {"a": a, "b": b, "c": (a * b // 50 + 1) * 50}
    if how == "muladd":
        return {"a": rng.randint(40, 120), "b": rng.randint(2, 5), "c": rng.randint(5, 60)}
    if how == "rect":
        return {"a": rng.randint(4, 30), "b": rng.randint(2, 20), "c": 0}
    if how == "addsub":
        a, b = rng.randint(10, 50), rng.randint(5, 30)
        return {"a": a, "b": b, "c": rng.randint(1, a + b - 1)}
    raise ValueError(how)


def arithmetic_samples(lang: str, per_template: int = 5, seed: int = 0) -> list[dict]:
    """Word problems with their answers, `per_template` from each template."""
    rng = random.Random(f"arithmetic-{lang}-{seed}")
    samples = []
    for t, (en, zh, expression, how) in enumerate(ARITHMETIC):
        for k in range(per_template):
            values = _draw(rng, how)
            text = (en if lang == "en" else zh).format(n=rng.choice(NAMES[lang]), **values)
            answer = safe_eval(expression, values)
            used = {name: v for name, v in values.items() if name in expression}
            samples.append(
                {
                    "id": f"arithmetic-{lang}-{t + 1:02d}{k + 1}",
                    "question": text,
                    "answer": str(int(answer)),
                    "expression": expression,
                    "values": used,
                }
            )
    return samples


def check_arithmetic(sample: dict) -> None:
    """Raise AssertionError unless the answer follows from the question's numbers."""
    value = safe_eval(sample["expression"], sample["values"])
    assert value.denominator == 1 and value > 0, (
        f"{sample['id']}: answer {value} not whole/positive"
    )
    assert str(int(value)) == sample["answer"], f"{sample['id']}: {value} != {sample['answer']}"
    numbers = sorted(int(n) for n in re.findall(r"\d+", sample["question"]))
    assert numbers == sorted(sample["values"].values()), f"{sample['id']}: numbers differ"


# --- reasoning (multiple choice) -----------------------------------------------------------

DAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "zh": ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"],
}
REASONING_TEXT = {
    "sequence": ("What number comes next: {terms}, ?", "找规律，下一个数是多少：{terms}，？"),
    "day": ("Today is {day}. What day of the week will it be in {n} days?",
            "今天是{day}。{n}天后是星期几？"),
    "order": ("{a} is taller than {b}, and {b} is taller than {c}. Who is the shortest?",
              "{a}比{b}高，{b}比{c}高。谁最矮？"),
    "largest": ("Which number is the largest?", "下面哪个数最大？"),
}  # fmt: skip


def _sequence(rng: random.Random) -> tuple[dict, int, list[int]]:
    start, step = rng.randint(1, 20), rng.randint(2, 9)
    if rng.random() < 0.5:
        terms = [start + step * i for i in range(4)]
        right = start + step * 4
    else:
        start, ratio = rng.randint(1, 5), rng.choice([2, 3])
        terms = [start * ratio**i for i in range(4)]
        right = start * ratio**4
    candidates = [right + step, right - 1, terms[-1] + 1, right + 1, right * 2]
    wrong = list(dict.fromkeys(c for c in candidates if c != right))[:3]
    return {"terms": terms, "kind": "sequence"}, right, wrong


def solve_reasoning(params: dict, lang: str) -> str:
    """The right answer of a reasoning question, computed again from its parameters."""
    kind = params["kind"]
    if kind == "sequence":
        t = params["terms"]
        if t[1] - t[0] == t[2] - t[1] == t[3] - t[2]:
            return str(t[3] + (t[3] - t[2]))
        return str(t[3] * (t[3] // t[2]))
    if kind == "day":
        return DAYS[lang][(DAYS[lang].index(params["day"]) + params["n"]) % 7]
    if kind == "order":
        return params["c"]
    if kind == "largest":
        return str(max(params["numbers"]))
    raise ValueError(kind)


def reasoning_samples(lang: str, per_kind: int = 6, seed: int = 0) -> list[dict]:
    """Multiple-choice reasoning questions whose answers are computed, then solved again."""
    rng = random.Random(f"reasoning-{lang}-{seed}")
    en = lang == "en"
    samples = []
    for kind in ("sequence", "day", "order", "largest"):
        for k in range(per_kind):
            if kind == "sequence":
                params, right, wrong = _sequence(rng)
                joined = ", " if en else "，"
                question = REASONING_TEXT[kind][not en].format(
                    terms=joined.join(map(str, params["terms"]))
                )
                choices = [str(right), *map(str, wrong)]
            elif kind == "day":
                day, n = rng.choice(DAYS[lang]), rng.randint(2, 20)
                params = {"kind": kind, "day": day, "n": n}
                question = REASONING_TEXT[kind][not en].format(day=day, n=n)
                right_day = DAYS[lang][(DAYS[lang].index(day) + n) % 7]
                others = [d for d in DAYS[lang] if d != right_day]
                choices = [right_day, *rng.sample(others, 3)]
            elif kind == "order":
                a, b, c = rng.sample(NAMES[lang], 3)
                params = {"kind": kind, "a": a, "b": b, "c": c}
                question = REASONING_TEXT[kind][not en].format(a=a, b=b, c=c)
                choices = [c, a, b]
            else:
                numbers = rng.sample(range(100, 999), 4)
                params = {"kind": kind, "numbers": numbers}
                question = REASONING_TEXT[kind][not en]
                choices = [str(max(numbers))] + [str(n) for n in numbers if n != max(numbers)]
            right_text = choices[0]
            rng.shuffle(choices)
            samples.append(
                {
                    "id": f"reasoning-{lang}-{kind}-{k + 1}",
                    "question": question,
                    "choices": choices,
                    "answer": choices.index(right_text),
                    "params": params,
                }
            )
    return samples


def check_reasoning(sample: dict, lang: str) -> None:
    solved = solve_reasoning(sample["params"], lang)
    assert sample["choices"][sample["answer"]] == solved, f"{sample['id']}: {solved}"
    assert len(set(sample["choices"])) == len(sample["choices"]), f"{sample['id']}: repeats"


def write_files(folder: Path = EVAL_DIR) -> list[Path]:
    """(Re)write the generated task files after checking every answer."""
    written = []
    for lang in ("en", "zh"):
        for stem, samples in (
            ("arithmetic", arithmetic_samples(lang)),
            ("reasoning", reasoning_samples(lang)),
        ):
            for sample in samples:
                check_arithmetic(sample) if stem == "arithmetic" else check_reasoning(sample, lang)
            path = folder / f"{stem}_{lang}.jsonl"
            lines = [json.dumps(s, ensure_ascii=False) for s in samples]
            path.write_text("\n".join(lines) + "\n", "utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_files():
        print(written_path)
