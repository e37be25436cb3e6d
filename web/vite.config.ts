/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a `convo serve` on 8000 (CONVO_API to change it).
const api = process.env.CONVO_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/api": { target: api, changeOrigin: false } } },
  build: { sourcemap: false, chunkSizeWarningLimit: 1200 },
  test: { environment: "happy-dom", include: ["src/**/*.test.{ts,tsx}"] },
});
