import type { Message } from "../../api/client";
import { formatMs, formatTokens, formatUsd } from "../../lib/format";

interface Meta {
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  cost_usd?: number | null;
  ttft_ms?: number | null;
  latency_ms?: number | null;
}

/** The detail line of an answer: model, tokens in → out, cost, time to first token, total time. */
export function MessageMeta({ message }: { message: Message }) {
  const meta = message.meta as Meta;
  const parts: [string, string, string][] = [];
  if (message.model) parts.push(["model", message.model, "Model"]);
  if (message.temperature != null) parts.push(["temperature", `T ${message.temperature}`, "Temperature"]);
  if (meta.prompt_tokens != null || meta.completion_tokens != null)
    parts.push([
      "tokens",
      `${formatTokens(meta.prompt_tokens)} → ${formatTokens(meta.completion_tokens)} tokens`,
      `Prompt ${meta.prompt_tokens ?? "?"} tokens, answer ${meta.completion_tokens ?? "?"} tokens`,
    ]);
  if (meta.cost_usd != null) parts.push(["cost", formatUsd(meta.cost_usd), `Cost $${meta.cost_usd}`]);
  if (meta.ttft_ms != null) parts.push(["ttft", `first token ${formatMs(meta.ttft_ms)}`, "Time to first token"]);
  if (meta.latency_ms != null) parts.push(["latency", formatMs(meta.latency_ms), "Total time"]);
  if (parts.length === 0) return null;
  return (
    <p className="message-meta" aria-label="Answer details">
      {parts.map(([key, text, title]) => (
        <span key={key} data-meta={key} title={title}>
          {text}
        </span>
      ))}
    </p>
  );
}
