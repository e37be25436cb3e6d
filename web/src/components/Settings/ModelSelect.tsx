import type { Model } from "../../api/client";
import { modelSummary } from "../../lib/format";

interface Props {
  id: string;
  label: string;
  models: Model[];
  value: string | null;
  /** The first option, standing for "not chosen here" (the server's default, or the chat's model). */
  emptyLabel: string;
  onChange(value: string | null): void;
}

/** Models grouped by provider; each option shows its context window and price. */
export function ModelSelect({ id, label, models, value, emptyLabel, onChange }: Props) {
  const providers = [...new Set(models.map((m) => m.provider))];
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value ?? ""} onChange={(e) => onChange(e.target.value || null)}>
        <option value="">{emptyLabel}</option>
        {providers.map((provider) => (
          <optgroup key={provider} label={provider}>
            {models
              .filter((m) => m.provider === provider)
              .map((m) => (
                <option key={m.id} value={m.id}>
                  {modelSummary(m)}
                </option>
              ))}
          </optgroup>
        ))}
      </select>
    </div>
  );
}
