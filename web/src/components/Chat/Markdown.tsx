// Answers are rendered from Markdown, never as HTML: raw HTML in the text stays text, URLs with
// unsafe schemes are dropped, and rehype-sanitize vets the tree before highlighting adds its spans.
import { memo, useState } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import rehypeHighlight from "rehype-highlight";
import rehypeSanitize from "rehype-sanitize";
import remarkGfm from "remark-gfm";

interface HastNode {
  type: string;
  value?: string;
  tagName?: string;
  properties?: Record<string, unknown>;
  children?: HastNode[];
}

function textOf(node: HastNode | undefined): string {
  if (!node) return "";
  if (node.type === "text") return node.value ?? "";
  return (node.children ?? []).map(textOf).join("");
}

async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (an insecure origin): the old way still works in a user gesture.
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

function CodeBlock({ node, children }: { node?: HastNode; children?: React.ReactNode }) {
  const [copied, setCopied] = useState(false);
  const code = node?.children?.find((c) => c.tagName === "code");
  const classes = (code?.properties?.className as string[] | undefined) ?? [];
  const language = classes.find((c) => c.startsWith("language-"))?.slice("language-".length);
  return (
    <div className="code-block">
      <div className="code-head">
        <span className="code-lang">{language ?? "code"}</span>
        <button
          type="button"
          className="small copy"
          aria-label={copied ? "Copied" : `Copy ${language ?? ""} code`.replace("  ", " ")}
          onClick={async () => {
            await copyText(textOf(code).replace(/\n$/, ""));
            setCopied(true);
            setTimeout(() => setCopied(false), 1500);
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
      </div>
      <pre>{children}</pre>
    </div>
  );
}

const components: Components = {
  pre: ({ node, children }) => <CodeBlock node={node as HastNode}>{children}</CodeBlock>,
  a: ({ href, children }) =>
    href ? (
      <a href={href} target="_blank" rel="noopener noreferrer nofollow">
        {children}
      </a>
    ) : (
      <span>{children}</span>
    ),
  img: ({ src, alt }) =>
    // Images from a model's answer would be fetched from anywhere; show the link, load nothing.
    typeof src === "string" && src ? (
      <a href={src} target="_blank" rel="noopener noreferrer nofollow">
        {alt || src}
      </a>
    ) : (
      <span>{alt}</span>
    ),
};

/** Raw HTML in an answer is shown as the text it is (a model explaining `<div>` should not vanish). */
function remarkHtmlAsText() {
  const visit = (node: { type: string; children?: unknown[] }) => {
    if (node.type === "html") node.type = "text";
    (node.children as (typeof node)[] | undefined)?.forEach(visit);
  };
  return visit;
}

const remarkPlugins = [remarkGfm, remarkHtmlAsText];
const rehypePlugins = [rehypeSanitize, [rehypeHighlight, { detect: false }]] as never;

export const Markdown = memo(function Markdown({ text }: { text: string }) {
  return (
    <div className="markdown">
      <ReactMarkdown remarkPlugins={remarkPlugins} rehypePlugins={rehypePlugins} components={components}>
        {text}
      </ReactMarkdown>
    </div>
  );
});
