import { useRef, useState, type DragEvent, type ReactNode } from "react";
import { useAttach } from "./useAttach";

const hasFiles = (e: DragEvent) => [...e.dataTransfer.types].includes("Files");

/** Files dropped anywhere on the chat are attached to it; a veil shows where they will go. */
export function DropZone({ className, children }: { className: string; children: ReactNode }) {
  const attach = useAttach();
  const [over, setOver] = useState(false);
  const depth = useRef(0); // dragenter/leave fire for every child crossed

  return (
    <main
      className={className}
      onDragEnter={(e) => {
        if (!hasFiles(e)) return;
        depth.current++;
        setOver(true);
      }}
      onDragOver={(e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
      }}
      onDragLeave={(e) => {
        if (!hasFiles(e)) return;
        depth.current = Math.max(0, depth.current - 1);
        if (depth.current === 0) setOver(false);
      }}
      onDrop={(e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        depth.current = 0;
        setOver(false);
        void attach(e.dataTransfer.files);
      }}
    >
      {children}
      {over && (
        <div className="drop-veil" aria-hidden="true">
          <p>Drop files to attach them to this chat</p>
        </div>
      )}
    </main>
  );
}
