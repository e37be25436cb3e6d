import { useEffect, useId, useRef, useState, type KeyboardEvent } from "react";
import type { Message } from "../../api/client";
import { useChat } from "../../store/chat";

/** "Regenerate" with a choice of model: the same one again, or any listed model. */
export function RegenerateMenu({ message, disabled }: { message: Message; disabled?: boolean }) {
  const models = useChat((s) => s.models);
  const regenerate = useChat((s) => s.regenerate);
  const [open, setOpen] = useState(false);
  const [below, setBelow] = useState(false);
  const menu = useRef<HTMLDivElement>(null);
  const trigger = useRef<HTMLButtonElement>(null);
  const id = useId();

  useEffect(() => {
    if (!open) return;
    menu.current?.querySelector<HTMLButtonElement>("[role=menuitem]")?.focus();
    const onDown = (e: MouseEvent) => {
      if (!menu.current?.contains(e.target as Node) && e.target !== trigger.current) setOpen(false);
    };
    document.addEventListener("mousedown", onDown);
    return () => document.removeEventListener("mousedown", onDown);
  }, [open]);

  function close() {
    setOpen(false);
    trigger.current?.focus();
  }

  function choose(model: string | null) {
    setOpen(false);
    void regenerate(message.id, model ? { model } : {});
  }

  function onKeyDown(e: KeyboardEvent) {
    const items = [...(menu.current?.querySelectorAll<HTMLButtonElement>("[role=menuitem]") ?? [])];
    const at = items.indexOf(document.activeElement as HTMLButtonElement);
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      close();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const step = e.key === "ArrowDown" ? 1 : -1;
      items[(at + step + items.length) % items.length]?.focus();
    } else if (e.key === "Tab") {
      setOpen(false);
    }
  }

  return (
    <span className="menu-anchor">
      <button ref={trigger} type="button" className="small" aria-haspopup="menu" aria-expanded={open}
              aria-controls={open ? id : undefined} disabled={disabled}
              onClick={() => {
                // Opens upwards unless that would run off the top of the window.
                setBelow((trigger.current?.getBoundingClientRect().top ?? 0) < 80 + 36 * (models.length + 1));
                setOpen((o) => !o);
              }}>
        ↻ Regenerate
      </button>
      {open && (
        <div ref={menu} id={id} className={below ? "menu below" : "menu"} role="menu" aria-label="Regenerate with" onKeyDown={onKeyDown}>
          <button type="button" role="menuitem" onClick={() => choose(null)}>
            Same model{message.model ? ` (${message.model})` : ""}
          </button>
          {models.map((m) => (
            <button key={m.id} type="button" role="menuitem" onClick={() => choose(m.id)}>
              {m.label || m.id}
            </button>
          ))}
        </div>
      )}
    </span>
  );
}
