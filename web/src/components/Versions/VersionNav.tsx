import type { Message } from "../../api/client";
import { useChat } from "../../store/chat";

/** `< 2/3 >`: steps between the versions of one turn; the branch under the chosen one comes with it. */
export function VersionNav({ message, disabled }: { message: Message; disabled?: boolean }) {
  const switchVersion = useChat((s) => s.switchVersion);
  const { version_index: index, version_count: count, sibling_ids: siblings } = message;
  if (count < 2) return null;
  const go = (to: number) => {
    const id = siblings[to - 1];
    if (id != null) void switchVersion(id);
  };
  return (
    <span className="version-nav" role="group" aria-label="Versions">
      <button type="button" className="icon small" aria-label="Previous version" disabled={disabled || index <= 1}
              onClick={() => go(index - 1)}>
        ‹
      </button>
      <span className="version-count" aria-label={`Version ${index} of ${count}`}>
        {index}/{count}
      </span>
      <button type="button" className="icon small" aria-label="Next version" disabled={disabled || index >= count}
              onClick={() => go(index + 1)}>
        ›
      </button>
    </span>
  );
}
