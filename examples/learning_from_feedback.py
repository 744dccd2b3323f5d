"""Watch the router learn from sparse feedback: which model it picks, 100 queries at a time.

Two stand-in models (fake backends with fixed joules per call) answer real benchmark prompts;
a model's answer is "correct" with a probability that depends on the task. Only 30% of
answers get feedback. The router routes on its default features: static MiniLM word vectors
(``static:all-MiniLM-L6-v2``) and the bundled task classifier. Without feedback it would keep
the cheap model everywhere; with it, it learns that maths needs the large model and yes/no
questions do not.

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
WINDOW = 100


def main(steps: int = 800, feedback_rate: float = 0.3, seed: int = 0) -> list[dict[str, Counter[str]]]:
    """The models picked per task, in each window of ``WINDOW`` queries."""
    rng = random.Random(seed)
    prompts = [(task, ex.prompt) for task in ("gsm8k", "boolq") for ex in load_task(task, limit=50, seed=seed)]
    models = [FakeBackend(name, joules_per_token=0.0, joules_per_call=j) for name, j in JOULES.items()]
    router = GreenServRouter(models, strategy="linucb", tradeoff=0.3, seed=seed)
    windows: list[dict[str, Counter[str]]] = []
    for step in range(steps):
        if step % WINDOW == 0:
            windows.append({"gsm8k": Counter(), "boolq": Counter()})
        task, prompt = rng.choice(prompts)
        answer = router.generate(prompt, max_new_tokens=8)
        windows[-1][task][answer.model] += 1
        if rng.random() < feedback_rate:
            router.feedback(answer.decision_id, float(rng.random() < ACCURACY[answer.model][task]))
    for i, picks in enumerate(windows):
        shares = ", ".join(f"{task} {p['large'] / max(1, p.total()):4.0%}" for task, p in picks.items())
        print(f"queries {i * WINDOW + 1:3}-{(i + 1) * WINDOW}: large model chosen for {shares}")
    return windows


if __name__ == "__main__":
    main()
