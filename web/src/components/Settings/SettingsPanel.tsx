import { useEffect, useRef, useState } from "react";
import { useShallow } from "zustand/react/shallow";
import type { Model } from "../../api/client";
import { useChat, type Overrides, type ThreadSettings } from "../../store/chat";
import { BudgetLine } from "./BudgetLine";
import { ModelSelect } from "./ModelSelect";
import { TemperatureField } from "./TemperatureField";

interface Props {
  id: string;
  models: Model[];
  overrides: Overrides;
  onOverrides(next: Overrides): void;
}

/** The chat's model and temperature (saved on the thread), and an override for the next message only. */
export function SettingsPanel({ id, models, overrides, onOverrides }: Props) {
  const saved = useChat(useShallow(currentSettings));
  const updateSettings = useChat((s) => s.updateSettings);
  const defaultModel = models.find((m) => m.default);
  // The slider moves at once; the thread is saved when it rests, not on every step.
  const [temperature, setTemperature] = useState(saved.temperature);
  const timer = useRef<ReturnType<typeof setTimeout>>(undefined);
  useEffect(() => setTemperature(saved.temperature), [saved.temperature]);
  useEffect(() => () => clearTimeout(timer.current), []);

  function changeTemperature(value: number | null) {
    setTemperature(value);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => void updateSettings({ temperature: value }), 300);
  }

  return (
    <section id={id} className="settings-panel" aria-label="Chat settings">
      <fieldset>
        <legend>This chat</legend>
        <ModelSelect
          id={`${id}-model`}
          label="Model"
          models={models}
          value={saved.model}
          emptyLabel={defaultModel ? `Default (${defaultModel.label})` : "Default"}
          onChange={(model) => void updateSettings({ model })}
        />
        <TemperatureField id={`${id}-temperature`} label="Temperature" value={temperature} onChange={changeTemperature} />
      </fieldset>
      <fieldset>
        <legend>Next message only</legend>
        <ModelSelect
          id={`${id}-override-model`}
          label="Model for the next message"
          models={models}
          value={overrides.model ?? null}
          emptyLabel="Same as the chat"
          onChange={(model) => onOverrides({ ...overrides, model })}
        />
        <label className="check">
          <input
            type="checkbox"
            checked={overrides.temperature != null}
            onChange={(e) => onOverrides({ ...overrides, temperature: e.target.checked ? (temperature ?? 1) : null })}
          />
          Different temperature for the next message
        </label>
        {overrides.temperature != null && (
          <TemperatureField
            id={`${id}-override-temperature`}
            label="Temperature for the next message"
            value={overrides.temperature}
            onChange={(value) => onOverrides({ ...overrides, temperature: value ?? null })}
          />
        )}
      </fieldset>
      <BudgetLine />
    </section>
  );
}

export function currentSettings(s: { thread: { model?: string | null; temperature?: number | null } | null;
                                     activeId: number | null; pending: ThreadSettings }): ThreadSettings {
  if (s.activeId != null && s.thread) return { model: s.thread.model ?? null, temperature: s.thread.temperature ?? null };
  return s.pending;
}
