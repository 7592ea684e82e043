"""Prompts for the four benchmarks: lm-evaluation-harness templates, few-shot, chat templates.

Templates (as in lm-evaluation-harness 0.4):

- MMLU: ``"The following are multiple choice questions (with answers) about {subject}.\\n\\n"``,
  then exemplars ``"{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: X"`` separated by a blank
  line, then the question ending in ``"Answer:"``; log-likelihood choices ``" A"`` .. ``" D"``;
- GSM8K chain of thought (``gsm8k_cot``): ``"Q: {question}\\nA: {reasoning} The answer is N."``
  with Wei et al.'s eight exemplars; generation stops at ``"Q:"``;
- HumanEval: the problem's prompt (code) as is; with a chat template the model is asked to
  complete the function in a fenced block (``asd.eval.humaneval.program_from_output`` reads it);
- TruthfulQA MC: the paper's six-question QA primer, then ``"Q: {question}\\nA:"``; choices
  ``" {answer}"``.

With a tokenizer that has a chat template (and ``chat_template: true``), the text is
wrapped with ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``; each
exemplar becomes a user/assistant turn pair when ``fewshot_as_multiturn``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from asd.data.config import DataConfig, TaskPromptConfig
from asd.data.fewshot import GSM8K_COT, TRUTHFULQA_PRIMER

STOP = {
    "mmlu": ["\n\n"],
    "gsm8k": ["Q:", "\n\n\n"],
    "humaneval": ["\nclass", "\ndef", "\n#", "\nif", "\nprint"],
    "truthfulqa": ["\n\n"],
}


@dataclass(frozen=True)
class Prompt:
    text: str  # what the model sees (chat template applied when used)
    max_new_tokens: int
    stop: tuple[str, ...]  # stop strings for plain-text prompts (empty with a chat template)
    chat: bool  # whether a chat template was applied


def mmlu_text(item) -> str:
    q = item.question.strip()
    return q + "".join(f"\n{L}. {c}" for L, c in zip("ABCD", item.choices)) + "\nAnswer:"


def mmlu_header(subject: str | None) -> str:
    about = f" about {subject.replace('_', ' ')}" if subject else ""
    return f"The following are multiple choice questions (with answers){about}.\n\n"


def _seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little")


def fewshot_index(pool: Sequence) -> dict:
    """``{subject: [items]}`` of a few-shot pool; pass it instead of the pool when building many prompts."""
    idx: dict = {}
    for x in pool:
        idx.setdefault(x.subject, []).append(x)
    return idx


def select_fewshot(task: str, item, cfg: TaskPromptConfig, pool: Sequence | None, seed: int) -> list[tuple[str, str]]:
    """Exemplars as (user text, assistant text) pairs; ``pool``: items or ``fewshot_index(items)``."""
    k, src = cfg.num_fewshot, cfg.fewshot_source
    if k == 0 or src == "none":
        return []
    if src == "cot":
        if task != "gsm8k" or k > len(GSM8K_COT):
            raise ValueError(f"fewshot_source 'cot' is for gsm8k with num_fewshot <= {len(GSM8K_COT)}")
        return [(f"Q: {q}\nA:", f" {a}") for q, a in GSM8K_COT[:k]]
    if src == "qa_primer":
        if task != "truthfulqa" or k > len(TRUTHFULQA_PRIMER):
            raise ValueError(
                f"fewshot_source 'qa_primer' is for truthfulqa with num_fewshot <= {len(TRUTHFULQA_PRIMER)}"
            )
        return [(f"Q: {q}\nA:", f" {a}") for q, a in TRUTHFULQA_PRIMER[:k]]
    if task != "mmlu":
        raise ValueError(
            f"fewshot_source {src!r} is implemented for mmlu only; {task} uses "
            f"{'cot' if task == 'gsm8k' else 'qa_primer' if task == 'truthfulqa' else 'none'}"
        )
    if pool is None:
        raise ValueError(
            f"mmlu {k}-shot from {src!r} needs a pool of exemplars (the dev split for 'dev'); "
            "copies without a dev split (e.g. the evals subset): set data.mmlu.fewshot_source: "
            "test_others or num_fewshot: 0"
        )
    idx = pool if isinstance(pool, dict) else fewshot_index(pool)
    if src == "dev":  # lm-eval: the first k dev questions of the same subject
        same = idx.get(item.subject, [])
        if len(same) < k:
            raise ValueError(f"mmlu dev split has {len(same)} questions for subject {item.subject!r}, need {k}")
        chosen = same[:k]
    else:  # test_others: k other questions of the split, same subject first, seeded per item
        rng = random.Random(_seed(seed, item.id))
        same = [x for x in idx.get(item.subject, []) if x.id != item.id] if item.subject is not None else []
        rest = []
        if len(same) < k:
            rest = [
                x for s, xs in idx.items() if item.subject is None or s != item.subject for x in xs if x.id != item.id
            ]
        chosen = rng.sample(same, min(k, len(same))) + rng.sample(rest, k - min(k, len(same)))
    return [(mmlu_text(x), f" {'ABCD'[x.answer]}") for x in chosen]


def query_text(task: str, item) -> str:
    if task == "mmlu":
        return mmlu_text(item)
    if task == "gsm8k":
        return f"Q: {item.question}\nA:"
    if task == "truthfulqa":
        return f"Q: {item.question}\nA:"
    if task == "humaneval":
        return item.prompt
    raise ValueError(f"unknown task {task!r}; valid: mmlu, gsm8k, humaneval, truthfulqa")


def build_prompt(task: str, item, cfg: DataConfig, pool: Sequence | None = None, tokenizer=None) -> Prompt:
    """The prompt for one item of ``task`` under ``cfg`` (see module docstring)."""
    tcfg = cfg.task(task)
    shots = select_fewshot(task, item, tcfg, pool, cfg.fewshot_seed)
    query = query_text(task, item)
    header = mmlu_header(item.subject) if task == "mmlu" else ""
    use_chat = bool(tcfg.chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None))
    if not use_chat:
        text = header + "".join(u + a + "\n\n" for u, a in shots) + query
        return Prompt(text, tcfg.max_new_tokens, tuple(STOP[task]), False)
    if task == "humaneval":
        query = (
            "Complete the following Python function. Reply with the whole function in one "
            f"```python code block.\n\n```python\n{item.prompt}```"
        )
    messages = [{"role": "system", "content": tcfg.system_prompt}] if tcfg.system_prompt else []
    if tcfg.fewshot_as_multiturn and shots:
        for i, (u, a) in enumerate(shots):
            messages += [
                {"role": "user", "content": (header if i == 0 else "") + u},
                {"role": "assistant", "content": a.strip()},
            ]
        messages.append({"role": "user", "content": query})
    else:
        messages.append({"role": "user", "content": header + "".join(u + a + "\n\n" for u, a in shots) + query})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return Prompt(text, tcfg.max_new_tokens, (), True)


def mc_continuations(task: str, item) -> tuple[list[str], list[int]]:
    """Log-likelihood choices and labels: MMLU ``[" A", .., " D"]`` and a one-hot label;
    TruthfulQA MC1 choices (use ``item.mc2_*`` for MC2)."""
    if task == "mmlu":
        return [" A", " B", " C", " D"], [int(i == item.answer) for i in range(4)]
    if task == "truthfulqa":
        return [" " + c for c in item.mc1_choices], list(item.mc1_labels)
    raise ValueError(f"{task} has no multiple-choice continuations; valid: mmlu, truthfulqa")
