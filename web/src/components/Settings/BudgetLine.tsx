import { useEffect, useState } from "react";
import { call, client, type Budget } from "../../api/client";

function usd(value: number): string {
  return value > 0 && value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}

/** Today's spending against the daily budget, read when the settings open. */
export function BudgetLine() {
  const [budget, setBudget] = useState<Budget | null>(null);
  useEffect(() => {
    let live = true;
    call(client.GET("/api/budget")).then(
      (value) => live && setBudget(value),
      () => undefined, // the line is a courtesy: without it the panel still works
    );
    return () => {
      live = false;
    };
  }, []);
  if (!budget) return null;
  const used = budget.spent_usd + budget.reserved_usd;
  const resets = new Date(budget.resets_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return (
    <p className="budget-line muted" role="status" aria-label="Today's spending">
      {budget.limit_usd == null
        ? `Spent today: ${usd(used)} · no daily budget`
        : `Today: ${usd(used)} of ${usd(budget.limit_usd)} · ${usd(budget.remaining_usd ?? 0)} left · resets at ${resets}`}
    </p>
  );
}
