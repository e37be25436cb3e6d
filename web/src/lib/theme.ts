import { useEffect, useState } from "react";
import { load, save } from "./storage";

export type Theme = "light" | "dark";

function initial(): Theme {
  const saved = load("convo.theme");
  if (saved === "light" || saved === "dark") return saved;
  return typeof matchMedia !== "undefined" && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(initial);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  const toggle = () =>
    setTheme((t) => {
      const next = t === "dark" ? "light" : "dark";
      save("convo.theme", next);
      return next;
    });
  return [theme, toggle];
}
