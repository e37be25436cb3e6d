import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { useShallow } from "zustand/react/shallow";
import { formatSize, formatTokens } from "../../lib/format";
import { draftKey, load, save } from "../../lib/storage";
import { useChat, type Overrides } from "../../store/chat";
import { AttachButton } from "../Attachments/AttachButton";
import { FileList } from "../Attachments/FileList";
import { useAttach } from "../Attachments/useAttach";
import { SettingsPanel, currentSettings } from "../Settings/SettingsPanel";
import { useTokenCount } from "./useTokenCount";

export function Composer() {
  const activeId = useChat((s) => s.activeId);
  const models = useChat((s) => s.models);
  const settings = useChat(useShallow(currentSettings));
  const answering = useChat((s) => s.messages.some((m) => m.role === "assistant" && m.status === "streaming"));
  const authLost = useChat((s) => s.authLost);
  const notice = useChat((s) => s.notice);
  const send = useChat((s) => s.send);
  const dismissNotice = useChat((s) => s.dismissNotice);

  const [text, setText] = useState(() => load(draftKey(activeId)) ?? "");
  const [overrides, setOverrides] = useState<Overrides>({});
  const [sending, setSending] = useState(false);
  const [showSettings, setShowSettings] = useState(false);
  const textarea = useRef<HTMLTextAreaElement>(null);
  const attach = useAttach();
  const shownFor = useRef(activeId);
  const id = useId();

  // Each chat has its own draft. A new chat that just got its thread keeps what is being typed.
  useEffect(() => {
    const previous = shownFor.current;
    shownFor.current = activeId;
    if (previous === activeId) return;
    if (previous === null && !load(draftKey(activeId))) {
      save(draftKey(activeId), text);
      save(draftKey(null), null);
      return;
    }
    setText(load(draftKey(activeId)) ?? "");
    setOverrides({});
    textarea.current?.focus();
  }, [activeId]); // only a change of chat swaps the draft, not each keystroke

  useEffect(() => {
    textarea.current?.focus();
  }, []);

  // Grow with the text up to a limit, then scroll.
  useEffect(() => {
    const el = textarea.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [text]);

  const defaultModel = models.find((m) => m.default)?.id ?? null;
  const model = overrides.model ?? settings.model ?? defaultModel;
  const modelInfo = models.find((m) => m.id === model);
  const tokens = useTokenCount(model, text, !authLost);
  const empty = !text.trim();
  const blocked = sending || answering || !!authLost;

  function change(value: string) {
    setText(value);
    save(draftKey(activeId), value);
  }

  async function submit(event?: FormEvent) {
    event?.preventDefault();
    if (empty || blocked) return;
    setSending(true);
    const content = text;
    const body: Overrides = {};
    if (overrides.model) body.model = overrides.model;
    if (overrides.temperature != null) body.temperature = overrides.temperature;
    const ok = await send(content, body);
    setSending(false);
    // The draft goes only once the server has taken the message; a refusal leaves it to fix or resend.
    if (ok) {
      setText("");
      save(draftKey(useChat.getState().activeId), null);
      save(draftKey(null), null);
      setOverrides({});
    }
    textarea.current?.focus();
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void submit();
    }
  }

  const overridden = overrides.model || overrides.temperature != null;
  const temperature = overrides.temperature ?? settings.temperature;
  return (
    <form className="composer" onSubmit={submit} aria-label="Write a message">
      {notice && (
        <div className="notice" role="alert">
          <span>{notice}</span>
          <button type="button" className="icon small" aria-label="Dismiss" onClick={dismissNotice}>
            ✕
          </button>
        </div>
      )}
      {showSettings && (
        <SettingsPanel id={`${id}-settings`} models={models} overrides={overrides} onOverrides={setOverrides} />
      )}
      <FileList threadId={activeId} />
      <div className="composer-box">
        <AttachButton disabled={!!authLost} />
        <label htmlFor={`${id}-text`} className="visually-hidden">
          Message
        </label>
        <textarea
          id={`${id}-text`}
          ref={textarea}
          rows={1}
          placeholder="Message Convo…"
          value={text}
          onChange={(e) => change(e.target.value)}
          onKeyDown={onKeyDown}
          onPaste={(e) => {
            // Files on the clipboard (a screenshot, a copied file) are attached; text pastes as usual.
            const files = [...e.clipboardData.files];
            if (files.length === 0) return;
            e.preventDefault();
            void attach(files);
          }}
          aria-describedby={`${id}-count`}
        />
        <button type="submit" className="primary send" disabled={empty || blocked} aria-label="Send message">
          ↑
        </button>
      </div>
      <div className="composer-bar">
        <button
          type="button"
          className={`small settings-toggle${overridden ? " overridden" : ""}`}
          aria-expanded={showSettings}
          aria-controls={`${id}-settings`}
          onClick={() => setShowSettings((v) => !v)}
          aria-label={`Settings: ${modelInfo?.label ?? model ?? "no model"}${temperature == null ? "" : `, temperature ${temperature}`}${overridden ? ", for the next message" : ""}`}
        >
          <span aria-hidden="true">⚙</span> <span className="current-model">{modelInfo?.label ?? model ?? "no model"}</span>
          <span className="current-temperature">{temperature == null ? "" : ` · T ${temperature}`}</span>
          {overridden && <span className="muted"> (next message)</span>}
        </button>
        <span id={`${id}-count`} className="muted token-count" aria-live="off">
          {tokens == null ? "" : `${formatTokens(tokens)} tokens`}
          {tokens != null && modelInfo?.context_window ? ` / ${formatSize(modelInfo.context_window)}` : ""}
        </span>
      </div>
    </form>
  );
}
