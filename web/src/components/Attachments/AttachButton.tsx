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
        <span className="paperclip" aria-hidden="true" />
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
