"""Energy budgets: the operator states joules, the router finds the trade-off.

* :mod:`~greenserv_core.budget.spec`: :class:`EnergyBudget`, joules per query or per window,
  and :func:`check_max_joules` for the hard per-query cap;
* :mod:`~greenserv_core.budget.pacer`: :class:`BudgetPacer`, which sets the λ in force for
  each query so that the spend meets the budget, and :class:`BudgetStatus`, what it did.

>>> from greenserv_core.budget import EnergyBudget
>>> EnergyBudget.parse("1.5 kWh/day").joules
5400000.0
"""

from greenserv_core.budget.pacer import DEFAULT_PRICE_ON, BudgetPacer, BudgetStatus, as_energy_budget
from greenserv_core.budget.spec import EnergyBudget, check_max_joules

__all__ = ["DEFAULT_PRICE_ON", "BudgetPacer", "BudgetStatus", "EnergyBudget", "as_energy_budget", "check_max_joules"]
