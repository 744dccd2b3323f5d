"""A cascade: answer with a cheap model, escalate to a dear one only when the cheap one is unsure.

Two stand-in models (fake backends with fixed joules per call) answer real benchmark prompts.
The small one (10 J) is right on about 70% of yes/no questions and 20% of maths, and it half
knows when: its answer's log-probability is high when it is right and low when it is wrong
(an AUROC of about 0.96). The large one (80 J) is right 90% of the time. The router is offered
``small``, ``large`` and the cascade ``small->large``; it learns which pays per task, and,
inside the cascade, when to escalate. Each answer's chain says what happened.

On maths the small model is hopeless, so the large one should give most answers: the router
either picks ``large`` or picks the cascade and escalates most of the time. The two arms are
within a few hundredths in reward, so which one it settles on depends on the run, and the
cascade keeps some small answers on purpose (``keep_rate``: an unsure answer kept now and
then, so that the escalation rule keeps learning) or because the small model sounded sure.
On yes/no questions the small answer should mostly be kept.

    python examples/cascades.py
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence

from greenserv_core import FakeBackend, GreenServRouter
from greenserv_core.datasets import load_task
from greenserv_core.messages import Message

ACCURACY = {"small": {"gsm8k": 0.20, "boolq": 0.70}, "large": {"gsm8k": 0.90, "boolq": 0.90}}
JOULES = {"small": 10.0, "large": 80.0}


def main(steps: int = 800, seed: int = 0) -> dict[str, object]:
    rng = random.Random(seed)
    prompts = [(task, ex.prompt) for task in ("gsm8k", "boolq") for ex in load_task(task, limit=50, seed=seed)]
    task_of = {prompt: task for task, prompt in prompts}

    def reply(name: str) -> Callable[[Sequence[Message]], str]:
        def answer(messages: Sequence[Message]) -> str:
            task = task_of[str(messages[-1]["content"])]
            return "right" if rng.random() < ACCURACY[name][task] else "wrong"

        return answer

    def confidence(messages: Sequence[Message], text: str) -> list[float]:
        sure = rng.betavariate(5, 2) if text == "right" else rng.betavariate(2, 5)
        return [math.log(sure)]

    models = [
        FakeBackend(name, joules_per_token=0.0, joules_per_call=j, reply=reply(name), logprobs=confidence)
        for name, j in JOULES.items()
    ]
    router = GreenServRouter(models, cascades=[("small", "large")], tradeoff=0.3, seed=seed)
    late: dict[str, Counter[str]] = {"gsm8k": Counter(), "boolq": Counter()}  # the arm chosen
    answered: dict[str, Counter[str]] = {"gsm8k": Counter(), "boolq": Counter()}  # the model whose answer was kept
    escalations: Counter[str] = Counter()  # was the small answer that escalated wrong?
    right = 0
    for step in range(steps):
        task, prompt = rng.choice(prompts)
        answer = router.generate(prompt, max_new_tokens=4)
        score = float(answer.text == "right")
        router.feedback(answer.decision_id, score)
        if step >= steps - 300:
            late[task][answer.model] += 1
            answered[task][answer.chain[-1].model if answer.chain else answer.model] += 1
            right += int(score)
            if answer.chain and answer.chain[0].action == "escalated":
                escalations["small was wrong" if answer.chain[0].text == "wrong" else "small was right"] += 1
    for task, picks in late.items():
        print(f"last 300 queries, {task}: chosen {dict(picks)}; answered by {dict(answered[task])}")
    print(f"escalations in the last 300 queries: {dict(escalations)}; right: {right / 300:.0%}")
    return {"late": late, "answered": answered, "escalations": escalations, "accuracy": right / 300}


if __name__ == "__main__":
    main()
