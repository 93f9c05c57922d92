// Starts the app from a file, not an inline script, so the page's Content-Security-Policy can
// refuse every inline script (Trunk.toml's pattern_script names the glue and the wasm here).
const tag = document.querySelector('script[data-wasm]');
const { default: init } = await import(tag.dataset.js);
await init({ module_or_path: tag.dataset.wasm });
