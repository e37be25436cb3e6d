import { useRef } from "react";
import { useAttach } from "./useAttach";

const ACCEPT = ".txt,.md,.markdown,.pdf,.docx,.html,.htm,.csv,.json,.py,.js,.ts,.tsx,.jsx,.java,.c,.h,.cpp,.go,.rs,.rb,.sh,.sql,.yaml,.yml,.toml,text/*";

/** A paperclip that opens the file chooser; several files at once are fine. */
export function AttachButton({ disabled }: { disabled?: boolean }) {
  const input = useRef<HTMLInputElement>(null);
  const attach = useAttach();
  return (
    <>
      <button type="button" className="icon attach" aria-label="Attach files" title="Attach files (or drop or paste them)"
              disabled={disabled} onClick={() => input.current?.click()}>
        {/* Drawn, not an emoji: not every system has an emoji font. */}
        <svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2"
             strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
          <path d="M21.4 11.1l-9.2 9.2a6 6 0 0 1-8.5-8.5l9.2-9.2a4 4 0 0 1 5.7 5.7l-9.2 9.2a2 2 0 0 1-2.8-2.8l8.5-8.5" />
        </svg>
      </button>
      <input ref={input} type="file" multiple hidden accept={ACCEPT} aria-label="Files to attach"
             onChange={(e) => {
               const files = [...(e.target.files ?? [])];
               e.target.value = ""; // the same file can be chosen again
               void attach(files);
             }} />
    </>
  );
}
