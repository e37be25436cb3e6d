import type { Model } from "../api/client";

export function formatTokens(n: number | null | undefined): string {
  if (n == null) return "–";
  return n >= 10_000 ? `${(n / 1000).toFixed(n >= 100_000 ? 0 : 1)}k` : String(n);
}

/** A context window as people say it: 8192 → "8k", 200000 → "200k". */
export function formatSize(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}k` : n >= 1000 ? `${Math.round(n / 1000)}k` : String(n);
}

export function formatWindow(n: number | null | undefined): string {
  return n ? `${formatSize(n)} ctx` : "";
}

export function formatUsd(n: number | null | undefined): string {
  if (n == null) return "–";
  if (n === 0) return "$0";
  if (n < 0.0001) return "<$0.0001";
  return n < 0.01 ? `$${n.toFixed(4)}` : `$${n.toFixed(3)}`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms == null) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function formatPrice(m: Model): string {
  if (m.input_usd_per_mtok == null && m.output_usd_per_mtok == null) return "price unknown";
  if (!m.input_usd_per_mtok && !m.output_usd_per_mtok) return "free";
  return `$${m.input_usd_per_mtok ?? 0}/$${m.output_usd_per_mtok ?? 0} per Mtok`;
}

export function modelSummary(m: Model): string {
  return [m.label, formatWindow(m.context_window), formatPrice(m)].filter(Boolean).join(" · ");
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}
