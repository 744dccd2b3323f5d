"""Give the router joules, not λ: it spends up to an energy budget and buys the accuracy it can.

Three stand-in models (fake backends with different joules per call) answer real benchmark
prompts; a model's answer is "correct" with a probability that depends on the task. The
router gets a budget of 30 J per query: it cannot afford the large model everywhere (80 J),
so it learns where the large model's accuracy pays for its joules (maths) and answers the
rest cheaply. Every answer says what the budget did.

    python examples/energy_budget.py
"""

from __future__ import annotations

import random
from collections import Counter

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.datasets import load_task

ACCURACY = {  # chance of a correct answer per (model, dataset)
    "small": {"gsm8k": 0.10, "boolq": 0.80},
    "medium": {"gsm8k": 0.40, "boolq": 0.85},
    "large": {"gsm8k": 0.90, "boolq": 0.87},
}
JOULES = {"small": 10.0, "medium": 25.0, "large": 80.0}
BUDGET = "30J/query"


def main(steps: int = 900, seed: int = 0) -> dict[str, object]:
    rng = random.Random(seed)
    prompts = [(task, ex.prompt) for task in ("gsm8k", "boolq") for ex in load_task(task, limit=50, seed=seed)]
    models = [FakeBackend(name, joules_per_token=0.0, joules_per_call=j) for name, j in JOULES.items()]
    router = GreenServRouter(models, energy_budget=BUDGET, seed=seed)
    late: dict[str, Counter[str]] = {"gsm8k": Counter(), "boolq": Counter()}
    spent = 0.0
    for step in range(steps):
        task, prompt = rng.choice(prompts)
        answer = router.generate(prompt, max_new_tokens=8)
        spent += answer.energy_joules
        if step >= steps - 300:
            late[task][answer.model] += 1
        router.feedback(answer.decision_id, float(rng.random() < ACCURACY[answer.model][task]))
        if step % 300 == 299 and router.budget_ is not None:  # where it stands after this answer
            print(f"after {step + 1} queries: {router.budget_.describe()}")
    for task, picks in late.items():
        print(f"last 300 queries, {task}: {dict(picks)}")
    mean = spent / steps
    print(f"mean spend {mean:.1f} J per query (the stand-ins' fixed joules, not measured), budget {BUDGET}")
    return {"late": late, "mean_joules": mean}


if __name__ == "__main__":
    main()
