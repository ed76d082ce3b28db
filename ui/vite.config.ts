import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// The desktop shell embeds `ui/dist` (tauri.conf.json: `frontendDist`). The WebView runs under a strict CSP
// (`default-src 'self'`), so the build must not emit inline scripts or reference anything remote.
export default defineConfig({
  plugins: [svelte()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Keep every asset a file: a `data:` URL would need its own CSP source.
    assetsInlineLimit: 0,
  },
});
