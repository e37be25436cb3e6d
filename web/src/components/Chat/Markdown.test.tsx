import { act } from "react";
import { createRoot } from "react-dom/client";
import { afterEach, describe, expect, it } from "vitest";
import { Markdown } from "./Markdown";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let host: HTMLElement;

async function render(text: string): Promise<HTMLElement> {
  host = document.createElement("div");
  document.body.appendChild(host);
  const root = createRoot(host);
  await act(async () => root.render(<Markdown text={text} />));
  return host;
}

afterEach(() => host?.remove());

function attributes(el: HTMLElement): string[] {
  return [...el.querySelectorAll("*")].flatMap((node) => [...node.attributes].map((a) => `${a.name}=${a.value}`));
}

describe("Markdown", () => {
  it("keeps hostile HTML as inert text", async () => {
    const el = await render('Hi <img src=x onerror="alert(1)"> <script>alert(2)</script> <b onclick="x()">b</b>');
    expect(el.querySelector("img, script, b")).toBeNull();
    expect(attributes(el).some((a) => a.startsWith("on"))).toBe(false);
    expect(el.textContent).toContain('<img src=x onerror="alert(1)">');
    expect(el.textContent).toContain("<script>alert(2)</script>");
  });

  it("drops javascript: and data: link targets but keeps the link text", async () => {
    const el = await render("[click](javascript:alert(1)) [data](data:text/html,<script>x</script>) [ok](https://example.com/a?b=1)");
    const hrefs = [...el.querySelectorAll("a")].map((a) => a.getAttribute("href") ?? "");
    expect(hrefs.some((h) => /^\s*(javascript|data):/i.test(h))).toBe(false);
    expect(hrefs).toContain("https://example.com/a?b=1");
    expect(el.textContent).toContain("click");
    const ok = el.querySelector('a[href^="https"]')!;
    expect(ok.getAttribute("rel")).toContain("noopener");
  });

  it("does not load images from answers", async () => {
    const el = await render("![tracker](https://evil.example/pixel.png)");
    expect(el.querySelector("img")).toBeNull();
    expect(el.querySelector("a")?.getAttribute("href")).toBe("https://evil.example/pixel.png");
  });

  it("highlights fenced code and offers a copy button", async () => {
    const el = await render("```python\ndef f(x):\n    return x + 1\n```");
    const code = el.querySelector("pre code")!;
    expect(code.className).toContain("language-python");
    expect(code.querySelector(".hljs-keyword")?.textContent).toBe("def");
    expect(code.textContent).toBe("def f(x):\n    return x + 1\n");
    expect(el.querySelector(".code-lang")?.textContent).toBe("python");
    expect(el.querySelector("button.copy")?.getAttribute("aria-label")).toBe("Copy python code");
  });

  it("renders GitHub tables and lists", async () => {
    const el = await render("| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two");
    expect(el.querySelectorAll("td")).toHaveLength(2);
    expect(el.querySelectorAll("li")).toHaveLength(2);
  });
});
