import { useEffect, useState } from "react";
import { call, client } from "../../api/client";

/** The draft's token count for `model`, asked of the server a moment after typing pauses. */
export function useTokenCount(model: string | null, text: string, enabled: boolean): number | null {
  const [count, setCount] = useState<number | null>(null);
  useEffect(() => {
    if (!enabled) return;
    if (!text.trim()) {
      setCount(0);
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(async () => {
      try {
        const result = await call(
          client.POST("/api/tokens/count", { body: { model, text }, signal: controller.signal }),
        );
        setCount(result.tokens);
      } catch {
        if (!controller.signal.aborted) setCount(null);
      }
    }, 250);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [model, text, enabled]);
  return count;
}
