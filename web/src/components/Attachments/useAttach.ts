import { useCallback } from "react";
import { useFiles } from "../../store/attachments";
import { useChat } from "../../store/chat";

/** Attaches files to the open chat, creating its thread first when the chat is new. */
export function useAttach(): (files: Iterable<File>) => Promise<void> {
  const upload = useFiles((s) => s.upload);
  const ensureThread = useChat((s) => s.ensureThread);
  return useCallback(
    async (files) => {
      const list = [...files];
      if (list.length === 0) return;
      let threadId: number;
      try {
        threadId = await ensureThread();
      } catch {
        return; // the store has shown why
      }
      await Promise.all(list.map((file) => upload(threadId, file)));
    },
    [upload, ensureThread],
  );
}
