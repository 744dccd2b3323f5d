"""Watch the router learn from sparse feedback.

Three stand-in models (fake backends with different joules per call) answer real benchmark
prompts; a model's answer is "correct" with a probability that depends on the task. Only 30%
of answers get feedback. The router uses the real bundled features (MiniLM + task classifier).

    python examples/learning_from_feedback.py
"""

from __future__ import annotations

import random
from collections import Counter

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.datasets import load_task

ACCURACY = {  # chance of a correct answer per (model, dataset)
    "small": {"gsm8k": 0.10, "boolq": 0.85},
    "large": {"gsm8k": 0.90, "boolq": 0.85},
}
JOULES = {"small": 10.0, "large": 80.0}


def main(steps: int = 800, feedback_rate: float = 0.3, seed: int = 0) -> dict[str, Counter[str]]:
    rng = random.Random(seed)
    prompts = [(task, ex.prompt) for task in ("gsm8k", "boolq") for ex in load_task(task, limit=50, seed=seed)]
    models = [FakeBackend(name, joules_per_token=0.0, joules_per_call=j) for name, j in JOULES.items()]
    router = GreenServRouter(models, strategy="linucb", tradeoff=0.3, seed=seed)
    late: dict[str, Counter[str]] = {"gsm8k": Counter(), "boolq": Counter()}
    for step in range(steps):
        task, prompt = rng.choice(prompts)
        answer = router.generate(prompt, max_new_tokens=8)
        if step >= steps - 200:
            late[task][answer.model] += 1
        if rng.random() < feedback_rate:
            router.feedback(answer.decision_id, float(rng.random() < ACCURACY[answer.model][task]))
    for task, picks in late.items():
        print(f"last 200 queries, {task}: {dict(picks)}")
    return late


if __name__ == "__main__":
    main()
