interface Props {
  id: string;
  label: string;
  value: number | null;
  onChange(value: number | null): void;
}

/** 0–2 in steps of 0.05; null means the model's own default. */
export function TemperatureField({ id, label, value, onChange }: Props) {
  return (
    <div className="field temperature">
      <label htmlFor={id}>
        {label} <output htmlFor={id}>{value == null ? "default" : value.toFixed(2)}</output>
      </label>
      <div className="row">
        <input
          id={id}
          aria-label={label}
          type="range"
          min={0}
          max={2}
          step={0.05}
          value={value ?? 1}
          aria-valuetext={value == null ? "model default" : value.toFixed(2)}
          onChange={(e) => onChange(Number(e.target.value))}
        />
        <button type="button" className="small" onClick={() => onChange(null)} disabled={value == null}
                aria-label={`${label}: use the model's default`}>
          Default
        </button>
      </div>
    </div>
  );
}
